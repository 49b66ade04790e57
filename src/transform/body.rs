use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A body after [`JsonBody`](super::JsonBody): the original body passed
    /// through, a rewritten JSON document, or an original body resumed
    /// after the part read to decide (over the size cap, or failed while
    /// being read — the failure is passed on after the data read before
    /// it). No data is ever lost or reordered.
    pub struct TransformBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Inner { #[pin] body: B },
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Resumed { prefix: Option<Bytes>, #[pin] rest: B },
        Failed { prefix: Option<Bytes>, error: Option<B::Error> },
    }
}

impl<B: Body> TransformBody<B> {
    /// The body passed through untouched.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: Some(data).filter(|d| !d.is_empty()),
                trailers,
            },
        }
    }

    fn resumed(prefix: Bytes, rest: B) -> Self {
        Self {
            kind: Kind::Resumed {
                prefix: Some(prefix).filter(|p| !p.is_empty()),
                rest,
            },
        }
    }

    fn failed(prefix: Bytes, error: B::Error) -> Self {
        Self {
            kind: Kind::Failed {
                prefix: Some(prefix).filter(|p| !p.is_empty()),
                error: Some(error),
            },
        }
    }
}

impl<B: Body> fmt::Debug for TransformBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Buffered { .. } => "buffered",
            Kind::Resumed { .. } => "resumed",
            Kind::Failed { .. } => "failed",
        };
        f.debug_struct("TransformBody")
            .field("kind", &kind)
            .finish()
    }
}

impl<B> Body for TransformBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Resumed { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx)
            }
            KindProj::Failed { prefix, error } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                Poll::Ready(error.take().map(Err))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Resumed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let prefixed = |prefix: &Option<Bytes>, rest: SizeHint| {
            let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
            let mut hint = SizeHint::new();
            hint.set_lower(rest.lower() + extra);
            if let Some(upper) = rest.upper() {
                hint.set_upper(upper + extra);
            }
            hint
        };
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Resumed { prefix, rest } => prefixed(prefix, rest.size_hint()),
            Kind::Failed { prefix, .. } => prefixed(prefix, SizeHint::new()),
        }
    }
}

/// Reads a body up to a size cap, to decide whether to rewrite it.
#[derive(Debug)]
pub(crate) struct Collector {
    buf: BytesMut,
    trailers: Option<HeaderMap>,
    cap: usize,
}

/// How reading ended.
pub(crate) enum Collected<B: Body> {
    /// All of it, within the cap.
    Complete {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Over the cap: the body to send on, untouched.
    TooLarge(TransformBody<B>),
    /// The body failed: what was read, then the error.
    Failed(TransformBody<B>),
}

impl Collector {
    pub(crate) fn new(cap: usize, expected: Option<u64>) -> Self {
        // Sized from the announced length when there is one (already known
        // to be within the cap), so a complete body is one allocation.
        let capacity = expected.map_or(8 * 1024, |n| n as usize).min(cap);
        Self {
            buf: BytesMut::with_capacity(capacity),
            trailers: None,
            cap,
        }
    }

    /// Reads `body` until its end, the cap, or an error. `body` is `Some`
    /// until this returns `Ready`.
    pub(crate) fn poll<B>(
        &mut self,
        body: &mut Option<B>,
        cx: &mut Context<'_>,
    ) -> Poll<Collected<B>>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        loop {
            let Some(inner) = body.as_mut() else {
                // Polled after completion: report an empty, complete body.
                return Poll::Ready(Collected::Complete {
                    data: Bytes::new(),
                    trailers: None,
                });
            };
            let frame = ready!(Pin::new(inner).poll_frame(cx));
            match frame {
                None => {
                    body.take();
                    return Poll::Ready(Collected::Complete {
                        data: std::mem::take(&mut self.buf).freeze(),
                        trailers: self.trailers.take(),
                    });
                }
                Some(Err(error)) => {
                    body.take();
                    let prefix = std::mem::take(&mut self.buf).freeze();
                    return Poll::Ready(Collected::Failed(TransformBody::failed(prefix, error)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.buf.extend_from_slice(&data);
                        if self.buf.len() > self.cap {
                            let prefix = std::mem::take(&mut self.buf).freeze();
                            // `body` was `Some` at the top of the loop.
                            let Some(rest) = body.take() else {
                                continue;
                            };
                            return Poll::Ready(Collected::TooLarge(TransformBody::resumed(
                                prefix, rest,
                            )));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            match &mut self.trailers {
                                Some(existing) => existing.extend(trailers),
                                None => self.trailers = Some(trailers),
                            }
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::BodyExt;

    use super::*;

    /// A body of several data frames, then maybe an error.
    struct Frames(VecDeque<Result<Bytes, &'static str>>);

    impl Frames {
        fn new(parts: &[&'static str], error: bool) -> Self {
            let mut frames: VecDeque<_> = parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes())))
                .collect();
            if error {
                frames.push_back(Err("reset"));
            }
            Self(frames)
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
        }
    }

    async fn collect<B: Body<Data = Bytes> + Unpin>(body: B, cap: usize) -> Collected<B> {
        let mut collector = Collector::new(cap, None);
        let mut body = Some(body);
        std::future::poll_fn(|cx| collector.poll(&mut body, cx)).await
    }

    #[tokio::test]
    async fn complete_too_large_and_failed_keep_every_byte_in_order() {
        let Collected::Complete { data, .. } =
            collect(Frames::new(&["{\"a\"", ":1}"], false), 16).await
        else {
            panic!("complete expected")
        };
        assert_eq!(&data[..], b"{\"a\":1}");

        let body = Frames::new(&["0123456789", "abcdefghij", "KLM"], false);
        let Collected::TooLarge(resumed) = collect(body, 15).await else {
            panic!("too large expected")
        };
        assert_eq!(resumed.size_hint().lower(), 20);
        let all = resumed.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"0123456789abcdefghijKLM");

        let Collected::Failed(mut failed) = collect(Frames::new(&["abc"], true), 15).await else {
            panic!("failed expected")
        };
        let first = failed.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        assert_eq!(failed.frame().await.unwrap().unwrap_err(), "reset");
        assert!(failed.frame().await.is_none());
    }

    #[tokio::test]
    async fn buffered_body_has_an_exact_size() {
        let body: TransformBody<Frames> = TransformBody::buffered(Bytes::from_static(b"{}"), None);
        assert_eq!(body.size_hint().exact(), Some(2));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
    }
}
