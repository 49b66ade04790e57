//! When a response is retried: Istio-style `retryOn` conditions, and the
//! `Retry-After` header.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::classify::{self, Failure, Outcome};

/// The request header that makes a non-idempotent request retryable
/// (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The most status codes and headers a [`RetryOn`] holds; more are dropped.
const MAX_LISTED: usize = 32;

/// Which outcomes are retried, like Istio's `retryOn`.
///
/// ```
/// use meshgate::retry::RetryOn;
///
/// let on = RetryOn::parse("gateway-error,retriable-status-codes", [409]).unwrap();
/// assert!(on.covers_gateway_error());
/// assert_eq!(RetryOn::default(), RetryOn::parse("gateway-error,connect-failure,reset", []).unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RetryOn {
    server_error: bool,
    gateway_error: bool,
    connect_failure: bool,
    reset: bool,
    status_codes: Vec<StatusCode>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Default for RetryOn {
    /// `gateway-error`, `connect-failure` and `reset`: 502, 503, 504,
    /// timeouts, refused connections and resets, but not other 5xx (a 500 is
    /// rarely cured by asking again).
    fn default() -> Self {
        Self::nothing().gateway_error().connect_failure().reset()
    }
}

/// A `retryOn` condition that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCondition(pub String);

impl std::fmt::Display for UnknownCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown retry condition {:?} (expected 5xx, gateway-error, connect-failure, reset, \
             retriable-status-codes or retriable-headers)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCondition {}

impl RetryOn {
    /// No condition: nothing is retried until conditions are added.
    pub fn nothing() -> Self {
        Self {
            server_error: false,
            gateway_error: false,
            connect_failure: false,
            reset: false,
            status_codes: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Parses Istio's comma-separated `retryOn` (`5xx`, `gateway-error`,
    /// `connect-failure`, `reset`, `retriable-status-codes`,
    /// `retriable-headers`); `retriable-status-codes` takes its codes from
    /// `status_codes`. Codes outside 100–599 are ignored. An unknown
    /// condition is an error.
    pub fn parse(
        conditions: &str,
        status_codes: impl IntoIterator<Item = u16>,
    ) -> Result<Self, UnknownCondition> {
        let mut on = Self::nothing();
        let mut codes = false;
        for condition in conditions
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            on = match condition {
                "5xx" => on.server_error(),
                "gateway-error" => on.gateway_error(),
                "connect-failure" => on.connect_failure(),
                "reset" => on.reset(),
                "retriable-status-codes" => {
                    codes = true;
                    on
                }
                // The headers themselves are added with `header`.
                "retriable-headers" => on,
                other => return Err(UnknownCondition(other.to_owned())),
            };
        }
        if codes {
            for code in status_codes {
                if let Ok(status) = StatusCode::from_u16(code) {
                    on = on.status(status);
                }
            }
        }
        Ok(on)
    }

    /// `5xx`: any 5xx, and everything `gateway-error` covers (connect
    /// failures, resets, timeouts).
    pub fn server_error(mut self) -> Self {
        self.server_error = true;
        self
    }

    /// `gateway-error`: 502, 503 and 504, and connect failures, resets and
    /// timeouts on the way to the upstream (see
    /// [`Failure::is_gateway_error`]).
    pub fn gateway_error(mut self) -> Self {
        self.gateway_error = true;
        self
    }

    /// `connect-failure`: the connection could not be made. Retried for
    /// every method, as the request was never sent.
    pub fn connect_failure(mut self) -> Self {
        self.connect_failure = true;
        self
    }

    /// `reset`: the connection was reset or closed before a response (a
    /// service error counts as a reset).
    pub fn reset(mut self) -> Self {
        self.reset = true;
        self
    }

    /// `retriable-status-codes`: retry on `status` (at most 32 codes).
    pub fn status(mut self, status: StatusCode) -> Self {
        if !self.status_codes.contains(&status) && self.status_codes.len() < MAX_LISTED {
            self.status_codes.push(status);
        }
        self
    }

    /// `retriable-headers`: retry when the response has header `name`, with
    /// exactly `value` when one is given (at most 32 headers).
    pub fn header(mut self, name: HeaderName, value: Option<HeaderValue>) -> Self {
        if self.headers.len() < MAX_LISTED {
            self.headers.push((name, value));
        }
        self
    }

    /// Whether 502/503/504 are retried.
    #[must_use]
    pub fn covers_gateway_error(&self) -> bool {
        self.gateway_error || self.server_error
    }

    /// Whether connect failures are retried (also for non-idempotent
    /// requests, which is why the layer prepares those for a retry too).
    pub(crate) fn covers_connect_failure(&self) -> bool {
        self.connect_failure || self.gateway_error || self.server_error
    }

    /// Whether a service error (no response at all) is retried.
    pub(crate) fn covers_error(&self) -> bool {
        self.reset || self.gateway_error || self.server_error
    }

    /// Whether `response`, with `outcome`, is to be retried, given whether
    /// repeating the request is known to be safe. Refusals made by meshgate
    /// layers further in (an open breaker, a rate limit) are never retried:
    /// the same layer would refuse again.
    pub(crate) fn matches<B>(
        &self,
        response: &Response<B>,
        outcome: Outcome,
        repeat_is_safe: bool,
    ) -> bool {
        let by_failure = match outcome {
            Outcome::Refused(_) => return false,
            Outcome::Failure(failure) => {
                self.covers(failure) && failure.is_retryable_when(repeat_is_safe)
            }
            Outcome::Success | Outcome::ClientError(_) => false,
        };
        by_failure
            || (repeat_is_safe
                && !(self.status_codes.is_empty() && self.headers.is_empty())
                && (self.status_codes.contains(&response.status())
                    || self.has_retriable_header(response.headers())))
    }

    /// Whether only failures are retried: no status codes or headers.
    #[inline]
    pub(crate) fn on_failures_only(&self) -> bool {
        self.status_codes.is_empty() && self.headers.is_empty()
    }

    fn covers(&self, failure: Failure) -> bool {
        match failure {
            Failure::ServerError(_) => self.server_error,
            Failure::Connect => self.covers_connect_failure(),
            Failure::Reset => self.reset || self.gateway_error || self.server_error,
            Failure::GatewayError(_) | Failure::Timeout => self.gateway_error || self.server_error,
        }
    }

    fn has_retriable_header(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().any(|(name, value)| match value {
            None => headers.contains_key(name),
            Some(value) => headers.get_all(name).iter().any(|v| v == value),
        })
    }
}

/// Whether repeating a request with this method and headers is safe:
/// an idempotent method, or an `Idempotency-Key`.
pub(crate) fn repeat_is_safe(method: &Method, headers: &HeaderMap) -> bool {
    classify::is_idempotent(method)
        || headers
            .get(IDEMPOTENCY_KEY)
            .is_some_and(|key| !key.is_empty())
}

/// The wait a 429 or 503 asks for in `Retry-After`: delta-seconds or an
/// HTTP-date (read against the system clock). `None` when the status is
/// another or the header is missing or malformed.
pub(crate) fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    parse_retry_after(response.headers().get(RETRY_AFTER)?, SystemTime::now())
}

fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn retried(on: &RetryOn, status: u16, safe: bool) -> bool {
        let response = response(status, &[]);
        on.matches(&response, Outcome::from_response(&response), safe)
    }

    #[test]
    fn gateway_error_versus_5xx() {
        let gateway = RetryOn::nothing().gateway_error();
        let all = RetryOn::nothing().server_error();
        for status in [502, 503, 504] {
            assert!(retried(&gateway, status, true), "{status}");
            assert!(retried(&all, status, true), "{status}");
        }
        for status in [500, 501, 507] {
            assert!(!retried(&gateway, status, true), "{status}");
            assert!(retried(&all, status, true), "{status}");
        }
        for status in [200, 404, 429] {
            assert!(!retried(&all, status, true), "{status}");
        }
        assert!(!retried(&all, 503, false), "not safe to repeat");
    }

    #[test]
    fn status_codes_and_headers() {
        let on = RetryOn::parse("retriable-status-codes,retriable-headers", [409, 429, 1000])
            .unwrap()
            .header(HeaderName::from_static("x-retry"), None)
            .header(
                HeaderName::from_static("x-state"),
                Some(HeaderValue::from_static("busy")),
            );
        assert!(retried(&on, 409, true));
        assert!(retried(&on, 429, true));
        assert!(!retried(&on, 503, true));
        let check = |headers: &[(&str, &str)]| {
            let r = response(200, headers);
            on.matches(&r, Outcome::from_response(&r), true)
        };
        assert!(check(&[("x-retry", "1")]));
        assert!(check(&[("x-state", "idle"), ("x-state", "busy")]));
        assert!(!check(&[("x-state", "idle")]));
        assert!(!check(&[]));
        assert!(RetryOn::parse("5xx,bogus", []).is_err());
    }

    #[test]
    fn connect_failures_are_retried_for_any_method_refusals_never() {
        use crate::error::{Rejection, RejectionKind};
        let on = RetryOn::default();
        let mut connect = response(502, &[]);
        connect
            .extensions_mut()
            .insert(Rejection::new(RejectionKind::UpstreamConnect));
        assert!(on.matches(&connect, Outcome::from_response(&connect), false));
        let mut reset = response(502, &[]);
        reset
            .extensions_mut()
            .insert(Rejection::new(RejectionKind::UpstreamReset));
        assert!(!on.matches(&reset, Outcome::from_response(&reset), false));
        assert!(on.matches(&reset, Outcome::from_response(&reset), true));
        let mut open = response(503, &[]);
        open.extensions_mut()
            .insert(Rejection::new(RejectionKind::CircuitOpen));
        let everything = RetryOn::nothing()
            .server_error()
            .status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(!everything.matches(&open, Outcome::from_response(&open), true));
    }

    #[test]
    fn idempotency() {
        let empty = HeaderMap::new();
        assert!(repeat_is_safe(&Method::PUT, &empty));
        assert!(!repeat_is_safe(&Method::POST, &empty));
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        assert!(repeat_is_safe(&Method::POST, &keyed));
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static(""));
        assert!(!repeat_is_safe(&Method::PATCH, &keyed));
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let parse = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse("Sunday, 06-Nov-94 08:50:37 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse("Sun Nov  6 08:49:40 1994"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(Duration::ZERO),
            "past"
        );
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let with = response(503, &[("retry-after", "7")]);
        assert_eq!(retry_after(&with), Some(Duration::from_secs(7)));
        let other = response(500, &[("retry-after", "7")]);
        assert_eq!(retry_after(&other), None, "only 429 and 503");
    }
}
