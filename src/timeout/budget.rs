//! The wire formats of a time budget: `grpc-timeout` and a millisecond header.

use std::cell::Cell;
use std::time::Duration;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Request};
use tokio::time::Instant;

/// The `grpc-timeout` request header (gRPC over HTTP/2).
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The absolute deadline of a request.
///
/// [`Timeout`](super::Timeout) does not store it in the request (an
/// extension would cost allocations on every request); layers further in
/// find it with [`Deadline::of`], which reads, in order:
///
/// 1. a `Deadline` in the request extensions, which a caller may insert to
///    bound the layers below it;
/// 2. the deadline of the innermost [`TimeoutLayer`](super::TimeoutLayer)
///    whose call or response future is running on this thread — so stacked
///    timeout layers in one process, a retry's backoff or an aggregate's
///    calls count down from one clock, even when time passes between the
///    layers;
/// 3. failing both, the budget headers (`x-request-timeout-ms` and
///    `grpc-timeout`, the smaller) counted from the instant the reading
///    layer was called, as a next hop in another process would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

thread_local! {
    /// The deadline of the innermost timeout whose call or poll is running.
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Makes a deadline current on this thread until dropped, then restores
/// the enclosing one (also when the code in between panics).
pub(crate) struct Scope(Option<Instant>);

impl Scope {
    #[inline]
    pub(crate) fn enter(deadline: Instant) -> Self {
        Self(CURRENT.with(|current| current.replace(Some(deadline))))
    }
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

impl Deadline {
    /// A deadline at `instant`.
    #[must_use]
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// The deadline that `request` runs under, for a layer called at
    /// `called_at`; `None` when nothing bounds it. See the
    /// [type docs](Deadline) for where it comes from.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    /// use http::{Request, Response};
    /// use meshgate::timeout::{Deadline, TimeoutLayer};
    /// use tokio::time::Instant;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let service = ServiceBuilder::new()
    ///     .layer(TimeoutLayer::new(Duration::from_secs(10)))
    ///     .service_fn(|request: Request<()>| async move {
    ///         let deadline = Deadline::of(&request, Instant::now()).unwrap();
    ///         assert_eq!(deadline.remaining(), Duration::from_secs(10));
    ///         Ok::<_, Infallible>(Response::new(()))
    ///     });
    /// let response = service.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// # }
    /// ```
    #[must_use]
    pub fn of<B>(request: &Request<B>, called_at: Instant) -> Option<Self> {
        Self::from_parts(request.headers(), request.extensions(), called_at)
    }

    /// [`Deadline::of`] for a request's headers and extensions.
    #[must_use]
    pub fn from_parts(
        headers: &HeaderMap,
        extensions: &Extensions,
        called_at: Instant,
    ) -> Option<Self> {
        Self::known(extensions).or_else(|| {
            let millis = headers
                .get(super::DEFAULT_BUDGET_HEADER)
                .and_then(parse_millis);
            let grpc = headers.get(GRPC_TIMEOUT).and_then(parse_grpc_timeout);
            let budget = match (millis, grpc) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            // An unrepresentable instant is no bound.
            called_at.checked_add(budget).map(Self)
        })
    }

    /// The earlier of a `Deadline` in `extensions` and [`Deadline::current`].
    #[inline]
    pub(crate) fn known(extensions: &Extensions) -> Option<Self> {
        match (extensions.get::<Self>(), Self::current()) {
            (Some(a), Some(b)) => Some((*a).min(b)),
            (a, b) => a.copied().or(b),
        }
    }

    /// The deadline of the innermost [`TimeoutLayer`](super::TimeoutLayer)
    /// whose call or response future is running on this thread.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.with(Cell::get).map(Self)
    }

    /// The instant at which the budget runs out.
    #[must_use]
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The time left, zero once the deadline has passed.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    #[must_use]
    pub fn is_spent(&self) -> bool {
        self.0 <= Instant::now()
    }
}

/// The largest budget read from a header: a year. Larger values (and
/// overflowing ones) are clamped, which leaves the layer's own timeout in
/// charge.
const MAX_INCOMING: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a non-negative integer count of milliseconds (at most 20 digits).
pub(crate) fn parse_millis(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let mut millis: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        millis = millis
            .saturating_mul(10)
            .saturating_add(u64::from(b - b'0'));
    }
    Some(Duration::from_millis(millis).min(MAX_INCOMING))
}

/// Parses a gRPC `TimeoutValue TimeoutUnit`: 1 to 8 ASCII digits and one of
/// `H` (hours), `M` (minutes), `S`, `m` (milliseconds), `u`, `n`.
pub(crate) fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
    let duration = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    };
    Some(duration.min(MAX_INCOMING))
}

/// Formats `budget` as whole milliseconds, rounded down.
pub(crate) fn format_millis(budget: Duration) -> HeaderValue {
    let millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    HeaderValue::from(millis)
}

/// Formats `budget` as a gRPC timeout in the finest unit that fits in eight
/// digits, rounded down.
pub(crate) fn format_grpc_timeout(budget: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = budget.as_nanos();
    let (n, unit) = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos / per, unit))
    .find(|(n, _)| *n <= MAX)
    .unwrap_or((MAX, 'H'));
    let text = format!("{n}{unit}");
    // Digits and an ASCII letter are always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn grpc_timeout_units() {
        let table = [
            ("1H", Some(Duration::from_secs(3600))),
            ("1M", Some(Duration::from_secs(60))),
            ("30S", Some(Duration::from_secs(30))),
            ("1m", Some(Duration::from_millis(1))),
            ("250u", Some(Duration::from_micros(250))),
            ("7n", Some(Duration::from_nanos(7))),
            ("0S", Some(Duration::ZERO)),
            ("99999999H", Some(MAX_INCOMING)),
            ("123456789S", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("-1S", None),
            ("1 S", None),
            ("", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_grpc_timeout(&hv(text)), expected, "{text:?}");
        }
    }

    #[test]
    fn millisecond_header() {
        assert_eq!(parse_millis(&hv("1500")), Some(Duration::from_millis(1500)));
        assert_eq!(parse_millis(&hv("0")), Some(Duration::ZERO));
        assert_eq!(
            parse_millis(&hv("99999999999999999999")),
            Some(MAX_INCOMING)
        );
        for bad in ["", "1.5", "-3", "10ms", " 1", "123456789012345678901"] {
            assert_eq!(parse_millis(&hv(bad)), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_nest_and_restore_also_on_panic() {
        let outer = Instant::now() + Duration::from_secs(5);
        let inner = Instant::now() + Duration::from_secs(1);
        assert_eq!(Deadline::current(), None);
        {
            let _outer = Scope::enter(outer);
            assert_eq!(Deadline::current(), Some(Deadline::at(outer)));
            {
                let _inner = Scope::enter(inner);
                assert_eq!(Deadline::current(), Some(Deadline::at(inner)));
            }
            assert_eq!(Deadline::current(), Some(Deadline::at(outer)));
            let panicked = std::panic::catch_unwind(|| {
                let _inner = Scope::enter(inner);
                panic!("inner code panics");
            });
            assert!(panicked.is_err());
            assert_eq!(Deadline::current(), Some(Deadline::at(outer)));
        }
        assert_eq!(Deadline::current(), None);
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999),
            Duration::from_millis(1),
            Duration::from_millis(4_000),
            Duration::from_secs(99_999),
            Duration::from_secs(86_400 * 30),
        ] {
            let grpc = parse_grpc_timeout(&format_grpc_timeout(d)).unwrap();
            assert!(grpc <= d && d - grpc <= d / 100_000, "{d:?}");
            assert_eq!(
                parse_millis(&format_millis(d)).unwrap().as_millis(),
                d.as_millis()
            );
        }
        assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(3600)), "3600000m");
    }
}
