//! The pooled upstream client, and what its errors mean for the caller.

use std::error::Error as _;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::builder::ProxyBuilder;
use crate::body::Body;
use crate::error::{Rejection, RejectionKind};

/// The client every clone of a proxy shares.
pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

/// Builds the pooled client: plain TCP with `TCP_NODELAY`, HTTP/1.1 or h2c.
pub(crate) fn build(config: &ProxyBuilder) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(config.connect_timeout);
    // TCP keep-alive probes find dead idle connections before a request does.
    connector.set_keepalive(config.pool_idle_timeout);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .http2_only(config.http2_prior_knowledge)
        .build(connector)
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
    let (kind, detail) = if error.is_connect() {
        let detail = if timed_out(&error) {
            "connecting to the upstream timed out"
        } else {
            "the upstream could not be reached"
        };
        (RejectionKind::UpstreamConnect, detail)
    } else if hyper_error.is_some_and(hyper::Error::is_canceled) {
        (
            RejectionKind::UpstreamConnect,
            "the upstream connection closed before the request was sent",
        )
    } else if body_too_large(&error) {
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
    };
    tracing::debug!(kind = %kind, error = ?error, "proxy: upstream request failed");
    Rejection::new(kind).with_detail(detail).with_cause(error)
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
