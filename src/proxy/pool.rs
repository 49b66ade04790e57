//! The proxy's own pool of HTTP/1.1 connections to cleartext upstreams.
//!
//! hyper-util's pooled client does per request what a reverse proxy in
//! front of a few endpoints does not need: it hashes a `(Scheme, Authority)`
//! key byte by byte with SipHash on checkout and again on return, races a
//! checkout against a lazy connect, and spawns a task per response only to
//! wait until the connection is idle again. This pool keeps, per upstream
//! authority, a stack of idle `hyper::client::conn::http1` senders:
//!
//! * **checkout** takes the most recently used idle sender whose
//!   connection is ready for a request now (one still finishing an
//!   exchange is left idle, never waited for; closed ones are dropped);
//!   with none, it connects (hyper-util's `HttpConnector`: the same resolver,
//!   connect timeout, `TCP_NODELAY` and keep-alive as before) and spawns
//!   the connection, with upgrades, on the runtime;
//! * a request a reused connection refused before writing it (the
//!   upstream closed it meanwhile) is sent again, as hyper-util does, on
//!   the next idle connection or a new one;
//! * **return** happens when the response body ends (the body is wrapped),
//!   or at once for a response without a body; a body dropped before its
//!   end takes the connection with it (hyper closes it), so a connection is
//!   never reused mid-message; a `101` connection is never returned;
//! * **bounds**: at most `max_idle_per_host` idle connections per authority
//!   and [`MAX_HOSTS`] authorities with idle connections; past either,
//!   the connection is closed instead of kept. A background sweep, started
//!   with the first idle connection, runs every half idle timeout and
//!   closes connections idle for at least the timeout (so between 1× and
//!   1.5× it: counted in sweeps, which keeps the clock off the request
//!   path); it ends when the proxy is dropped.
//!
//! HTTP/2 (prior knowledge or ALPN) and TLS upstreams stay on hyper-util's
//! client, whose pool multiplexes HTTP/2 streams.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::BoxError;
use crate::body::Body;

/// At most this many upstream authorities hold idle connections at once.
pub(crate) const MAX_HOSTS: usize = 4096;

/// A pool of HTTP/1.1 connections, shared by every clone of a proxy.
#[derive(Debug, Clone)]
pub(crate) struct Http1Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle: Mutex<Idle>,
    connector: HttpConnector,
    builder: http1::Builder,
    max_idle_per_host: usize,
    idle_timeout: Option<Duration>,
}

#[derive(Debug, Default)]
struct Idle {
    hosts: HashMap<Key, Vec<IdleSender>, BuildHasherDefault<Fnv>>,
    sweeping: bool,
    /// Sweeps so far.
    epoch: u64,
}

#[derive(Debug)]
struct IdleSender {
    sender: http1::SendRequest<Body>,
    /// [`Idle::epoch`] when it became idle.
    epoch: u64,
}

/// FNV-1a: the keys are a few endpoint authorities the balancer chose (at
/// most [`MAX_HOSTS`] of them), hashed twice per request; SipHash's
/// flooding resistance buys nothing here and costs more than the lookup.
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An upstream authority, hashed and compared as its exact text (the
/// balancer sets it from the endpoint, always spelled the same way), so
/// lookups can borrow a `&str`.
#[derive(Debug, Clone)]
struct Key(Authority);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Key {}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// Why an exchange failed, before any response head arrived.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: refused, unresolvable, or the connect timed out.
    Connect(BoxError),
    /// The connection failed the exchange (closed, reset, malformed
    /// answer, the request body failed); `canceled` when it never wrote
    /// the request.
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "connect error: {error}"),
            Self::Http(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(error) => Some(error.as_ref()),
            Self::Http(error) => Some(error),
        }
    }
}

/// The future of one exchange through the pool.
pub(crate) type SendFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, SendError>> + Send>>;

impl Http1Pool {
    pub(crate) fn new(
        connector: HttpConnector,
        max_idle_per_host: usize,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Idle::default()),
                connector,
                builder: http1::Builder::new(),
                max_idle_per_host,
                idle_timeout,
            }),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `authority` over a
    /// pooled connection. The response body gives the connection back to
    /// the pool when it ends.
    pub(crate) fn send(&self, authority: Authority, request: Request<Body>) -> SendFuture {
        let inner = Arc::clone(&self.inner);
        let key = Key(authority);
        // The usual case, an idle connection ready now: the request goes
        // into its queue here, and the future only waits for the answer
        // (a smaller future than the loop's, which holds the request).
        if let Some(mut sender) = inner.checkout(&key) {
            let sent = sender.try_send_request(request);
            return Box::pin(async move {
                match sent.await {
                    Ok(response) => Ok(inner.wrap(key, sender, response)),
                    // The rare second try, boxed on its own so this
                    // future stays small.
                    Err(error) => Box::pin(inner.send(key, Inner::unsent(error, true)?)).await,
                }
            });
        }
        Box::pin(inner.send(key, request))
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding this lock cannot leave the map half-written
        // (every critical section is a push, a pop or a retain), so a
        // poisoned lock is still a consistent pool.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send(
        self: Arc<Self>,
        key: Key,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout(&key) {
                Some(sender) => (sender, true),
                None => (self.connect(&key).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.wrap(key, sender, response)),
                Err(error) => request = Self::unsent(error, reused)?,
            }
        }
    }

    /// The request back from a failed send when it may go again: never
    /// written, on a reused connection the upstream closed meanwhile. Each
    /// try uses up a dead idle connection, and a new connection's refusal
    /// is final, so the retries end.
    fn unsent(
        mut error: TrySendError<Request<Body>>,
        reused: bool,
    ) -> Result<Request<Body>, SendError> {
        match error.take_message() {
            Some(unsent) if reused => Ok(unsent),
            _ => Err(SendError::Http(error.into_error())),
        }
    }

    /// An idle connection to `key` that is ready for a request now, if
    /// any. Never waits: a connection still finishing its last exchange
    /// (an upstream that answered before reading the whole request body,
    /// say) stays idle rather than make this request wait behind another
    /// client's upload; closed ones are dropped.
    fn checkout(&self, key: &Key) -> Option<http1::SendRequest<Body>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.lock();
        let stack = idle.hosts.get_mut(key.0.as_str())?;
        let mut found = None;
        // From the most recently used down.
        let mut i = stack.len();
        while i > 0 {
            i -= 1;
            match stack[i].sender.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {
                    found = Some(stack.remove(i).sender);
                    break;
                }
                Poll::Ready(Err(_)) => drop(stack.remove(i)),
                Poll::Pending => {}
            }
        }
        // An emptied stack stays, with its capacity, for the connection to
        // come back to (usually at the end of this very exchange); the
        // sweep and a full map drop empty stacks.
        found
    }

    async fn connect(&self, key: &Key) -> Result<http1::SendRequest<Body>, SendError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(key.0.clone())
            .path_and_query("/")
            .build()
            .map_err(|error| SendError::Connect(error.into()))?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|error| SendError::Connect(error.into()))?;
        let (sender, connection) = self
            .builder
            .handshake::<TokioIo<tokio::net::TcpStream>, Body>(io)
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(error = %error, "proxy: upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// The response, with a body that returns the connection when it ends.
    fn wrap(
        self: Arc<Self>,
        key: Key,
        sender: http1::SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = response.into_parts();
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection is the tunnel's now.
            return Response::from_parts(parts, Body::new(body));
        }
        let release = Release {
            pool: self,
            key,
            sender,
        };
        if http_body::Body::is_end_stream(&body) {
            release.give_back();
            return Response::from_parts(parts, Body::new(body));
        }
        Response::from_parts(
            parts,
            Body::new(PooledBody {
                inner: body,
                release: Some(release),
            }),
        )
    }

    fn put(self: &Arc<Self>, key: Key, sender: http1::SendRequest<Body>) {
        if sender.is_closed() || self.max_idle_per_host == 0 {
            return;
        }
        let start_sweep = {
            let mut idle = self.lock();
            if idle.hosts.len() >= MAX_HOSTS && !idle.hosts.contains_key(key.0.as_str()) {
                // Stacks whose connections are all out, or were, hold no
                // connection: make room from them first.
                idle.hosts.retain(|_, stack| !stack.is_empty());
                if idle.hosts.len() >= MAX_HOSTS {
                    return;
                }
            }
            let epoch = idle.epoch;
            let stack = idle.hosts.entry(key).or_default();
            if stack.len() >= self.max_idle_per_host {
                return;
            }
            stack.push(IdleSender { sender, epoch });
            let start = self.idle_timeout.is_some() && !idle.sweeping;
            idle.sweeping |= start;
            start
        };
        if start_sweep && let Some(timeout) = self.idle_timeout {
            sweep(Arc::downgrade(self), timeout);
        }
    }
}

/// Closes connections idle for at least `timeout`, sweeping every half
/// timeout, until the pool is gone (or no runtime can run the sweep).
fn sweep(pool: Weak<Inner>, timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let period = (timeout / 2).max(Duration::from_millis(1));
    // An entry put between sweeps `e` and `e + 1` has been idle for at
    // least `(k - e - 1) × period` at sweep `k`.
    let sweeps = u64::try_from(timeout.as_nanos().div_ceil(period.as_nanos()))
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            ticks.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            // Dropping a sender wakes its idle connection, which closes.
            let mut idle = pool.lock();
            idle.epoch += 1;
            let epoch = idle.epoch;
            for stack in idle.hosts.values_mut() {
                stack.retain(|entry| {
                    !entry.sender.is_closed() && epoch.saturating_sub(entry.epoch) < sweeps
                });
            }
            idle.hosts.retain(|_, stack| !stack.is_empty());
            drop(idle);
        }
    });
}

/// What returns a connection to the pool.
struct Release {
    pool: Arc<Inner>,
    key: Key,
    sender: http1::SendRequest<Body>,
}

impl Release {
    fn give_back(self) {
        self.pool.put(self.key, self.sender);
    }
}

pin_project! {
    /// An upstream response body that returns its connection to the pool
    /// when it ends.
    struct PooledBody {
        #[pin]
        inner: Incoming,
        release: Option<Release>,
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
            // A failed body leaves the connection unusable: dropping the
            // sender with the body lets it close.
            Some(Err(_)) => {
                this.release.take();
                false
            }
        };
        if ended && let Some(release) = this.release.take() {
            release.give_back();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(authority: &str) -> Key {
        Key(Authority::try_from(authority).expect("a valid authority"))
    }

    /// A sender ready for a request, over an in-memory connection whose
    /// far end is kept in `ends`.
    async fn sender(ends: &mut Vec<tokio::io::DuplexStream>) -> http1::SendRequest<Body> {
        let (client, server) = tokio::io::duplex(64);
        ends.push(server);
        let (mut sender, connection) = http1::Builder::new()
            .handshake::<_, Body>(TokioIo::new(client))
            .await
            .expect("a handshake over a duplex stream");
        tokio::spawn(connection);
        sender.ready().await.expect("an open connection");
        sender
    }

    #[tokio::test]
    async fn checkout_keeps_the_emptied_stack_and_a_full_map_makes_room_from_empty_ones() {
        let pool = Http1Pool::new(HttpConnector::new(), 4, None);
        let mut ends = Vec::new();
        pool.inner.put(key("a:80"), sender(&mut ends).await);
        assert!(pool.inner.checkout(&key("a:80")).is_some());
        assert!(pool.inner.checkout(&key("a:80")).is_none());
        assert_eq!(pool.inner.lock().hosts.get("a:80").map(Vec::len), Some(0));

        // Every authority slot taken, all of them empty: a new authority's
        // connection is still kept, in place of the empty stacks.
        {
            let mut idle = pool.inner.lock();
            for i in 0..MAX_HOSTS {
                idle.hosts.insert(key(&format!("h{i}:80")), Vec::new());
            }
        }
        pool.inner.put(key("new:80"), sender(&mut ends).await);
        let idle = pool.inner.lock();
        assert_eq!(idle.hosts.len(), 1);
        assert_eq!(idle.hosts.get("new:80").map(Vec::len), Some(1));
    }
}
