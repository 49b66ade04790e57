//! The connection server: accepts TCP connections and serves HTTP/1.1 and
//! h2c (or TLS with ALPN) on them with the limits that protect a gateway.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinSet, Unconstrained};
use tokio::time::Instant;
use tower::util::Oneshot;
use tower_service::Service;

use super::timer::HeadTimer;
use crate::BoxError;
use crate::future::{CallNow, call_if_ready};
use crate::peer::{PeerAddr, PeerCertificate, TlsConnection};
use crate::timeout::reused::hold_waker;

/// Limits and timeouts of a [`Server`].
///
/// Every value has a production default; builder methods clamp values that
/// would disable a protection (a zero limit) to the smallest working one.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    max_header_bytes: usize,
    max_headers: usize,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown_timeout: Duration,
    http2: bool,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
    #[cfg(feature = "tls")]
    tls_permissive: bool,
}

/// hyper refuses an HTTP/1 read buffer smaller than this.
const MIN_HEADER_BYTES: usize = 8 * 1024;
/// hyper's own default header count; setting it moves the parse buffer to the heap.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: HYPER_DEFAULT_MAX_HEADERS,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            http2: true,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_permissive: false,
        }
    }
}

impl ServerConfig {
    /// The defaults: 64 KiB of headers, 100 headers, 10 s to read them,
    /// 10 000 connections, 30 s to drain on shutdown, HTTP/1.1 and h2c.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The most bytes a request head (request line and headers) may take.
    /// A larger HTTP/1 head gets `431 Request Header Fields Too Large`; on
    /// HTTP/2 it is the advertised `SETTINGS_MAX_HEADER_LIST_SIZE`.
    ///
    /// Default: 64 KiB. Values under 8 KiB are raised to 8 KiB, hyper's floor.
    #[must_use]
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(MIN_HEADER_BYTES);
        self
    }

    /// The most header fields an HTTP/1 request may carry; more get `431`.
    ///
    /// Default: 100. At least 1.
    #[must_use]
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count.max(1);
        self
    }

    /// How long a client may take to send a complete request head, counted
    /// from the connection's accept for the first request and from the end of
    /// the previous response for the next ones (slowloris protection). A
    /// connection that runs past it is closed. With TLS the handshake
    /// counts in the first request's time.
    ///
    /// Default: 10 s. At least 1 ms.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The most connections served at once. Past it the server stops
    /// accepting, so new connections wait in the kernel's accept queue until
    /// one closes.
    ///
    /// Default: 10 000. At least 1.
    #[must_use]
    pub fn max_connections(mut self, count: usize) -> Self {
        self.max_connections = count.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a graceful shutdown waits for in-flight requests before it
    /// closes the connections that remain.
    ///
    /// Default: 30 s.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether HTTP/2 with prior knowledge (h2c) is served beside HTTP/1.1.
    ///
    /// Default: true.
    #[must_use]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Serves TLS instead of plain TCP: the handshake runs in the
    /// connection's own task and must finish, like the first request head,
    /// within the [header read timeout](Self::header_read_timeout) counted
    /// from the accept; a client that stalls it is cut off. ALPN offers
    /// `h2` and `http/1.1` (`http/1.1` alone when [`http2`](Self::http2) is
    /// off). With client-certificate verification
    /// ([`ServerTls::mutual_from_pem`](crate::tls::ServerTls::mutual_from_pem))
    /// each request carries the verified chain as a
    /// [`PeerCertificate`](crate::peer::PeerCertificate) extension. A
    /// [`TlsMaterial`](crate::tls::TlsMaterial)'s
    /// [`server_tls`](crate::tls::TlsMaterial::server_tls) rotates without
    /// a restart. Plain-text clients are refused unless
    /// [`tls_permissive`](Self::tls_permissive).
    ///
    /// Default: none (plain TCP: HTTP/1.1 and h2c).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Permissive mode, as Istio's `PeerAuthentication` `PERMISSIVE` for a
    /// migration to mutual TLS: with [TLS](Self::tls) configured, a
    /// connection whose first byte is not a TLS handshake record (`0x16`)
    /// is served as plain HTTP (HTTP/1.1, and h2c when
    /// [`http2`](Self::http2) is on), without a
    /// [`PeerCertificate`](crate::peer::PeerCertificate); the others go
    /// through the TLS handshake as usual. Waiting for that first byte
    /// counts in the [header read timeout](Self::header_read_timeout).
    /// Without TLS configured it changes nothing.
    ///
    /// Default: `false` (STRICT: a plain-text client fails the handshake
    /// and its connection is closed).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_permissive(mut self, permissive: bool) -> Self {
        self.tls_permissive = permissive;
        self
    }

    /// The TLS acceptor, when the server terminates TLS.
    fn acceptor(&self) -> Option<Acceptor> {
        #[cfg(feature = "tls")]
        return self.tls.as_ref().map(|tls| tls.acceptor(self.http2));
        #[cfg(not(feature = "tls"))]
        None
    }

    /// The connection builders, without the HTTP/1 timer: each connection
    /// sets its own ([`Protocols::for_connection`]).
    fn protocols(&self) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes);
        if self.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(self.max_headers);
        }
        if !self.http2 {
            return Protocols::Http1(http1);
        }
        let mut auto = auto::Builder::new(TokioExecutor::new());
        {
            let mut auto_http1 = auto.http1();
            auto_http1
                .header_read_timeout(self.header_read_timeout)
                .max_buf_size(self.max_header_bytes);
            if self.max_headers != HYPER_DEFAULT_MAX_HEADERS {
                auto_http1.max_headers(self.max_headers);
            }
        }
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        Protocols::Auto(auto)
    }
}

/// What turns an accepted TCP stream into a TLS one.
#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
/// Without `tls` there is no acceptor to hold.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
enum Acceptor {}

/// The connection builders: HTTP/1.1 alone, or HTTP/1.1 and h2c sniffed from
/// the first bytes. (hyper-util's `http1_only` is ignored once upgrades are
/// on, hence a plain HTTP/1 builder for the first case.)
#[derive(Debug, Clone)]
enum Protocols {
    Http1(http1::Builder),
    Auto(auto::Builder<TokioExecutor>),
}

impl Protocols {
    /// The builders for one connection: a clone with the connection's own
    /// header read timer (one tokio sleep kept across its requests, see
    /// [`HeadTimer`]). hyper requires a timer once a header read timeout is
    /// set, so every connection's builder goes through here.
    fn for_connection(&self) -> Self {
        let mut protocols = self.clone();
        match &mut protocols {
            Self::Http1(http1) => {
                http1.timer(HeadTimer::default());
            }
            Self::Auto(auto) => {
                auto.http1().timer(HeadTimer::default());
            }
        }
        protocols
    }
}

/// A TCP server for a tower service: HTTP/1.1 (with upgrades, for
/// WebSocket tunnelling) and h2c, or with the `tls` feature TLS with ALPN
/// (`ServerConfig::tls`), graceful shutdown, and limits.
///
/// Each request gets the connection's remote address as a
/// [`PeerAddr`] extension, and over mutual TLS the verified client
/// certificate as a [`PeerCertificate`] extension. The service is cloned
/// per connection and driven with `poll_ready` then `call` for each
/// request.
///
/// ```no_run
/// use std::convert::Infallible;
/// use meshgate::gateway::{Server, ServerConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let service = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
/// });
/// let server = Server::bind("127.0.0.1:8080".parse().unwrap(), ServerConfig::new()).await?;
/// println!("listening on {}", server.local_addr()?);
/// server.serve(service, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    connections: Connections,
}

/// A read-only view of how many connections a [`Server`] is serving.
#[derive(Debug, Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    /// Connections open now.
    #[must_use]
    pub fn active(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// The configured maximum.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Server {
    /// Binds a listener on `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// The bind error, e.g. the address is in use.
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        Ok(Self::from_listener(TcpListener::bind(addr).await?, config))
    }

    /// Serves on a listener bound elsewhere.
    #[must_use]
    pub fn from_listener(listener: TcpListener, config: ServerConfig) -> Self {
        let connections = Connections {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            max: config.max_connections,
        };
        Self {
            listener,
            config,
            connections,
        }
    }

    /// The address the server listens on.
    ///
    /// # Errors
    /// The socket's error, if it has one.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that reads the number of open connections (for metrics).
    #[must_use]
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// Serves connections until `shutdown` completes, then stops accepting,
    /// lets in-flight requests finish (idle keep-alive connections close at
    /// once, HTTP/2 connections get a GOAWAY) for up to the shutdown timeout,
    /// closes what remains and returns.
    ///
    /// # Errors
    /// Never at present: accept errors (for example running out of file
    /// descriptors) are logged and retried after a short pause, since a
    /// gateway must outlive a burst of them. The `Result` leaves room for
    /// fatal listener errors.
    pub async fn serve<S, B, F>(self, service: S, shutdown: F) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send,
    {
        let Self {
            listener,
            config,
            connections,
        } = self;
        let protocols = config.protocols();
        let acceptor = config.acceptor();
        let (stopping, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut accept_pause = ACCEPT_PAUSE_MIN;
        tokio::pin!(shutdown);

        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = connections.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed; treat it as a shutdown.
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    accept_pause = ACCEPT_PAUSE_MIN;
                    accepted
                }
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, pause_ms = accept_pause.as_millis(), "accept failed");
                    tokio::time::sleep(accept_pause).await;
                    accept_pause = (accept_pause * 2).min(ACCEPT_PAUSE_MAX);
                    continue;
                }
            };
            let connection = Connection {
                peer,
                stop: stop.clone(),
                header_read_timeout: config.header_read_timeout,
                #[cfg(feature = "tls")]
                tls_permissive: config.tls_permissive,
            };
            tasks.spawn(connection.serve(
                protocols.for_connection(),
                acceptor.clone(),
                stream,
                service.clone(),
                permit,
            ));
        }

        drop(listener);
        let _ = stopping.send(true);
        if !tasks.is_empty() {
            tracing::info!(connections = tasks.len(), "draining connections");
        }
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(config.shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                connections = connections.active(),
                "shutdown timeout reached; closing the connections that remain"
            );
        }
        tasks.shutdown().await;
        Ok(())
    }
}

const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Accept errors that concern one connection that is already gone, not the
/// listener: retry at once.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// One accepted connection and what it needs to be served and stopped.
struct Connection {
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
    /// Plain-text clients are served beside TLS ones.
    #[cfg(feature = "tls")]
    tls_permissive: bool,
}

impl Connection {
    async fn serve<S, B>(
        #[allow(unused_mut)] // only the TLS handshake watches `stop` here
        mut self,
        protocols: Protocols,
        acceptor: Option<Acceptor>,
        stream: TcpStream,
        service: S,
        permit: OwnedSemaphorePermit,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Latency matters more than packet count for request/response traffic.
        let _ = stream.set_nodelay(true);
        // The TLS handshake and the first request head share one budget.
        let deadline = Instant::now() + self.header_read_timeout;
        match acceptor {
            None => {
                self.serve_io(protocols, TokioIo::new(stream), service, Plain, deadline)
                    .await;
            }
            #[cfg(feature = "tls")]
            Some(acceptor) => {
                let peer = self.peer;
                if self.tls_permissive {
                    let first = tokio::time::timeout_at(deadline, first_byte(&stream));
                    let first = tokio::select! {
                        first = first => first,
                        () = stopped(&mut self.stop) => return,
                    };
                    match first {
                        Ok(Ok(Some(TLS_HANDSHAKE_RECORD))) => {}
                        Ok(Ok(Some(_))) => {
                            self.serve_io(
                                protocols,
                                TokioIo::new(stream),
                                service,
                                Plain,
                                deadline,
                            )
                            .await;
                            return;
                        }
                        Ok(Ok(None)) => return,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "reading the first byte failed");
                            return;
                        }
                        Err(_elapsed) => {
                            tracing::debug!(%peer, "closing a connection that sent nothing in time");
                            return;
                        }
                    }
                }
                let accept = tokio::time::timeout_at(deadline, acceptor.accept(stream));
                let handshake = tokio::select! {
                    handshake = accept => handshake,
                    () = stopped(&mut self.stop) => return,
                };
                match handshake {
                    Ok(Ok(tls)) => {
                        let certificate = crate::tls::peer_certificate(tls.get_ref().1);
                        self.serve_io(
                            protocols,
                            TokioIo::new(tls),
                            service,
                            Tls(certificate),
                            deadline,
                        )
                        .await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_elapsed) => {
                        tracing::debug!(%peer, "closing a connection whose TLS handshake ran late");
                    }
                }
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
        }
        drop(permit);
    }

    /// Serves HTTP on a connection's byte stream (TCP or TLS).
    async fn serve_io<S, B, I>(
        self,
        protocols: Protocols,
        io: I,
        service: S,
        transport: Transport,
        deadline: Instant,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let first_request = Arc::new(FirstRequest::default());
        let service = ConnectionService::new(
            service,
            PeerAddr(self.peer),
            transport,
            Arc::clone(&first_request),
        );
        match protocols {
            Protocols::Http1(builder) => {
                let connection = builder.serve_connection(io, service).with_upgrades();
                self.drive(connection, &first_request, deadline, |c| {
                    c.graceful_shutdown();
                })
                .await;
            }
            Protocols::Auto(builder) => {
                let connection = builder.serve_connection_with_upgrades(io, service);
                self.drive(connection, &first_request, deadline, |c| {
                    c.graceful_shutdown();
                })
                .await;
            }
        }
    }

    /// Drives a connection to its end: closed if no request head arrives in
    /// time, asked to finish gracefully when the server stops.
    async fn drive<C, E>(
        mut self,
        connection: C,
        first_request: &FirstRequest,
        deadline: Instant,
        graceful_shutdown: fn(Pin<&mut C>),
    ) where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let peer = self.peer;
        tokio::pin!(connection);
        // hyper's header read timeout starts only once the protocol is known;
        // a client that connects and sends nothing, or less than the HTTP/2
        // preface, would otherwise hold the connection forever.
        tokio::select! {
            _ = &mut connection => return,
            () = first_request.seen() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%peer, "closing a connection that sent no request in time");
                return;
            }
            () = stopped(&mut self.stop) => return,
        }
        // Biased: the connection is polled first, without a random pick,
        // at every wake-up of a busy connection; the stop signal is then a
        // version check (`Stopping`).
        let probe = self.stop.clone();
        let result = tokio::select! {
            biased;
            result = &mut connection => result,
            () = Stopping::new(stopped(&mut self.stop), probe) => {
                graceful_shutdown(connection.as_mut());
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// The content type of a TLS handshake record, the first byte a TLS client
/// sends.
#[cfg(feature = "tls")]
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The first byte the client sent, left in the socket; `None` when it
/// closed without sending any.
#[cfg(feature = "tls")]
async fn first_byte(stream: &TcpStream) -> io::Result<Option<u8>> {
    let mut byte = [0_u8; 1];
    let read = stream.peek(&mut byte).await?;
    Ok((read == 1).then_some(byte[0]))
}

/// Completes once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stopping.
    let _stopping = stop.wait_for(|stop| *stop).await.is_ok();
}

pin_project_lite::pin_project! {
    /// [`stopped`] for a busy connection, polled at each of its wake-ups:
    /// once the wait is registered with the task's waker, a poll from the
    /// same task with no new value on the channel returns `Pending` after a
    /// version check, without polling the wait (its `Notified`, behind a
    /// lock, cost ≈ 460 instructions per request, callgrind).
    ///
    /// A send (or the sender's drop) changes the version before it wakes
    /// the registered waiters, so a wake-up for it always finds the probe
    /// changed and polls the wait.
    struct Stopping<F> {
        #[pin]
        wait: Unconstrained<F>,
        // A receiver of the same channel, used only for its version.
        probe: watch::Receiver<bool>,
        // The waker the wait holds, once it returned `Pending`.
        registered: Option<Waker>,
    }
}

impl<F> Stopping<F> {
    fn new(wait: F, probe: watch::Receiver<bool>) -> Self {
        Self {
            // Unconstrained by tokio's cooperative budget: a `Pending` must
            // mean the wait registered the waker, not that the budget ran out.
            wait: tokio::task::unconstrained(wait),
            probe,
            registered: None,
        }
    }
}

impl<F: Future<Output = ()>> Future for Stopping<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Some(registered) = this.registered
            && registered.will_wake(cx.waker())
            && matches!(this.probe.has_changed(), Ok(false))
        {
            return Poll::Pending;
        }
        // Marked before the wait is polled: a value sent after this poll
        // shows in the probe, one sent before it is seen by the wait.
        this.probe.mark_unchanged();
        match this.wait.poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                hold_waker(this.registered, cx.waker());
                Poll::Pending
            }
        }
    }
}

/// Set once a connection delivers its first request head.
#[derive(Debug, Default)]
struct FirstRequest {
    seen: AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn mark(&self) {
        if !self.seen.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    async fn seen(&self) {
        if self.seen.load(Ordering::Acquire) {
            return;
        }
        // `notify_one` stores a permit when nobody waits yet, so a mark that
        // lands between the load and this await is not lost.
        self.notify.notified().await;
    }
}

/// How a connection's bytes arrive: plain TCP, or TLS this server
/// terminated (with the client's verified certificate, if it sent one).
#[derive(Debug, Clone)]
enum Transport {
    Plain,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(Option<PeerCertificate>),
}

use Transport::Plain;
#[cfg(feature = "tls")]
use Transport::Tls;

/// The per-connection adapter from a tower service to hyper's.
///
/// hyper calls with `&self`, tower with `&mut self` after `poll_ready`. A
/// stack that is ready at once (the usual case) is called in place on a
/// clone owned by the connection; only one that is not is cloned for the
/// request and driven to readiness first, as `Oneshot` does. Cloning the
/// whole boxed stack for every request cost an allocation and ≈ 700
/// instructions (callgrind).
#[derive(Debug)]
struct ConnectionService<S> {
    /// Called in place when ready. A lock rather than a `RefCell` so that
    /// the adapter stays `Sync`; hyper calls from the connection's task,
    /// so it is never contended.
    ready: std::sync::Mutex<S>,
    /// Cloned for a request when `ready` is not ready (or, never in
    /// practice, busy).
    inner: S,
    /// What the connection tells each request (its [`PeerAddr`], and for
    /// TLS [`TlsConnection`] and the client's certificate), in a map with
    /// room for what the layers add: see [`roomy_extensions`].
    extensions: http::Extensions,
    first_request: Arc<FirstRequest>,
}

impl<S: Clone> ConnectionService<S> {
    fn new(
        inner: S,
        peer: PeerAddr,
        transport: Transport,
        first_request: Arc<FirstRequest>,
    ) -> Self {
        let mut extensions = roomy_extensions().clone();
        extensions.insert(peer);
        if let Transport::Tls(certificate) = transport {
            extensions.insert(TlsConnection);
            if let Some(certificate) = certificate {
                extensions.insert(certificate);
            }
        }
        Self {
            ready: std::sync::Mutex::new(inner.clone()),
            inner,
            extensions,
            first_request,
        }
    }
}

/// An empty extension map with room for 14 entries (16 buckets), made
/// once: more than a gateway stack's layers add to a request (the
/// connection's, a request id, a trace context, the route and its match,
/// the endpoint, a consumer and its identity, a client address...). A
/// clone keeps the room: starting each request from a clone costs one
/// allocation, where growing a map as layers insert cost an allocation, a
/// rehash and a free at the fourth entry and again at the eighth.
fn roomy_extensions() -> &'static http::Extensions {
    /// Marker types that only reserve room: inserted and removed once.
    #[derive(Clone, Copy)]
    struct Room<const N: usize>;
    static ROOMY: std::sync::LazyLock<http::Extensions> = std::sync::LazyLock::new(|| {
        let mut extensions = http::Extensions::new();
        macro_rules! reserve {
            ($($n:literal)*) => {
                $(extensions.insert(Room::<$n>);)*
                $(extensions.remove::<Room<$n>>();)*
            };
        }
        // 14 entries fit in 16 buckets.
        reserve!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
        debug_assert!(extensions.is_empty());
        extensions
    });
    &ROOMY
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Incoming>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ConnectionFuture<S, Request<Incoming>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.first_request.mark();
        if request.extensions().is_empty() {
            *request.extensions_mut() = self.extensions.clone();
        } else {
            // hyper's own (an upgrade's `OnUpgrade`, say) stay.
            request.extensions_mut().extend(self.extensions.clone());
        }
        call_in_place(&self.ready, &self.inner, request)
    }
}

/// Calls `ready` in place when it is ready at once; otherwise a clone of
/// `fallback` is driven to readiness for this request, as `Oneshot` does.
fn call_in_place<S, R>(
    ready: &std::sync::Mutex<S>,
    fallback: &S,
    mut request: R,
) -> ConnectionFuture<S, R>
where
    S: Service<R> + Clone,
{
    if let Ok(mut ready) = ready.try_lock() {
        match call_if_ready(&mut *ready, request) {
            CallNow::Called(future) => return ConnectionFuture::Called { future },
            CallNow::Failed(error) => return ConnectionFuture::Failed { error: Some(error) },
            // This request waits on a clone of its own, and the next one
            // polls `ready` again.
            CallNow::NotReady(back) => request = back,
        }
    }
    ConnectionFuture::Waiting {
        oneshot: Box::pin(Oneshot::new(fallback.clone(), request)),
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ConnectionService`].
    #[project = ConnectionFutureProj]
    enum ConnectionFuture<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        // Boxed: it holds the request and a clone of the stack, and this
        // rare path would otherwise make every request's future that size,
        // copied into hyper's slot for it (measured).
        Waiting { oneshot: Pin<Box<Oneshot<S, R>>> },
        Failed { error: Option<S::Error> },
    }
}

impl<S, R> Future for ConnectionFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnectionFutureProj::Called { future } => future.poll(cx),
            ConnectionFutureProj::Waiting { oneshot } => oneshot.as_mut().poll(cx),
            ConnectionFutureProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled again after it answered: a caller's bug; pending
                // forever is what tower's own futures do in that case.
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::gateway::timer::tests::CountingWaker;

    /// Ready while `open`; counts its clones and calls.
    #[derive(Default)]
    struct Shared {
        open: AtomicBool,
        clones: AtomicUsize,
        calls: AtomicUsize,
        waiting: Mutex<Vec<Waker>>,
    }

    struct Gate(Arc<Shared>);

    impl Clone for Gate {
        fn clone(&self) -> Self {
            self.0.clones.fetch_add(1, Ordering::SeqCst);
            Self(Arc::clone(&self.0))
        }
    }

    impl Service<u32> for Gate {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.0.open.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                self.0.waiting.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        }

        fn call(&mut self, request: u32) -> Self::Future {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(request + 1))
        }
    }

    #[tokio::test]
    async fn a_ready_service_is_called_in_place_without_a_clone() {
        let shared = Arc::new(Shared::default());
        shared.open.store(true, Ordering::SeqCst);
        let ready = Mutex::new(Gate(Arc::clone(&shared)));
        let fallback = Gate(Arc::clone(&shared));
        for n in 0..3 {
            let future = call_in_place(&ready, &fallback, n);
            assert!(matches!(future, ConnectionFuture::Called { .. }));
            assert_eq!(future.await.unwrap(), n + 1);
        }
        assert_eq!(shared.calls.load(Ordering::SeqCst), 3);
        assert_eq!(shared.clones.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_service_not_ready_at_once_is_cloned_and_waited_for() {
        let shared = Arc::new(Shared::default());
        let ready = Mutex::new(Gate(Arc::clone(&shared)));
        let fallback = Gate(Arc::clone(&shared));
        let future = call_in_place(&ready, &fallback, 41);
        assert!(matches!(future, ConnectionFuture::Waiting { .. }));
        assert_eq!(shared.clones.load(Ordering::SeqCst), 1);
        let mut future = std::pin::pin!(future);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(shared.calls.load(Ordering::SeqCst), 0);
        // Opening the gate and waking the waiters lets the request through.
        shared.open.store(true, Ordering::SeqCst);
        for waker in shared.waiting.lock().unwrap().drain(..) {
            waker.wake();
        }
        assert_eq!(future.await.unwrap(), 42);
        assert_eq!(shared.calls.load(Ordering::SeqCst), 1);
        // The next request finds the connection's own clone ready.
        let next = call_in_place(&ready, &fallback, 1);
        assert!(matches!(next, ConnectionFuture::Called { .. }));
        assert_eq!(next.await.unwrap(), 2);
        assert_eq!(shared.clones.load(Ordering::SeqCst), 1);
    }

    /// `stopped`, counting how often it is polled.
    async fn counted_stopped(stop: &mut watch::Receiver<bool>, polls: &AtomicUsize) {
        let mut wait = std::pin::pin!(stopped(stop));
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            wait.as_mut().poll(cx)
        })
        .await;
    }

    #[tokio::test]
    async fn the_stop_signal_is_polled_again_only_for_a_new_waker_or_value() {
        for end in ["send", "drop"] {
            let (stopping, mut stop) = watch::channel(false);
            let probe = stop.clone();
            let polls = AtomicUsize::new(0);
            let counter = Arc::new(CountingWaker::default());
            let waker = Waker::from(Arc::clone(&counter));
            let mut cx = Context::from_waker(&waker);
            let mut stopping_signal =
                std::pin::pin!(Stopping::new(counted_stopped(&mut stop, &polls), probe));

            for _ in 0..5 {
                assert!(stopping_signal.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(polls.load(Ordering::SeqCst), 1, "the wait is polled once");

            // Another waker: the wait is polled to hold it.
            let other = Waker::from(Arc::new(CountingWaker::default()));
            assert!(
                stopping_signal
                    .as_mut()
                    .poll(&mut Context::from_waker(&other))
                    .is_pending()
            );
            assert!(stopping_signal.as_mut().poll(&mut cx).is_pending());
            assert_eq!(polls.load(Ordering::SeqCst), 3);
            assert_eq!(counter.count(), 0);

            match end {
                "send" => stopping.send(true).unwrap(),
                _ => drop(stopping),
            }
            assert_eq!(counter.count(), 1, "{end} wakes the task");
            assert!(stopping_signal.as_mut().poll(&mut cx).is_ready(), "{end}");
        }
    }
}
