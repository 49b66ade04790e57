use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};

use super::Proxy;
use super::client;
use super::headers::{ForwardedConfig, IncomingForwarded, Via};

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The scheme and authority of the absolute request URI (set by a load
    /// balancer in front); a request without one is answered 502.
    FromRequest,
    /// The absolute request URI when there is one, else this upstream.
    Fallback(Upstream),
    /// Always this upstream; the request URI's authority is ignored.
    Fixed(Upstream),
}

/// An upstream's scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
}

impl Upstream {
    /// Checks that `uri` names an upstream this build can reach: `http`,
    /// an authority, and no path beyond `/`.
    fn parse(uri: &Uri) -> Result<Self, BuildError> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(BuildError::new(format!(
                "upstream {uri} is not an absolute URI such as http://10.0.0.7:8080"
            )));
        };
        check_scheme(scheme).map_err(|why| BuildError::new(format!("upstream {uri}: {why}")))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(BuildError::new(format!(
                "upstream {uri} has a path or query; the request's own path is sent \
                 (rewrite paths in the router)"
            )));
        }
        Ok(Self {
            scheme: scheme.clone(),
            authority: authority.clone(),
        })
    }
}

/// Whether the proxy can speak to an upstream of this scheme.
pub(crate) fn check_scheme(scheme: &Scheme) -> Result<(), &'static str> {
    if *scheme == Scheme::HTTP || (cfg!(feature = "tls") && *scheme == Scheme::HTTPS) {
        Ok(())
    } else if *scheme == Scheme::HTTPS {
        Err("TLS to upstreams needs the `tls` feature")
    } else {
        Err("the scheme is neither http nor https")
    }
}

/// How the `Host` header reaches the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostHeader {
    /// Send the client's `Host` unchanged (nginx's `proxy_set_header Host
    /// $host`, Kong's `preserve_host`). A request without one (HTTP/2
    /// clients send `:authority`) gets the authority it was sent to, when
    /// the proxy can still see it, else the upstream's.
    #[default]
    Preserve,
    /// Set `Host` to the upstream's authority (its port only when not the
    /// default), as upstreams behind their own virtual hosts expect.
    Rewrite,
}

/// Configures and builds a [`Proxy`].
///
/// Start with [`Proxy::builder`]; every method documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ProxyBuilder {
    target: Option<(Uri, bool)>,
    pub(crate) http2_prior_knowledge: bool,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) pool_idle_timeout: Option<Duration>,
    pub(crate) pool_max_idle_per_host: usize,
    x_forwarded: bool,
    forwarded: bool,
    incoming: IncomingForwarded,
    proto: Scheme,
    via: Option<String>,
    host: HostHeader,
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::ClientTls,
    #[cfg(feature = "tls")]
    pub(crate) tls_http2: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls_server_name: Option<String>,
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self {
            target: None,
            http2_prior_knowledge: false,
            connect_timeout: Some(Duration::from_secs(5)),
            response_timeout: Some(Duration::from_secs(60)),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: 32,
            x_forwarded: true,
            forwarded: false,
            incoming: IncomingForwarded::Replace,
            proto: Scheme::HTTP,
            via: Some("meshgate".to_owned()),
            host: HostHeader::Preserve,
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
            #[cfg(feature = "tls")]
            tls_http2: true,
            #[cfg(feature = "tls")]
            tls_server_name: None,
        }
    }
}

impl ProxyBuilder {
    /// Sends every request to `upstream` (`http://host:port`), whatever the
    /// request URI says: only its path and query are kept. This is the plain
    /// reverse proxy (nginx's `proxy_pass`), and safe in front of clients,
    /// who cannot pick the upstream with an absolute-form request target.
    ///
    /// Default: none; the target is the absolute request URI, which a load
    /// balancer in front sets.
    pub fn upstream(mut self, upstream: Uri) -> Self {
        self.target = Some((upstream, true));
        self
    }

    /// Sends requests whose URI is absolute (`http://10.0.0.7:8080/path`,
    /// as a load balancer in front rewrites it) there, and the others to
    /// `upstream`.
    ///
    /// Only put this behind a layer that sets the URI: a client's own
    /// absolute-form request (`GET http://elsewhere/ HTTP/1.1`), or any
    /// HTTP/2 request (hyper puts `:authority` in the URI), would otherwise
    /// choose the upstream. Directly behind a server, use
    /// [`upstream`](Self::upstream).
    ///
    /// Default: none.
    pub fn fallback_upstream(mut self, upstream: Uri) -> Self {
        self.target = Some((upstream, false));
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) to upstreams instead of
    /// HTTP/1.1. Upgrades (WebSocket) need HTTP/1.1 upstreams and are not
    /// tunnelled over h2c: their `Upgrade` header is dropped.
    ///
    /// Default: `false` (HTTP/1.1).
    pub fn http2_prior_knowledge(mut self, enabled: bool) -> Self {
        self.http2_prior_knowledge = enabled;
        self
    }

    /// How long a TCP connect to an upstream (with `tls`, and the TLS
    /// handshake of an `https` one) may take; past it the request
    /// is answered 502 ([`UpstreamConnect`](crate::RejectionKind::UpstreamConnect):
    /// the request was never sent, so it is safe to retry). `None` waits
    /// for the operating system.
    ///
    /// Default: 5 s.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// How long the upstream may take to send its response headers, counted
    /// from the call (connecting and sending the request included); past it
    /// the request is answered 504
    /// ([`UpstreamTimeout`](crate::RejectionKind::UpstreamTimeout)). The
    /// body is not timed: it streams for as long as it takes. Raise this for
    /// long uploads that the upstream reads before answering. `None` waits
    /// forever.
    ///
    /// Default: 60 s (nginx's `proxy_read_timeout`).
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How long an idle pooled connection is kept. `None` keeps it until
    /// the upstream closes it. Cleartext HTTP/1.1 connections are closed
    /// by a sweep every half timeout, so after 1× to 1.5× the timeout.
    ///
    /// Default: 90 s.
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.pool_idle_timeout = timeout.into();
        self
    }

    /// How many idle connections are kept per upstream (scheme and
    /// authority). `0` disables pooling. Cleartext HTTP/1.1 connections
    /// are also kept for at most 4 096 upstream authorities at once.
    ///
    /// Default: 32.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Whether to write `X-Forwarded-For` (the client address from
    /// [`PeerAddr`](crate::peer::PeerAddr)), `X-Forwarded-Proto` (see
    /// [`client_scheme`](Self::client_scheme)) and `X-Forwarded-Host` (the
    /// client's `Host`).
    ///
    /// Default: `true`.
    pub fn x_forwarded(mut self, enabled: bool) -> Self {
        self.x_forwarded = enabled;
        self
    }

    /// Whether to write an RFC 7239 `Forwarded` element
    /// (`for=192.0.2.7;host=example.com;proto=http`, IPv6 as
    /// `for="[2001:db8::1]"`, `for=unknown` without a
    /// [`PeerAddr`](crate::peer::PeerAddr)).
    ///
    /// Default: `false` (few upstreams read it; most read `X-Forwarded-*`).
    pub fn forwarded(mut self, enabled: bool) -> Self {
        self.forwarded = enabled;
        self
    }

    /// What to do with forwarding headers the request arrives with; applies
    /// to the headers this proxy writes (a disabled kind is left alone).
    ///
    /// Default: [`IncomingForwarded::Replace`] (see there for why).
    pub fn incoming_forwarded(mut self, incoming: IncomingForwarded) -> Self {
        self.incoming = incoming;
        self
    }

    /// The scheme clients use to reach this proxy, written as
    /// `X-Forwarded-Proto` and `proto=`. The proxy cannot see its listener:
    /// set `https` when TLS is terminated in front of it.
    ///
    /// Default: `http`.
    pub fn client_scheme(mut self, scheme: Scheme) -> Self {
        self.proto = scheme;
        self
    }

    /// The pseudonym this hop adds to `Via` on requests and responses
    /// (`Via: 1.1 meshgate`, the version being the one the message arrived
    /// with); `None` adds no `Via`. It must be an HTTP token.
    ///
    /// Default: `Some("meshgate")`.
    pub fn via(mut self, pseudonym: Option<&str>) -> Self {
        self.via = pseudonym.map(str::to_owned);
        self
    }

    /// How the `Host` header reaches the upstream.
    ///
    /// Default: [`HostHeader::Preserve`].
    pub fn host_header(mut self, host: HostHeader) -> Self {
        self.host = host;
        self
    }

    /// Trusts the CA certificates of this PEM bundle for `https` upstreams,
    /// instead of the built-in Mozilla roots. The bundle is parsed by
    /// [`build`](Self::build), which fails on a malformed or empty one.
    ///
    /// Default: Mozilla's roots (the `webpki-roots` bundle, compiled in;
    /// nothing is read from the machine's certificate store).
    ///
    /// ```
    /// use meshgate::proxy::Proxy;
    ///
    /// # let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
    /// # let (ca_pem, client_pem, client_key_pem) =
    /// #     (ca.cert.pem(), ca.cert.pem(), ca.signing_key.serialize_pem());
    /// let proxy = Proxy::builder()
    ///     .upstream("https://payments.internal:8443".parse().unwrap())
    ///     .tls_roots_pem(ca_pem)
    ///     .tls_client_identity(client_pem, client_key_pem)
    ///     .build()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_roots_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.roots = crate::tls::client::Roots::Pem(pem.into());
        self
    }

    /// Trusts the certificates of this store for `https` upstreams, instead
    /// of the built-in Mozilla roots.
    ///
    /// Default: Mozilla's roots (see [`tls_roots_pem`](Self::tls_roots_pem)).
    #[cfg(feature = "tls")]
    pub fn tls_roots(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls.roots = crate::tls::client::Roots::Store(roots);
        self
    }

    /// Presents this client certificate chain (leaf first) and private key,
    /// both PEM, to `https` upstreams that ask for one (mutual TLS). Parsed
    /// and matched by [`build`](Self::build).
    ///
    /// Default: none.
    #[cfg(feature = "tls")]
    pub fn tls_client_identity(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.identity = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// Uses rotating TLS material for `https` upstreams: the proxy presents
    /// the material's current certificate as its client certificate and
    /// trusts its current trust bundle, both read at each new connection's
    /// handshake, so a [`reload`](crate::tls::TlsMaterial::reload) or
    /// [`replace_pem`](crate::tls::TlsMaterial::replace_pem) applies to the
    /// next connection (pooled ones keep theirs until they close). Replaces
    /// [`tls_roots_pem`](Self::tls_roots_pem),
    /// [`tls_roots`](Self::tls_roots) and
    /// [`tls_client_identity`](Self::tls_client_identity).
    ///
    /// Default: none.
    ///
    /// ```
    /// use meshgate::proxy::Proxy;
    /// use meshgate::tls::TlsMaterial;
    ///
    /// # let ca = rcgen::generate_simple_self_signed(vec!["web.test".to_owned()]).unwrap();
    /// # let (chain, key, bundle) = (ca.cert.pem(), ca.signing_key.serialize_pem(), ca.cert.pem());
    /// let material = TlsMaterial::from_pem(chain.as_bytes(), key.as_bytes(), bundle.as_bytes()).unwrap();
    /// let proxy = Proxy::builder()
    ///     .upstream("https://10.0.0.7:8443".parse().unwrap())
    ///     .tls_material(material)
    ///     .tls_peer_identities(["spiffe://cluster.local/ns/shop/sa/payments"])
    ///     .build()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_material(mut self, material: crate::tls::TlsMaterial) -> Self {
        self.tls.material = Some(material);
        self
    }

    /// SPIFFE secure naming, as Istio does it: accept an `https` upstream
    /// whose certificate chains to the trusted roots (the
    /// [material](Self::tls_material)'s bundle, or the configured roots),
    /// is valid now, and whose SPIFFE ID (its only URI SAN) is one of
    /// `ids` — instead of checking the server name against its DNS names.
    /// An ID matches exactly; one ending in `/*` (`spiffe://td/ns/shop/*`)
    /// accepts every ID under that path. A server with another identity
    /// fails the handshake: 502 `UpstreamConnect`, like other handshake
    /// failures. Checked by [`build`](Self::build): each ID must be a valid
    /// SPIFFE ID (or one followed by `/*`), and the list not empty.
    ///
    /// Default: none (the server name is verified).
    #[cfg(feature = "tls")]
    pub fn tls_peer_identities(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tls.peer_identities = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `h2` is offered in ALPN to `https` upstreams beside
    /// `http/1.1`, so HTTP/2 is used with the upstreams that choose it.
    /// Turn it off to keep HTTP/1.1 (WebSocket upgrades need it). With
    /// [`http2_prior_knowledge`](Self::http2_prior_knowledge) only `h2` is
    /// offered, whatever this says.
    ///
    /// Default: `true`.
    #[cfg(feature = "tls")]
    pub fn tls_http2(mut self, enabled: bool) -> Self {
        self.tls_http2 = enabled;
        self
    }

    /// The name sent as SNI to `https` upstreams and that their
    /// certificates must cover, instead of each URI's host: for a load
    /// balancer that sends requests to endpoint addresses
    /// (`https://10.0.0.7:8443`) of a service whose certificate names the
    /// service (`payments.internal`). A DNS name or an IP address; checked
    /// by [`build`](Self::build).
    ///
    /// Default: none (the URI's host).
    #[cfg(feature = "tls")]
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// Builds the proxy and its connection pool. Call it inside a tokio
    /// runtime's context or not; requests must be made inside one.
    ///
    /// # Errors
    ///
    /// An upstream that is not an absolute `http` URI without a path (or
    /// `https`, with the `tls` feature), a `Via` pseudonym that is not a
    /// token; with `tls`, roots or a client identity that do not parse or
    /// match.
    pub fn build(self) -> Result<Proxy, BuildError> {
        let target = match &self.target {
            None => Target::FromRequest,
            Some((uri, true)) => Target::Fixed(Upstream::parse(uri)?),
            Some((uri, false)) => Target::Fallback(Upstream::parse(uri)?),
        };
        let via = self.via.as_deref().map(Via::new).transpose()?;
        self.assemble(target, via)
    }

    /// The proxy from validated parts.
    ///
    /// # Errors
    ///
    /// With `tls`, roots or a client identity that do not parse or match.
    pub(crate) fn assemble(&self, target: Target, via: Option<Via>) -> Result<Proxy, BuildError> {
        let config = Config {
            target,
            h2: self.http2_prior_knowledge,
            response_timeout: self.response_timeout,
            forwarded: ForwardedConfig {
                x_forwarded: self.x_forwarded,
                forwarded: self.forwarded,
                incoming: self.incoming.clone(),
                proto: self.proto.clone(),
            },
            via,
            host: self.host,
        };
        Ok(Proxy::from_parts(Arc::new(super::service::Shared {
            client: client::build(self)?,
            config,
        })))
    }
}

/// The validated configuration the service reads at request time.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) target: Target,
    pub(crate) h2: bool,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) forwarded: ForwardedConfig,
    pub(crate) via: Option<Via>,
    pub(crate) host: HostHeader,
}

/// A proxy configuration that cannot work, found at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}
