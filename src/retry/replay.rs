//! The request body the inner service of [`Retry`](super::Retry) receives:
//! it streams the original body once and keeps a bounded copy to replay.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The request body the inner service of [`Retry`](super::Retry)
    /// receives, in place of the caller's body `B`.
    ///
    /// * An empty body (one whose `is_end_stream()` is already true) is
    ///   [`Empty`](ReplayBody::is_end_stream): nothing to hold.
    /// * A request that cannot be retried, or whose announced length is over
    ///   the replay limit, passes its body through untouched, streamed once.
    /// * Otherwise the body streams to the first attempt as it arrives, and
    ///   each data frame is also kept (reference-counted [`Bytes`], no copy),
    ///   up to the replay limit. A retry replays the kept frames
    ///   byte-identical and then goes on reading the original body where the
    ///   previous attempt stopped. Once the kept bytes would pass the limit,
    ///   they are dropped and the request is not retried: the body is never
    ///   held whole in memory.
    ///
    /// When a retry starts, the previous attempt's body is superseded: polling
    /// it yields an error, so only the latest attempt reads the original.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Empty,
        Once { #[pin] body: B },
        Replay { state: Arc<Mutex<ReplayState<B>>>, id: u32 },
    }
}

/// What every attempt's body of one request shares.
pub(crate) struct ReplayState<B> {
    /// The rest of the original body; `None` once it ended or failed.
    body: Option<Pin<Box<B>>>,
    /// Data frames read from the original so far, while replay is possible.
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    buffered: usize,
    limit: usize,
    /// The next chunk the current attempt replays.
    cursor: usize,
    trailers: Option<HeaderMap>,
    trailers_sent: bool,
    /// The original body has ended (all data, and trailers if any, read).
    ended: bool,
    /// The original body failed: nothing more can be read or replayed.
    failed: bool,
    /// Everything read is still in `chunks`, so another attempt can be made.
    replayable: bool,
    /// Another attempt may still come, so chunks are kept.
    buffering: bool,
    /// The id of the latest attempt's body, the only one that may read.
    current: u32,
}

impl<B> ReplayState<B> {
    fn stop_buffering(&mut self) {
        self.buffering = false;
        self.replayable = false;
    }

    /// Drops the chunks the current attempt has already read, once no
    /// further attempt can want them.
    fn release_read_chunks(&mut self) {
        if !self.buffering {
            while self.cursor > 0 {
                if let Some(chunk) = self.chunks.pop_front() {
                    self.buffered -= chunk.len();
                }
                self.cursor -= 1;
            }
        }
    }
}

fn lock<B>(state: &Mutex<ReplayState<B>>) -> MutexGuard<'_, ReplayState<B>> {
    // A panic while the lock was held can only come from the wrapped body's
    // poll; the state is still consistent, so go on with it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Superseded;

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this request body was superseded by a retry")
    }
}

impl std::error::Error for Superseded {}

#[derive(Debug)]
struct Failed;

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body failed on an earlier attempt")
    }
}

impl std::error::Error for Failed {}

impl<B> ReplayBody<B> {
    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once { body },
        }
    }

    fn replay(state: Arc<Mutex<ReplayState<B>>>, id: u32) -> Self {
        Self {
            kind: Kind::Replay { state, id },
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Once { .. } => "once",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("ReplayBody").field("kind", &kind).finish()
    }
}

/// The retry side of a replayable body: makes each attempt's body.
pub(crate) enum ReplaySource<B> {
    /// The request has no body: every attempt gets an empty one.
    Empty,
    Shared(Arc<Mutex<ReplayState<B>>>),
}

impl<B> ReplaySource<B>
where
    B: Body,
{
    /// The source for `body` and the first attempt's body, or `body` back
    /// when it cannot be replayed (its announced length is over `limit`).
    pub(crate) fn new(body: B, limit: usize) -> Result<(Self, ReplayBody<B>), B> {
        if body.is_end_stream() {
            return Ok((Self::Empty, ReplayBody::empty()));
        }
        if body.size_hint().lower() > limit as u64 {
            return Err(body);
        }
        let state = Arc::new(Mutex::new(ReplayState {
            body: Some(Box::pin(body)),
            chunks: VecDeque::new(),
            buffered: 0,
            limit,
            cursor: 0,
            trailers: None,
            trailers_sent: false,
            ended: false,
            failed: false,
            replayable: true,
            buffering: true,
            current: 0,
        }));
        Ok((
            Self::Shared(Arc::clone(&state)),
            ReplayBody::replay(state, 0),
        ))
    }

    /// Whether another attempt can get the whole body.
    pub(crate) fn is_replayable(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Shared(state) => lock(state).replayable,
        }
    }

    /// The next attempt's body, superseding the previous one; `None` when
    /// the body can no longer be replayed. `last` says no attempt will
    /// follow this one, so nothing more needs to be kept.
    pub(crate) fn next_body(&self, last: bool) -> Option<ReplayBody<B>> {
        match self {
            Self::Empty => Some(ReplayBody::empty()),
            Self::Shared(state) => {
                let mut guard = lock(state);
                if !guard.replayable {
                    return None;
                }
                guard.current = guard.current.wrapping_add(1);
                guard.cursor = 0;
                guard.trailers_sent = false;
                if last {
                    guard.stop_buffering();
                }
                let id = guard.current;
                drop(guard);
                Some(ReplayBody::replay(Arc::clone(state), id))
            }
        }
    }
}

impl<B> Drop for ReplaySource<B> {
    // Inlined: a request without a body (`Empty`) has nothing to do here.
    #[inline]
    fn drop(&mut self) {
        if let Self::Shared(state) = self {
            stop_keeping(state);
        }
    }
}

/// No attempt will follow: the current one streams on without keeping
/// anything.
#[inline(never)]
fn stop_keeping<B>(state: &Mutex<ReplayState<B>>) {
    let mut guard = lock(state);
    guard.stop_buffering();
    guard.release_read_chunks();
}

impl<B> fmt::Debug for ReplaySource<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplaySource").finish_non_exhaustive()
    }
}

fn poll_replay<B>(
    state: &Mutex<ReplayState<B>>,
    id: u32,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut guard = lock(state);
    let state = &mut *guard;
    if state.current != id {
        return Poll::Ready(Some(Err(Superseded.into())));
    }
    if let Some(chunk) = state.chunks.get(state.cursor) {
        let chunk = chunk.clone();
        state.cursor += 1;
        state.release_read_chunks();
        return Poll::Ready(Some(Ok(Frame::data(chunk))));
    }
    if state.ended {
        if !state.trailers_sent {
            state.trailers_sent = true;
            if let Some(trailers) = &state.trailers {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }
        return Poll::Ready(None);
    }
    let Some(body) = state.body.as_mut() else {
        return Poll::Ready(Some(Err(Failed.into())));
    };
    match body.as_mut().poll_frame(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(None) => {
            state.ended = true;
            state.trailers_sent = true;
            state.body = None;
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(error))) => {
            state.failed = true;
            state.replayable = false;
            state.body = None;
            state.chunks.clear();
            state.buffered = 0;
            state.cursor = 0;
            Poll::Ready(Some(Err(error.into())))
        }
        Poll::Ready(Some(Ok(frame))) => {
            let at_end = body.is_end_stream();
            match frame.data_ref() {
                Some(data) => {
                    if state.buffering {
                        if state.buffered + data.len() <= state.limit {
                            state.buffered += data.len();
                            state.chunks.push_back(data.clone());
                            state.cursor += 1;
                        } else {
                            // Over the limit: stream on, keep nothing.
                            state.stop_buffering();
                            state.release_read_chunks();
                        }
                    }
                    // Seen at once, so a client can end the stream with
                    // this frame rather than with an empty one after it.
                    if at_end {
                        state.ended = true;
                        state.trailers_sent = true;
                        state.body = None;
                    }
                }
                None => {
                    // Trailers end the body.
                    state.ended = true;
                    state.trailers_sent = true;
                    state.body = None;
                    if state.buffering {
                        state.trailers = frame.trailers_ref().cloned();
                    }
                }
            }
            Poll::Ready(Some(Ok(frame)))
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Empty => Poll::Ready(None),
            KindProj::Once { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Replay { state, id } => poll_replay(state, *id, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once { body } => body.is_end_stream(),
            Kind::Replay { state, id } => {
                let state = lock(state);
                state.current == *id
                    && state.ended
                    && state.cursor >= state.chunks.len()
                    && (state.trailers_sent || state.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Once { body } => body.size_hint(),
            Kind::Replay { state, id } => {
                let state = lock(state);
                if state.current != *id {
                    return SizeHint::default();
                }
                let unread: u64 = state
                    .chunks
                    .iter()
                    .skip(state.cursor)
                    .map(|c| c.len() as u64)
                    .sum();
                match &state.body {
                    Some(body) => {
                        let rest = body.size_hint();
                        let mut hint = SizeHint::new();
                        hint.set_lower(rest.lower().saturating_add(unread));
                        if let Some(upper) = rest.upper() {
                            hint.set_upper(upper.saturating_add(unread));
                        }
                        hint
                    }
                    None => SizeHint::with_exact(unread),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body that yields its frames one by one, pending once before each.
    struct Trickle {
        frames: VecDeque<Frame<Bytes>>,
        ready: bool,
    }

    impl Trickle {
        fn new(chunks: usize, size: usize, trailers: bool) -> Self {
            let mut frames: VecDeque<_> = (0..chunks)
                .map(|i| Frame::data(Bytes::from(vec![i as u8; size])))
                .collect();
            if trailers {
                let mut map = HeaderMap::new();
                map.insert("x-sum", "ok".parse().unwrap());
                frames.push_back(Frame::trailers(map));
            }
            Self {
                frames,
                ready: false,
            }
        }
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.ready = false;
            Poll::Ready(self.frames.pop_front().map(Ok))
        }
    }

    fn source<B: Body>(body: B, limit: usize) -> (ReplaySource<B>, ReplayBody<B>) {
        match ReplaySource::new(body, limit) {
            Ok(pair) => pair,
            Err(_) => panic!("not replayable"),
        }
    }

    #[test]
    fn fits_a_hyper_client() {
        fn send_unpin<T: Send + Unpin + 'static>() {}
        send_unpin::<ReplayBody<Full<Bytes>>>();
        send_unpin::<ReplayBody<crate::Body>>();
    }

    #[tokio::test]
    async fn a_known_end_is_reported_with_the_last_frame() {
        let (source, mut first) = source(Full::new(Bytes::from("abc")), 64);
        assert!(!first.is_end_stream());
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(first.is_end_stream(), "no empty poll needed");
        let second = source.next_body(false).unwrap();
        assert_eq!(second.size_hint().exact(), Some(3));
        assert!(!second.is_end_stream());
    }

    #[tokio::test]
    async fn replays_the_same_bytes_and_trailers() {
        let (source, first) = source(Trickle::new(4, 100, true), 1024);
        let first = first.collect().await.unwrap();
        assert_eq!(first.trailers().unwrap()["x-sum"], "ok");
        let first = first.to_bytes();
        assert_eq!(first.len(), 400);
        let second = source.next_body(false).unwrap();
        assert_eq!(second.size_hint().exact(), Some(400));
        let second = second.collect().await.unwrap();
        assert_eq!(second.trailers().unwrap()["x-sum"], "ok");
        assert_eq!(second.to_bytes(), first);
    }

    #[tokio::test]
    async fn a_retry_goes_on_where_the_first_attempt_stopped() {
        let (source, mut first) = source(Trickle::new(4, 10, false), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from(vec![0; 10]));
        let mut second = source.next_body(false).unwrap();
        assert!(first.frame().await.unwrap().is_err(), "superseded");
        let bytes = (&mut second).collect().await.unwrap().to_bytes();
        let expected: Vec<u8> = (0..4u8).flat_map(|i| vec![i; 10]).collect();
        assert_eq!(&bytes[..], &expected[..]);
        assert!(second.is_end_stream());
    }

    #[tokio::test]
    async fn over_the_limit_streams_once_and_keeps_nothing() {
        let (source, first) = source(Trickle::new(10, 100, false), 450);
        let bytes = first.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 1000, "streamed whole");
        assert!(!source.is_replayable());
        assert!(source.next_body(false).is_none());
        if let ReplaySource::Shared(state) = &source {
            assert_eq!(lock(state).buffered, 0);
        }
    }

    #[test]
    fn announced_lengths_over_the_limit_and_empty_bodies() {
        assert!(ReplaySource::new(Full::new(Bytes::from(vec![0; 100])), 99).is_err());
        let (source, body) = source(Full::new(Bytes::new()), 10);
        assert!(body.is_end_stream());
        assert!(matches!(source, ReplaySource::Empty));
    }

    #[tokio::test]
    async fn the_last_attempt_releases_what_it_has_read() {
        let (source, first) = source(Trickle::new(3, 10, false), 1024);
        drop(first);
        let last = source.next_body(true).unwrap();
        let bytes = last.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 30);
        if let ReplaySource::Shared(state) = &source {
            assert!(lock(state).chunks.is_empty());
        }
    }
}
