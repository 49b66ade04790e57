//! The pooled upstream client, and what its errors mean for the caller.

use std::error::Error as _;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::builder::{BuildError, ProxyBuilder};
use super::pool::{Http1Pool, SendError};
use crate::body::Body;
use crate::error::{Rejection, RejectionKind};

/// How the client reaches upstreams: TCP, and with `tls` rustls over it for
/// `https` ones.
#[cfg(feature = "tls")]
type Connector = tls::TimedConnector;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// The clients every clone of a proxy shares: the proxy's own HTTP/1.1
/// pool for cleartext upstreams, and hyper-util's pooled client for h2c and,
/// with `tls`, `https` (HTTP/1.1 or HTTP/2 by ALPN).
#[derive(Debug)]
pub(crate) struct UpstreamClient {
    pub(crate) pooled: Client<Connector, Body>,
    pub(crate) http1: Http1Pool,
}

/// Builds the clients: plain TCP with `TCP_NODELAY`, HTTP/1.1 or h2c; with
/// `tls`, also `https` with ALPN.
///
/// # Errors
///
/// With `tls`, roots or a client identity that do not parse or match.
pub(crate) fn build(config: &ProxyBuilder) -> Result<UpstreamClient, BuildError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    // TCP keep-alive probes find dead idle connections before a request does.
    http.set_keepalive(config.pool_idle_timeout);
    let http1 = Http1Pool::new(
        http.clone(),
        config.pool_max_idle_per_host,
        config.pool_idle_timeout,
    );
    let connector = connector(config, http)?;
    let pooled = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .http2_only(config.http2_prior_knowledge)
        .build(connector);
    Ok(UpstreamClient { pooled, http1 })
}

#[cfg(not(feature = "tls"))]
#[allow(clippy::unnecessary_wraps)] // the same signature as with `tls`
fn connector(_config: &ProxyBuilder, http: HttpConnector) -> Result<Connector, BuildError> {
    Ok(http)
}

/// rustls over the TCP connector: SNI from the URI's host, ALPN `h2` and
/// `http/1.1` (the client then speaks HTTP/2 on connections that negotiated
/// `h2`), `h2` alone with prior knowledge, `http/1.1` alone without
/// [`tls_http2`](ProxyBuilder::tls_http2). `http` URIs stay plain TCP.
#[cfg(feature = "tls")]
fn connector(config: &ProxyBuilder, mut http: HttpConnector) -> Result<Connector, BuildError> {
    // The TLS connector picks by scheme; the TCP one must let `https` through.
    http.enforce_http(false);
    let tls = config
        .tls
        .config()
        .map_err(|error| BuildError::new(error.to_string()))?;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|error| {
            BuildError::new(format!("upstream TLS server name {name:?}: {error}"))
        })?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let inner = if config.http2_prior_knowledge {
        builder.enable_http2().wrap_connector(http)
    } else if config.tls_http2 {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    Ok(tls::TimedConnector {
        inner,
        timeout: config.connect_timeout,
    })
}

#[cfg(feature = "tls")]
mod tls {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use http::Uri;
    use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;
    use tower_service::Service;

    use crate::BoxError;

    /// The TLS connector under one deadline for the TCP connect and the
    /// handshake together: an upstream that accepts and then stalls the
    /// handshake is a connect failure (502, never sent, safe to retry),
    /// not a response timeout.
    #[derive(Debug, Clone)]
    pub(crate) struct TimedConnector {
        pub(super) inner: HttpsConnector<HttpConnector>,
        pub(super) timeout: Option<Duration>,
    }

    impl Service<Uri> for TimedConnector {
        type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
        type Error = BoxError;
        // Boxed like the inner connector's; once per new connection.
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, uri: Uri) -> Self::Future {
            let connecting = self.inner.call(uri);
            let Some(timeout) = self.timeout else {
                return connecting;
            };
            Box::pin(async move {
                tokio::time::timeout(timeout, connecting)
                    .await
                    .unwrap_or_else(|_elapsed| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the TCP connect and TLS handshake timed out",
                        )
                        .into())
                    })
            })
        }
    }
}

/// The rejection for a client error before the response headers arrived.
///
/// * no connection (refused, DNS, connect timeout), or a request the pool
///   cancelled before writing it: 502 `UpstreamConnect` (never sent);
/// * the client's own request body failed (it went away mid-upload): 400
///   `BadRequest`, which does not count against the upstream; 413
///   `PayloadTooLarge` when a body limit cut it;
/// * anything else (closed, reset, malformed answer): 502 `UpstreamReset`.
pub(crate) fn rejection(error: hyper_util::client::legacy::Error) -> Rejection {
    let hyper_error = error
        .source()
        .and_then(|source| source.downcast_ref::<hyper::Error>());
    let judged = classify(&error, error.is_connect(), hyper_error);
    reject(judged, error)
}

/// The rejection for an HTTP/1.1 pool error, as [`rejection`] judges it.
pub(crate) fn pool_rejection(error: SendError) -> Rejection {
    let judged = match &error {
        SendError::Connect(_) => classify(&error, true, None),
        SendError::Http(hyper_error) => classify(&error, false, Some(hyper_error)),
    };
    reject(judged, error)
}

/// The rejection as [`classify`] judged it, with the error as its cause.
fn reject<E>((kind, detail): (RejectionKind, &'static str), error: E) -> Rejection
where
    E: std::error::Error + Send + Sync + 'static,
{
    tracing::debug!(kind = %kind, error = ?error, "proxy: upstream request failed");
    Rejection::new(kind).with_detail(detail).with_cause(error)
}

fn classify(
    error: &(dyn std::error::Error + 'static),
    is_connect: bool,
    hyper_error: Option<&hyper::Error>,
) -> (RejectionKind, &'static str) {
    if is_connect {
        let detail = if timed_out(error) {
            "connecting to the upstream timed out"
        } else if tls_failed(error) {
            "the TLS handshake with the upstream failed"
        } else {
            "the upstream could not be reached"
        };
        (RejectionKind::UpstreamConnect, detail)
    } else if refused_handshake(error) {
        // Under TLS 1.3 the client finishes its side of the handshake and
        // writes the request before the server refuses its certificate;
        // the server never read the request.
        (
            RejectionKind::UpstreamConnect,
            "the upstream refused the TLS handshake (client certificate)",
        )
    } else if hyper_error.is_some_and(hyper::Error::is_canceled) {
        (
            RejectionKind::UpstreamConnect,
            "the upstream connection closed before the request was sent",
        )
    } else if body_too_large(error) {
        (
            RejectionKind::PayloadTooLarge,
            "the request body is larger than allowed",
        )
    } else if hyper_error.is_some_and(hyper::Error::is_user) {
        (
            RejectionKind::BadRequest,
            "the request body could not be read",
        )
    } else {
        (
            RejectionKind::UpstreamReset,
            "the upstream closed the connection before a response",
        )
    }
}

/// Whether the request body was cut by a size limit
/// (`http_body_util::Limited`, as `meshgate::limit` wraps bodies).
fn body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether a rustls error is somewhere in the error's chain.
fn tls_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "tls")]
    return find_tls_error(error).is_some();
    #[cfg(not(feature = "tls"))]
    {
        let _ = error;
        false
    }
}

/// Whether the upstream ended the handshake with an alert about the
/// client's certificate (or the handshake as a whole), which a TLS 1.3
/// server sends after the client already wrote its request.
fn refused_handshake(error: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "tls")]
    {
        use rustls::AlertDescription as Alert;
        const REFUSALS: [Alert; 9] = [
            Alert::CertificateRequired,
            Alert::BadCertificate,
            Alert::UnsupportedCertificate,
            Alert::CertificateRevoked,
            Alert::CertificateExpired,
            Alert::CertificateUnknown,
            Alert::UnknownCA,
            Alert::AccessDenied,
            Alert::HandshakeFailure,
        ];
        if let Some(rustls::Error::AlertReceived(alert)) = find_tls_error(error) {
            return REFUSALS.contains(alert);
        }
        // Past the handshake future, the alert reaches hyper as an
        // `InvalidData` I/O error that kept only rustls's message.
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                let message = io.get_ref().map(ToString::to_string);
                let alert = message
                    .as_deref()
                    .and_then(|message| message.strip_prefix("received fatal alert: "));
                if io.kind() == std::io::ErrorKind::InvalidData
                    && let Some(alert) = alert
                {
                    return REFUSALS.iter().any(|known| format!("{known:?}") == alert);
                }
            }
            next = error.source();
        }
        false
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = error;
        false
    }
}

/// The rustls error somewhere in the error's chain, looking inside
/// `io::Error`s too (their `source` skips the error they wrap).
#[cfg(feature = "tls")]
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// Whether an I/O timeout is somewhere in the error's chain (hyper-util's
/// connect timeout is an `io::ErrorKind::TimedOut` under its connect error).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_timeout_anywhere_in_the_chain_is_found() {
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        assert!(super::timed_out(&timed_out));
        let refused = Outer(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!super::timed_out(&refused));
    }
}
