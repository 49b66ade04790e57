//! The body of a response being stored: streamed to the client as it
//! arrives and copied, up to the size limit, for the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use super::store::{Entry, FlightGuard, Store};
use crate::BoxError;

/// What is needed to store the response once its body is complete.
pub(crate) struct Pending {
    pub(crate) store: Arc<Store>,
    pub(crate) key: String,
    /// The entry without its body (`body` empty, `size` 0).
    pub(crate) entry: Entry,
    pub(crate) buf: BytesMut,
    pub(crate) limit: usize,
    pub(crate) guard: Option<FlightGuard>,
}

impl Pending {
    /// Builds the entry from the collected body and stores it; waiters wake
    /// once it is stored (the guard drops after the insert).
    pub(crate) fn finish(self) {
        let Pending {
            store,
            key,
            mut entry,
            buf,
            guard,
            ..
        } = self;
        entry.seal(buf.freeze());
        let entry = Arc::new(entry);
        let mut insert = Box::pin(async move {
            store.insert(&key, entry).await;
            drop(guard);
        });
        // The insert almost always completes without waiting; only when it
        // would (a concurrent writer of the same key) it is finished on a
        // task. Without a runtime the entry is simply not stored.
        if insert
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(insert);
        }
    }
}

pin_project! {
    /// Streams `B` through and keeps a copy for the store.
    pub(crate) struct CaptureBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B> CaptureBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    pub(crate) fn new(inner: B, pending: Pending) -> Self {
        if inner.is_end_stream() {
            pending.finish();
            return CaptureBody {
                inner,
                pending: None,
            };
        }
        CaptureBody {
            inner,
            pending: Some(pending),
        }
    }
}

impl<B> http_body::Body for CaptureBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish();
                }
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                // An incomplete body is never stored.
                *this.pending = None;
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        match frame.data_ref() {
            Some(data) => {
                if let Some(pending) = this.pending.as_mut() {
                    if pending.buf.len() + data.len() > pending.limit {
                        // Too large: stop copying, keep streaming.
                        *this.pending = None;
                    } else {
                        pending.buf.extend_from_slice(data);
                    }
                }
                // Servers stop polling once the body says it has ended.
                if this.inner.is_end_stream()
                    && let Some(pending) = this.pending.take()
                {
                    pending.finish();
                }
            }
            // Trailers are not stored, so neither is the response.
            None => *this.pending = None,
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
