use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::Entry;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::hex_into;

/// The request-id header: `x-request-id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming request id kept by default, in bytes.
pub const DEFAULT_MAX_REQUEST_ID_LEN: usize = 128;

/// The id of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text. It is always visible ASCII.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only visible-ASCII values are kept or generated, so this holds.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    #[must_use]
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Gives every request an id, forwards it, and echoes it on the response.
///
/// See the [module docs](crate::observe).
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestIdLayer {
    header: HeaderName,
    max_len: usize,
    tag_requests: bool,
}

impl RequestIdLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        Self {
            header: REQUEST_ID,
            max_len: DEFAULT_MAX_REQUEST_ID_LEN,
            tag_requests: true,
        }
    }

    /// The header that carries the id. Default: `x-request-id`.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The longest incoming id kept; longer ones are replaced.
    /// Default: 128 bytes.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// Whether each request carries its [`RequestId`] in its extensions,
    /// for the layers further in that read it (an access log, a transform
    /// template's `${request_id}`). Off, a stack where nothing reads it
    /// saves the insert; the id is still set in the request's header and
    /// echoed on the response.
    ///
    /// Default: on.
    pub fn tag_requests(mut self, on: bool) -> Self {
        self.tag_requests = on;
        self
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct SetRequestId<S> {
    inner: S,
    layer: RequestIdLayer,
}

impl<S> SetRequestId<S> {
    /// The request's id, settled in its headers: the incoming one when
    /// there is exactly one and it is valid (left as it is), else a new
    /// one in place of whatever was there. Through one entry: one look-up
    /// of the header's name rather than a read and then a write.
    fn settle_id(&self, headers: &mut http::HeaderMap) -> HeaderValue {
        match headers.entry(&self.layer.header) {
            Entry::Occupied(mut entry) => {
                let incoming = {
                    let mut values = entry.iter();
                    match (values.next(), values.next()) {
                        (Some(value), None) if is_valid_id(value, self.layer.max_len) => {
                            Some(value.clone())
                        }
                        _ => None,
                    }
                };
                incoming.unwrap_or_else(|| {
                    let id = generate_id();
                    // Replaces every value the request came with.
                    entry.insert(id.clone());
                    id
                })
            }
            Entry::Vacant(entry) => entry.insert(generate_id()).clone(),
        }
    }
}

/// 1 to `max_len` bytes of visible ASCII (`!` to `~`).
fn is_valid_id(value: &HeaderValue, max_len: usize) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= max_len && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A random UUID v4 in its hyphenated lower-case form.
fn generate_id() -> HeaderValue {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    for (range, at) in [(0..4, 0), (4..6, 9), (6..8, 14), (8..10, 19), (10..16, 24)] {
        let len = 2 * range.len();
        hex_into(&bytes[range], &mut text[at..at + len]);
    }
    // Owned by a shared buffer from the start: the id is cloned into the
    // request, its extension and the response, and a plain copy would be
    // reallocated as shared at the first clone. Hex digits and hyphens are
    // always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestIdResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let id = self.settle_id(request.headers_mut());
        if self.layer.tag_requests {
            request.extensions_mut().insert(RequestId(id.clone()));
        }
        RequestIdResponseFuture {
            inner: self.inner.call(request),
            echo: Some((self.layer.header.clone(), id)),
        }
    }
}

pin_project! {
    /// The response future of [`SetRequestId`]: echoes the id on the response.
    pub struct RequestIdResponseFuture<F> {
        #[pin]
        inner: F,
        echo: Option<(HeaderName, HeaderValue)>,
    }
}

impl<F> std::fmt::Debug for RequestIdResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIdResponseFuture")
            .field("echo", &self.echo)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RequestIdResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((header, id)) = this.echo.take() {
            response.headers_mut().insert(header, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4() {
        let a = generate_id();
        let b = generate_id();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(text.matches('-').count(), 4);
        assert!(is_valid_id(&a, DEFAULT_MAX_REQUEST_ID_LEN));
    }

    #[test]
    fn validity() {
        let ok = HeaderValue::from_static("abc-123_~!");
        assert!(is_valid_id(&ok, 10));
        assert!(!is_valid_id(&ok, 9));
        assert!(!is_valid_id(&HeaderValue::from_static("a b"), 128));
        assert!(!is_valid_id(&HeaderValue::from_static(""), 128));
        assert!(!is_valid_id(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            128
        ));
        assert!(!is_valid_id(
            &HeaderValue::from_bytes(b"a\tb").unwrap(),
            128
        ));
    }
}
