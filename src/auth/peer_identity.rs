//! The peer's identity from its mTLS certificate, for the authorization
//! policies and for the application.
//!
//! [`PeerIdentityLayer`] reads the [`PeerCertificate`] request extension
//! that a server terminating mutual TLS inserts (the gateway's `Server`
//! does, and so the sidecar's inbound listener), takes the leaf certificate's SPIFFE ID (its one URI subject
//! alternative name starting with `spiffe://`, such as
//! `spiffe://cluster.local/ns/shop/sa/checkout`) and inserts it as a
//! [`PeerIdentity`] extension, which
//! [`AuthzRule::peers`](super::authz::AuthzRule::peers) matches.
//!
//! It also tells the application who called, in a header it can trust:
//!
//! * the identity header (default `x-meshgate-peer-identity`) is **always
//!   removed** from the incoming request first, then set to the SPIFFE ID
//!   when there is one, so a caller cannot claim another identity by
//!   sending the header itself;
//! * Envoy's `x-forwarded-client-cert` is removed too, by default, for the
//!   same reason (an application written for Istio may trust it);
//!   [`strip_forwarded_client_cert`](PeerIdentityLayer::strip_forwarded_client_cert)
//!   keeps it.
//!
//! A request without a certificate (plain text, or a client that presented
//! none where one is optional), or whose certificate has no SPIFFE ID or
//! more than one, has no identity: no extension, no header. The layer
//! never refuses a request; put an [`AuthzLayer`](super::authz::AuthzLayer)
//! after it to do that.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use meshgate::auth::authz::PeerIdentity;
//! use meshgate::auth::peer_identity::PeerIdentityLayer;
//! use meshgate::peer::PeerCertificate;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = service_fn(|request: Request<()>| async move {
//!     let seen = request.headers().get("x-meshgate-peer-identity").cloned();
//!     let identity = request.extensions().get::<PeerIdentity>().cloned();
//!     assert_eq!(identity.map(|i| i.0).as_deref(), Some("spiffe://example.org/ns/shop/sa/web"));
//!     Ok::<_, Infallible>(Response::new(seen))
//! });
//! let service = PeerIdentityLayer::new().layer(app);
//!
//! // What the server puts in the extensions after a verified handshake.
//! let certificate = PeerCertificate::new(vec![Bytes::from_static(b"DER")])
//!     .unwrap()
//!     .with_subject_alt_names(vec![], vec!["spiffe://example.org/ns/shop/sa/web".to_owned()]);
//! let mut request = Request::builder()
//!     // A spoofed header: replaced.
//!     .header("x-meshgate-peer-identity", "spiffe://example.org/ns/shop/sa/admin")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(certificate);
//!
//! let seen = service.oneshot(request).await.unwrap().into_body();
//! assert_eq!(seen.unwrap(), "spiffe://example.org/ns/shop/sa/web");
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::authz::PeerIdentity;
use crate::peer::PeerCertificate;

/// The default header that carries the peer identity to the application.
pub const PEER_IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-meshgate-peer-identity");

/// Envoy's header of the client certificate's details, removed by default.
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Puts the peer's SPIFFE ID into the request extensions and a trusted
/// header. See the [module docs](self). Clones share one configuration
/// behind an `Arc`; the layer keeps no state.
#[derive(Debug, Clone)]
#[must_use]
pub struct PeerIdentityLayer {
    config: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    header: HeaderName,
    strip_forwarded_client_cert: bool,
}

impl Default for PeerIdentityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerIdentityLayer {
    /// The defaults: header `x-meshgate-peer-identity`, and
    /// `x-forwarded-client-cert` removed.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                header: PEER_IDENTITY_HEADER,
                strip_forwarded_client_cert: true,
            }),
        }
    }

    /// The header that carries the identity to the application (removed
    /// from the incoming request, then set).
    ///
    /// Default: `x-meshgate-peer-identity`.
    pub fn header(self, header: HeaderName) -> Self {
        Self {
            config: Arc::new(Config {
                header,
                strip_forwarded_client_cert: self.config.strip_forwarded_client_cert,
            }),
        }
    }

    /// Whether an incoming `x-forwarded-client-cert` is removed. Keep it
    /// only when a trusted proxy in front of this one sets it.
    ///
    /// Default: `true`.
    pub fn strip_forwarded_client_cert(self, strip: bool) -> Self {
        Self {
            config: Arc::new(Config {
                header: self.config.header.clone(),
                strip_forwarded_client_cert: strip,
            }),
        }
    }

    /// The header that carries the identity.
    #[must_use]
    pub fn header_name(&self) -> &HeaderName {
        &self.config.header
    }
}

impl<S> Layer<S> for PeerIdentityLayer {
    type Service = PeerIdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerIdentityService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`PeerIdentityLayer`].
#[derive(Debug, Clone)]
pub struct PeerIdentityService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S, B> Service<Request<B>> for PeerIdentityService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = &self.config;
        let headers = request.headers_mut();
        headers.remove(&config.header);
        if config.strip_forwarded_client_cert {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
        let identity = identity_from_extensions(request.extensions()).map(str::to_owned);
        match identity {
            Some(identity) => {
                // A URI SAN is ASCII without control characters, so it is
                // a valid header value; if it were not, the extension still
                // carries it and the application just sees no header.
                if let Ok(value) = HeaderValue::from_str(&identity) {
                    request.headers_mut().insert(config.header.clone(), value);
                }
                request.extensions_mut().insert(PeerIdentity(identity));
            }
            None => {
                request.extensions_mut().remove::<PeerIdentity>();
            }
        }
        self.inner.call(request)
    }
}

/// The SPIFFE ID of the verified peer certificate in these extensions, if
/// any (for layers in front of [`PeerIdentityLayer`], such as a metrics
/// label).
pub(crate) fn identity_from_extensions(extensions: &http::Extensions) -> Option<&str> {
    extensions
        .get::<PeerCertificate>()
        .and_then(PeerCertificate::spiffe_id)
        .map(crate::peer::SpiffeId::as_str)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Response;
    use tower::ServiceExt;

    use super::*;

    fn certificate(uris: &[&str]) -> PeerCertificate {
        PeerCertificate::new(vec![Bytes::from_static(b"DER")])
            .unwrap()
            .with_subject_alt_names(
                vec!["web.shop".to_owned()],
                uris.iter().map(|u| (*u).to_owned()).collect(),
            )
    }

    /// Runs a request through the layer and returns the identity header and
    /// extension the application saw, and whether XFCC reached it.
    async fn seen(
        layer: PeerIdentityLayer,
        request: Request<()>,
    ) -> (Option<String>, Option<PeerIdentity>, bool) {
        let header = layer.header_name().clone();
        let app = tower::service_fn(move |request: Request<()>| {
            let header = header.clone();
            async move {
                let value = request
                    .headers()
                    .get(&header)
                    .map(|v| v.to_str().unwrap().to_owned());
                let identity = request.extensions().get::<PeerIdentity>().cloned();
                let xfcc = request.headers().contains_key(X_FORWARDED_CLIENT_CERT);
                Ok::<_, Infallible>(Response::new((value, identity, xfcc)))
            }
        });
        layer.layer(app).oneshot(request).await.unwrap().into_body()
    }

    #[test]
    fn the_one_spiffe_uri_is_the_identity() {
        let id = "spiffe://td.test/ns/a/sa/b";
        let of = |names: &[&str]| {
            let mut extensions = http::Extensions::new();
            extensions.insert(certificate(names));
            identity_from_extensions(&extensions).map(str::to_owned)
        };
        assert_eq!(of(&[id]).as_deref(), Some(id));
        // An X.509-SVID has exactly one URI SAN: with another, or with two
        // SPIFFE IDs, the identity is ambiguous, so there is none.
        assert_eq!(of(&["https://example.com/x", id]), None);
        assert_eq!(of(&[id, "spiffe://td.test/ns/a/sa/c"]), None);
        assert_eq!(of(&[]), None);
        assert_eq!(of(&["https://example.com/x"]), None);
        // Not a valid SPIFFE ID (uppercase trust domain).
        assert_eq!(of(&["spiffe://TD.test/x"]), None);
    }

    #[tokio::test]
    async fn a_spoofed_header_is_replaced_by_the_certificate_identity() {
        let mut request = Request::builder()
            .header("x-meshgate-peer-identity", "spiffe://td.test/ns/a/sa/admin")
            .header("x-forwarded-client-cert", "By=spiffe://x;URI=spiffe://y")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(certificate(&["spiffe://td.test/ns/a/sa/web"]));
        let (header, identity, xfcc) = seen(PeerIdentityLayer::new(), request).await;
        assert_eq!(header.as_deref(), Some("spiffe://td.test/ns/a/sa/web"));
        assert_eq!(
            identity,
            Some(PeerIdentity("spiffe://td.test/ns/a/sa/web".to_owned()))
        );
        assert!(!xfcc);
    }

    #[tokio::test]
    async fn without_a_certificate_the_header_is_removed_and_nothing_set() {
        let mut request = Request::builder()
            .header("x-meshgate-peer-identity", "spiffe://td.test/ns/a/sa/admin")
            .header("x-meshgate-peer-identity", "second copy")
            .body(())
            .unwrap();
        // An identity some earlier code left behind is not trusted either.
        request
            .extensions_mut()
            .insert(PeerIdentity("spiffe://stale".to_owned()));
        let (header, identity, _) = seen(PeerIdentityLayer::new(), request).await;
        assert_eq!(header, None);
        assert_eq!(identity, None);
    }

    #[tokio::test]
    async fn a_certificate_without_spiffe_id_gives_no_identity() {
        let mut request = Request::builder()
            .header("x-meshgate-peer-identity", "spoofed")
            .body(())
            .unwrap();
        request.extensions_mut().insert(certificate(&[]));
        let (header, identity, _) = seen(PeerIdentityLayer::new(), request).await;
        assert_eq!((header, identity), (None, None));
    }

    #[tokio::test]
    async fn the_header_is_configurable_and_xfcc_can_be_kept() {
        let layer = PeerIdentityLayer::new()
            .header(HeaderName::from_static("x-peer"))
            .strip_forwarded_client_cert(false);
        let mut request = Request::builder()
            .header("x-peer", "spoofed")
            .header("x-forwarded-client-cert", "set by a trusted proxy")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(certificate(&["spiffe://td.test/ns/a/sa/web"]));
        let (header, _, xfcc) = seen(layer, request).await;
        assert_eq!(header.as_deref(), Some("spiffe://td.test/ns/a/sa/web"));
        assert!(xfcc);
    }
}
