//! One classification of outcomes, shared by retry, circuit breaking,
//! outlier detection and metrics.
//!
//! An attempt ends in one [`Outcome`]: a success, a refusal meshgate made
//! itself, an answer that is the client's fault, or a [`Failure`] of the
//! upstream or of the path to it. The layers then ask the outcome the
//! questions they care about:
//!
//! * [`Outcome::is_breaker_failure`]: does it count against the upstream's
//!   health (circuit breaker, outlier detection)? Only upstream failures do:
//!   5xx answers, connect failures, resets and timeouts. A 4xx is the
//!   client's fault and a local refusal (401, 429, an open breaker) never
//!   reached the upstream.
//! * [`Outcome::is_retryable`]: may the request be sent again? A connect
//!   failure may always be retried, as the request never left; other
//!   failures only when the method is idempotent ([RFC 9110 §9.2.2]) or the
//!   caller knows the request is safe to repeat.
//!
//! ```
//! use http::{Method, Response, StatusCode};
//! use meshgate::classify::{Failure, Outcome};
//!
//! let response = Response::builder().status(503).body(()).unwrap();
//! let outcome = Outcome::from_response(&response);
//! assert_eq!(outcome, Outcome::Failure(Failure::GatewayError(StatusCode::SERVICE_UNAVAILABLE)));
//! assert!(outcome.is_breaker_failure());
//! assert!(outcome.is_retryable(&Method::GET));
//! assert!(!outcome.is_retryable(&Method::POST));
//! ```
//!
//! [RFC 9110 §9.2.2]: https://www.rfc-editor.org/rfc/rfc9110#section-9.2.2

use http::{Method, Response, StatusCode};

use crate::error::{Rejection, RejectionKind};

/// How one request attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 1xx, 2xx or 3xx from the upstream.
    Success,
    /// A 4xx from the upstream: the client's fault, not the upstream's.
    ClientError(StatusCode),
    /// meshgate refused the request itself (authentication, rate limit,
    /// open breaker, no route, …); the upstream was not involved.
    Refused(RejectionKind),
    /// The upstream, or the way to it, failed.
    Failure(Failure),
}

/// A failure of the upstream or of the path to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A 5xx other than 502/503/504 (Istio's `5xx` minus `gateway-error`).
    ServerError(StatusCode),
    /// 502, 503 or 504 from the upstream (Istio's `gateway-error`).
    GatewayError(StatusCode),
    /// The connection could not be made; the request was never sent
    /// (Istio's `connect-failure`).
    Connect,
    /// The connection was reset or closed before a complete response
    /// (Istio's `reset`).
    Reset,
    /// No answer within the time budget.
    Timeout,
}

impl Outcome {
    /// Classifies a response. A [`Rejection`] in the extensions decides
    /// first, so a 502 made by the proxy from a refused connection reads as
    /// [`Failure::Connect`], not as a status from the upstream.
    #[must_use]
    pub fn from_response<B>(response: &Response<B>) -> Self {
        match response.extensions().get::<Rejection>() {
            Some(rejection) => Self::from_rejection(rejection.kind()),
            None => Self::from_status(response.status()),
        }
    }

    /// Classifies a status that came from the upstream.
    #[must_use]
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            502..=504 => Self::Failure(Failure::GatewayError(status)),
            500..=599 => Self::Failure(Failure::ServerError(status)),
            400..=499 => Self::ClientError(status),
            _ => Self::Success,
        }
    }

    /// Classifies a refusal or failure that a meshgate layer reported.
    #[must_use]
    pub fn from_rejection(kind: RejectionKind) -> Self {
        match kind {
            RejectionKind::Timeout | RejectionKind::UpstreamTimeout => {
                Self::Failure(Failure::Timeout)
            }
            RejectionKind::UpstreamConnect => Self::Failure(Failure::Connect),
            RejectionKind::UpstreamReset => Self::Failure(Failure::Reset),
            other => Self::Refused(other),
        }
    }

    /// Whether the outcome was a success.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }

    /// The failure, if the upstream or the path to it failed.
    #[must_use]
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Self::Failure(failure) => Some(*failure),
            _ => None,
        }
    }

    /// Whether the outcome counts against the upstream's health, for circuit
    /// breakers and outlier detection.
    #[must_use]
    pub fn is_breaker_failure(&self) -> bool {
        matches!(self, Self::Failure(_))
    }

    /// Whether the request may be sent again after this outcome, judging by
    /// the method alone. Retry policies narrow this further (which failures
    /// to retry on) or widen it (`Idempotency-Key`, a route's opt-in) with
    /// [`Failure::is_retryable_when`].
    #[must_use]
    pub fn is_retryable(&self, method: &Method) -> bool {
        self.failure()
            .is_some_and(|failure| failure.is_retryable_when(is_idempotent(method)))
    }
}

impl Failure {
    /// Whether this failure may be retried, given whether repeating the
    /// request is known to be safe. A connect failure may always be retried:
    /// the request never reached the upstream.
    #[must_use]
    pub fn is_retryable_when(self, repeat_is_safe: bool) -> bool {
        matches!(self, Self::Connect) || repeat_is_safe
    }

    /// Whether this is a `gateway-error` in Istio's sense: 502/503/504, or a
    /// connect failure, reset or timeout on the way to the upstream.
    #[must_use]
    pub fn is_gateway_error(self) -> bool {
        !matches!(self, Self::ServerError(_))
    }

    /// A short, stable, lower-case name for logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError(_) => "server_error",
            Self::GatewayError(_) => "gateway_error",
            Self::Connect => "connect_failure",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
        }
    }
}

/// Whether `method` is idempotent (RFC 9110 §9.2.2): GET, HEAD, OPTIONS,
/// TRACE, PUT and DELETE. Unknown methods are not.
#[must_use]
pub fn is_idempotent(method: &Method) -> bool {
    is_safe(method) || *method == Method::PUT || *method == Method::DELETE
}

/// Whether `method` is safe (RFC 9110 §9.2.1): GET, HEAD, OPTIONS and TRACE.
#[must_use]
pub fn is_safe(method: &Method) -> bool {
    *method == Method::GET
        || *method == Method::HEAD
        || *method == Method::OPTIONS
        || *method == Method::TRACE
}

/// The position of a standard method in RFC 9110 §9.1 order, then PATCH
/// (0 to 8), or 9 for any other method: for bounded metric labels and a
/// stable `Allow` order.
#[cfg(any(feature = "metrics", feature = "routing"))]
pub(crate) fn method_rank(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, rejection: Option<RejectionKind>) -> Response<()> {
        let mut response = Response::builder().status(status).body(()).unwrap();
        if let Some(kind) = rejection {
            response.extensions_mut().insert(Rejection::new(kind));
        }
        response
    }

    #[test]
    fn statuses_from_the_upstream() {
        let table = [
            (200, Outcome::Success),
            (304, Outcome::Success),
            (404, Outcome::ClientError(StatusCode::NOT_FOUND)),
            (429, Outcome::ClientError(StatusCode::TOO_MANY_REQUESTS)),
            (
                500,
                Outcome::Failure(Failure::ServerError(StatusCode::INTERNAL_SERVER_ERROR)),
            ),
            (
                502,
                Outcome::Failure(Failure::GatewayError(StatusCode::BAD_GATEWAY)),
            ),
            (
                504,
                Outcome::Failure(Failure::GatewayError(StatusCode::GATEWAY_TIMEOUT)),
            ),
            (
                507,
                Outcome::Failure(Failure::ServerError(StatusCode::INSUFFICIENT_STORAGE)),
            ),
        ];
        for (status, expected) in table {
            assert_eq!(
                Outcome::from_response(&response(status, None)),
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn rejections_decide_before_the_status() {
        let connect = Outcome::from_response(&response(502, Some(RejectionKind::UpstreamConnect)));
        assert_eq!(connect, Outcome::Failure(Failure::Connect));
        assert!(connect.is_retryable(&Method::POST), "request never left");

        let timeout = Outcome::from_response(&response(504, Some(RejectionKind::Timeout)));
        assert_eq!(timeout, Outcome::Failure(Failure::Timeout));
        assert!(timeout.is_breaker_failure());
        assert!(!timeout.is_retryable(&Method::POST));
        assert!(timeout.is_retryable(&Method::PUT));

        for local in [
            RejectionKind::CircuitOpen,
            RejectionKind::RateLimited,
            RejectionKind::DeadlineExceeded,
            RejectionKind::Unauthenticated,
        ] {
            let outcome = Outcome::from_response(&response(local.status().as_u16(), Some(local)));
            assert_eq!(outcome, Outcome::Refused(local));
            assert!(!outcome.is_breaker_failure(), "{local}");
            assert!(!outcome.is_retryable(&Method::GET), "{local}");
        }
    }

    #[test]
    fn client_errors_are_neither_retried_nor_counted() {
        let outcome = Outcome::from_status(StatusCode::BAD_REQUEST);
        assert!(!outcome.is_breaker_failure());
        assert!(!outcome.is_retryable(&Method::GET));
    }

    #[test]
    fn idempotent_and_safe_methods_per_rfc_9110() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(
                is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(
                !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        assert!(is_safe(&Method::HEAD));
        assert!(!is_safe(&Method::PUT));
    }

    #[test]
    fn gateway_errors_in_istio_terms() {
        assert!(Failure::GatewayError(StatusCode::BAD_GATEWAY).is_gateway_error());
        assert!(Failure::Reset.is_gateway_error());
        assert!(!Failure::ServerError(StatusCode::INTERNAL_SERVER_ERROR).is_gateway_error());
    }
}
