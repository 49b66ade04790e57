use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use tower_service::Service;

use super::builder::{
    BuildError, Config, HostHeader, ProxyBuilder, Target, Upstream, check_scheme,
};
use super::client::UpstreamClient;
use super::future::{Call, ResponseFuture};
use super::headers::{self, Hop, Keep, Via};
use super::upgrade;
use crate::BoxError;
use crate::body::Body;
use crate::error::{Rejection, RejectionKind};
use crate::peer::PeerAddr;

/// What every clone of a [`Proxy`] shares: the connection pool and the
/// validated configuration.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: UpstreamClient,
    pub(crate) config: Config,
}

/// A streaming reverse proxy to HTTP upstreams.
///
/// Built with [`Proxy::to`], [`Proxy::new`] or [`Proxy::builder`]. Clones
/// are cheap and share one connection pool. See the
/// [module docs](crate::proxy) for the behaviour.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A builder with the defaults.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// A proxy with the defaults that sends every request to the absolute
    /// request URI's scheme and authority, as a load balancer in front sets
    /// it; other requests are answered 502.
    #[must_use]
    pub fn new() -> Self {
        ProxyBuilder::default()
            .assemble(Target::FromRequest, Some(Via::meshgate()))
            // The defaults always build: no TLS roots or identity to parse
            // (the built-in roots are valid), and the crypto provider
            // supports the default protocol versions.
            .expect("the default proxy configuration builds")
    }

    /// A proxy with the defaults that sends every request to `upstream`
    /// (see [`ProxyBuilder::upstream`]).
    ///
    /// # Errors
    ///
    /// `upstream` is not an absolute `http` (or, with `tls`, `https`) URI
    /// without a path.
    pub fn to<U>(upstream: U) -> Result<Self, BuildError>
    where
        U: TryInto<Uri>,
        U::Error: fmt::Display,
    {
        let uri = upstream
            .try_into()
            .map_err(|error| BuildError::new(format!("upstream is not a URI: {error}")))?;
        ProxyBuilder::default().upstream(uri).build()
    }

    pub(crate) fn from_parts(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl Default for Proxy {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Service<Request<B>> for Proxy
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool queues and connects on demand; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let present = headers::Present::scan(request.headers());
        let grpc = present.content_type && crate::error::is_grpc(request.headers());
        match self.shared.prepare(request, grpc, present) {
            Ok((request, client_upgrade, via)) => {
                let call = match via {
                    Route::Http1(authority) => {
                        Call::Http1(self.shared.client.http1.send(authority, request))
                    }
                    Route::Pooled => Call::Pooled(self.shared.client.pooled.request(request)),
                };
                ResponseFuture::new(call, Arc::clone(&self.shared), client_upgrade, grpc)
            }
            Err(rejection) => ResponseFuture::ready(respond(rejection, grpc)),
        }
    }
}

/// Which client carries a prepared request.
pub(crate) enum Route {
    /// The proxy's HTTP/1.1 pool, to this authority (the request URI is in
    /// origin form).
    Http1(Authority),
    /// hyper-util's client (h2c, `https`; the request URI is absolute).
    Pooled,
}

/// A rejection as the proxy's response: gRPC callers get a gRPC status.
pub(crate) fn respond(rejection: Rejection, grpc: bool) -> Response<Body> {
    if grpc {
        rejection.into_grpc_response().map(Body::new)
    } else {
        rejection.into_response().map(Body::new)
    }
}

impl Shared {
    /// Turns the client's request into the upstream's: target URI, version,
    /// hop-by-hop headers, forwarding headers, `Via` and `Host`. Also takes
    /// the client side of an upgrade when the request asks for one.
    fn prepare<B>(
        &self,
        request: Request<B>,
        grpc: bool,
        present: headers::Present,
    ) -> Result<(Request<Body>, Option<OnUpgrade>, Route), Rejection>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let config = &self.config;
        if request.method() == http::Method::CONNECT {
            // A reverse proxy forwards requests, not tunnels to hosts the
            // client names (nor HTTP/2 extended CONNECT).
            return Err(Rejection::new(RejectionKind::BadRequest)
                .with_detail("CONNECT requests are not proxied"));
        }
        let (mut parts, body) = request.into_parts();
        let (upstream, uri_is_target) = self.target(&parts.uri)?;

        // The host the client asked for: its `Host`, or for HTTP/2 clients
        // the URI's authority, unless that authority is the upstream's.
        let client_host = match present.host.then(|| parts.headers.get(header::HOST)) {
            Some(host) => host.cloned(),
            None if !uri_is_target => parts
                .uri
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok()),
            None => None,
        };

        let mut client_upgrade = None;
        if !config.h2
            && present.upgrade()
            && upgrade::is_upgrade_request(parts.version, &parts.headers)
        {
            // Without the server's `OnUpgrade` (the request did not come
            // from a hyper server) the tunnel cannot be joined, so the
            // request goes on as a plain one.
            client_upgrade = parts.extensions.remove::<OnUpgrade>();
        }
        let keep = Keep {
            upgrade: client_upgrade.is_some(),
            te_trailers: config.h2 || grpc,
        };
        // Whether `Host` is there is tracked from the scan, rather than
        // looked up again: only a `Connection` that names headers may
        // have removed it.
        let mut has_host = present.host;
        if headers::strip_found(&mut parts.headers, keep, present) {
            has_host = parts.headers.contains_key(header::HOST);
        }
        if keep.upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }

        let peer = parts.extensions.get::<PeerAddr>().map(|peer| peer.0.ip());
        let hop = Hop {
            peer,
            host: client_host.as_ref(),
            tls: parts
                .extensions
                .get::<crate::peer::TlsConnection>()
                .is_some(),
        };
        config.forwarded.apply(&mut parts.headers, &hop);
        if let Some(via) = &config.via {
            parts.headers.append(header::VIA, via.value(parts.version));
        }
        match config.host {
            HostHeader::Preserve => {
                if !has_host && let Some(host) = client_host {
                    parts.headers.insert(header::HOST, host);
                    has_host = true;
                }
            }
            HostHeader::Rewrite => {
                if let Some(host) = headers::host_value(&upstream.scheme, &upstream.authority) {
                    parts.headers.insert(header::HOST, host);
                    has_host = true;
                }
            }
        }

        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let route = if !config.h2 && upstream.scheme == Scheme::HTTP {
            // The HTTP/1.1 pool writes the URI as it is: origin form.
            if !has_host
                && let Some(host) = headers::host_value(&upstream.scheme, &upstream.authority)
            {
                parts.headers.insert(header::HOST, host);
            }
            parts.uri = Uri::from(path_and_query);
            Route::Http1(upstream.authority)
        } else {
            parts.uri = Uri::builder()
                .scheme(upstream.scheme)
                .authority(upstream.authority)
                .path_and_query(path_and_query)
                .build()
                .map_err(|error| {
                    Rejection::new(RejectionKind::BadRequest)
                        .with_detail("the request target cannot be forwarded")
                        .with_cause(error)
                })?;
            Route::Pooled
        };
        parts.version = if config.h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // Most requests have no body: the empty body is zero-sized, so it
        // costs no allocation, where boxing the client's would.
        let body = if body.is_end_stream() {
            Body::empty()
        } else {
            Body::new(body)
        };
        Ok((Request::from_parts(parts, body), client_upgrade, route))
    }

    /// The upstream for a request URI, and whether it came from the URI.
    fn target(&self, uri: &Uri) -> Result<(Upstream, bool), Rejection> {
        let from_uri = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => Some((scheme, authority)),
            _ => None,
        };
        match (&self.config.target, from_uri) {
            (Target::Fixed(upstream), _) | (Target::Fallback(upstream), None) => {
                Ok((upstream.clone(), false))
            }
            (Target::FromRequest | Target::Fallback(_), Some((scheme, authority))) => {
                check_scheme(scheme).map_err(|why| {
                    Rejection::new(RejectionKind::UpstreamConnect)
                        .with_detail("the upstream's scheme is not supported")
                        .with_cause(why)
                })?;
                let upstream = Upstream {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                };
                Ok((upstream, true))
            }
            (Target::FromRequest, None) => Err(Rejection::new(RejectionKind::UpstreamConnect)
                .with_detail("no upstream was chosen for the request")),
        }
    }

    /// Turns the upstream's response into the client's: hop-by-hop headers,
    /// `Via`, and for a `101` to an upgrade request, the tunnel.
    pub(crate) fn finish<B>(
        &self,
        response: Response<B>,
        client_upgrade: Option<OnUpgrade>,
        grpc: bool,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = response.into_parts();
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        if switching && client_upgrade.is_none() {
            return respond(
                Rejection::new(RejectionKind::UpstreamReset)
                    .with_detail("the upstream switched protocols unasked"),
                grpc,
            );
        }
        headers::strip_hop_by_hop(
            &mut parts.headers,
            Keep {
                upgrade: switching,
                te_trailers: false,
            },
        );
        if let Some(via) = &self.config.via {
            parts.headers.append(header::VIA, via.value(parts.version));
        }
        parts.version = Version::HTTP_11;
        if switching {
            let upgrades = client_upgrade.zip(parts.extensions.remove::<OnUpgrade>());
            let Some((client_upgrade, upstream_upgrade)) = upgrades else {
                return respond(
                    Rejection::new(RejectionKind::UpstreamReset)
                        .with_detail("the upstream connection cannot be upgraded"),
                    grpc,
                );
            };
            upgrade::tunnel(client_upgrade, upstream_upgrade);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return Response::from_parts(parts, Body::empty());
        }
        // A client that asked to upgrade and got a normal answer keeps its
        // connection as HTTP; dropping `client_upgrade` says so to the server.
        drop(client_upgrade);
        Response::from_parts(parts, Body::new(body))
    }
}
