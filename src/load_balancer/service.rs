use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use tower_service::Service;

use super::balancer::Balancer;
use super::endpoint::{Endpoint, SelectedEndpoint};
use super::future::{CallGuard, ResponseFuture};

/// The service of [`LoadBalancerLayer`](super::LoadBalancerLayer).
///
/// Clones share the layer's balancer.
#[derive(Clone)]
pub struct LoadBalancer<S> {
    inner: S,
    balancer: Arc<Balancer>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for LoadBalancer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> LoadBalancer<S> {
    pub(crate) fn new(inner: S, balancer: Arc<Balancer>) -> Self {
        Self { inner, balancer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// `scheme://endpoint/path?query`, moving the path out of `uri`.
fn absolute(uri: Uri, endpoint: &Endpoint) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = uri.into_parts();
    parts.scheme = Some(endpoint.scheme().clone());
    parts.authority = Some(endpoint.authority().clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LoadBalancer<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        self.balancer.ensure_started();
        // Whether the caller is gRPC matters only to the balancer's own
        // answers, so the content type is read only for them.
        let grpc = |request: &Request<ReqBody>| crate::error::is_grpc(request.headers());
        let Some(state) = self.balancer.pick(request.headers(), request.extensions()) else {
            let empty = self.balancer.set().endpoints.is_empty();
            return ResponseFuture::unavailable(grpc(&request), empty);
        };
        let original = std::mem::take(request.uri_mut());
        match absolute(original, &state.endpoint) {
            Ok(uri) => *request.uri_mut() = uri,
            // Scheme, authority and path are all set from valid parts, so
            // this does not happen; if it did, the client gets a 400.
            Err(_) => return ResponseFuture::bad_target(grpc(&request)),
        }
        let selected = SelectedEndpoint(state);
        if self.balancer.tag_requests {
            request.extensions_mut().insert(selected.clone());
        }
        let guard = CallGuard::start(Arc::clone(&self.balancer), selected);
        ResponseFuture::called(self.inner.call(request), guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_to_absolute_form_keeping_path_and_query() {
        let endpoint = Endpoint::parse("https://10.0.0.7:8443").unwrap();
        let uri: Uri = "/a/b?x=1&y=2".parse().unwrap();
        assert_eq!(
            absolute(uri, &endpoint).unwrap(),
            "https://10.0.0.7:8443/a/b?x=1&y=2"
        );
        let proxied: Uri = "http://public.example/p?q".parse().unwrap();
        assert_eq!(
            absolute(proxied, &endpoint).unwrap(),
            "https://10.0.0.7:8443/p?q"
        );
        let authority_form: Uri = "public.example:443".parse().unwrap();
        assert_eq!(
            absolute(authority_form, &endpoint).unwrap(),
            "https://10.0.0.7:8443/"
        );
    }
}
