//! Body types: the crate's boxed [`Body`] and the [`ResponseBody`] that
//! layers answer with.
//!
//! Layers are generic over the inner service's body wherever they can be.
//! A layer that may answer by itself (a 504 from `timeout`, a 429 from
//! `rate_limit`) returns [`ResponseBody<B>`]: either the inner body, passed
//! through untouched, or a body the layer wrote — no boxing, no extra
//! allocation on the pass-through path. Layers that must hold or replay a
//! body (retry, cache) use the boxed [`Body`] and say so in their docs.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;

use crate::BoxError;

/// The crate's boxed body: any `http_body::Body` with `Bytes` data, erased.
///
/// It is `Send` but not `Sync`, like axum's body, so that any body a server
/// or client hands out fits.
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Boxes `body`. A [`Body`] passed in is not boxed twice, nor is one
    /// inside a [`ResponseBody`] (one or two deep, as a stack of meshgate
    /// layers returns it) that carries the inner service's body.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any = &mut slot as &mut dyn std::any::Any;
        // Each `take` is a type check the compiler resolves for `B`.
        if let Some(body) = take::<Body>(any) {
            return body;
        }
        if let Some(body) = take::<ResponseBody<Body>>(any) {
            return body.into_body();
        }
        if let Some(body) = take::<ResponseBody<ResponseBody<Body>>>(any) {
            return body.into_body();
        }
        match slot {
            Some(body) => Self::boxed(body),
            // The slot is only emptied by a `take` that returned.
            None => Self::empty(),
        }
    }

    fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self(body.map_err(Into::into).boxed_unsync())
    }

    /// A body with no data.
    #[must_use]
    pub fn empty() -> Self {
        Self(Empty::new().map_err(|never| match never {}).boxed_unsync())
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::new(Full::new(bytes))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Self::from(Bytes::from(v))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

pin_project! {
    /// The body of a response from a meshgate layer: the inner service's body
    /// `B`, or one the layer wrote itself (a problem document).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Local { body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body the layer wrote itself.
    pub fn local(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Local { body },
        }
    }

    /// Whether the layer wrote this body itself.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local { .. })
    }
}

/// The value in `slot` when it is an `Option<T>`, taken out of it: a type
/// check the compiler resolves for the slot's concrete type, so a generic
/// caller can skip wrapping what is already the type it wants.
pub(crate) fn take<T: 'static>(slot: &mut dyn std::any::Any) -> Option<T> {
    slot.downcast_mut::<Option<T>>().and_then(Option::take)
}

/// A [`ResponseBody`] whose inner body unwraps into a [`Body`] without a
/// box of its own.
trait IntoBody {
    fn into_body(self) -> Body;
}

impl IntoBody for Body {
    fn into_body(self) -> Body {
        self
    }
}

impl<B: IntoBody + http_body::Body<Data = Bytes> + Send + 'static> IntoBody for ResponseBody<B>
where
    B::Error: Into<BoxError>,
{
    fn into_body(self) -> Body {
        match self.kind {
            Kind::Inner { body } => body.into_body(),
            local @ Kind::Local { .. } => Body::boxed(ResponseBody::<B> { kind: local }),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_local() { "local" } else { "inner" };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::local(Full::default())
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Local { body } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Local { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn boxed_body_is_not_boxed_twice_and_keeps_data() {
        let body = Body::new(Body::from("hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn response_body_passes_inner_and_local_bodies_through() {
        let inner: ResponseBody<Full<Bytes>> = ResponseBody::inner(Full::from("in"));
        assert!(!inner.is_local());
        assert_eq!(&inner.collect().await.unwrap().to_bytes()[..], b"in");
        let local: ResponseBody<Body> = ResponseBody::local(Full::from("out"));
        assert!(local.is_local());
        assert_eq!(local.size_hint().exact(), Some(3));
        assert_eq!(&local.collect().await.unwrap().to_bytes()[..], b"out");
    }

    #[tokio::test]
    async fn response_bodies_of_a_body_unwrap_inner_and_keep_local() {
        async fn text(body: Body) -> Bytes {
            body.collect().await.unwrap().to_bytes()
        }
        let one = ResponseBody::inner(Body::from("inner"));
        assert_eq!(text(Body::new(one)).await, "inner");
        let one: ResponseBody<Body> = ResponseBody::local(Full::from("local"));
        assert_eq!(text(Body::new(one)).await, "local");
        let two = ResponseBody::inner(ResponseBody::inner(Body::from("inner 2")));
        assert_eq!(text(Body::new(two)).await, "inner 2");
        let two = ResponseBody::inner(ResponseBody::<Body>::local(Full::from("local 2")));
        assert_eq!(text(Body::new(two)).await, "local 2");
        let two: ResponseBody<ResponseBody<Body>> = ResponseBody::local(Full::from("local 3"));
        let body = Body::new(two);
        assert_eq!(body.size_hint().exact(), Some(7));
        assert_eq!(text(body).await, "local 3");
    }
}
