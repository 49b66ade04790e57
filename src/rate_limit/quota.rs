//! Quotas and the GCRA arithmetic over them.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

/// One quota: `limit` requests per `period`, with a burst.
///
/// Enforced with GCRA (the generic cell rate algorithm, as `governor` and
/// `redis-cell` do): one request is allowed every `period / limit` on
/// average, and up to `burst` at once after an idle time. With the default
/// burst (= `limit`) a client that was idle can spend the whole quota at
/// once, then gets one request per `period / limit`.
///
/// ```
/// use std::time::Duration;
/// use meshgate::rate_limit::Quota;
///
/// let burst = Quota::per_second(10).burst(20);
/// let minute = Quota::per_minute(1_000);
/// let custom = Quota::new(50, Duration::from_secs(10)).named("ten-seconds");
/// # let _ = (burst, minute, custom);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    limit: u64,
    period: Duration,
    burst: Option<u64>,
    name: Option<Arc<str>>,
}

impl Quota {
    /// `limit` requests per `period`. A `limit` of 0 is taken as 1 and a
    /// period under a millisecond as one millisecond.
    #[must_use]
    pub fn new(limit: u64, period: Duration) -> Self {
        Self {
            limit: limit.max(1),
            period: period.max(Duration::from_millis(1)),
            burst: None,
            name: None,
        }
    }

    /// `limit` requests per second, named `second`.
    #[must_use]
    pub fn per_second(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute, named `minute`.
    #[must_use]
    pub fn per_minute(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per hour, named `hour`.
    #[must_use]
    pub fn per_hour(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// `limit` requests per day, named `day`.
    #[must_use]
    pub fn per_day(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(86_400))
    }

    /// Requests allowed at once after an idle time (at least 1).
    ///
    /// Default: `limit`.
    #[must_use]
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst.max(1));
        self
    }

    /// The policy name in the `RateLimit` headers. Characters outside
    /// printable ASCII are replaced by `_`.
    ///
    /// Default: `second`, `minute`, `hour` or `day` for those periods, else
    /// the period in seconds (`10s`) or milliseconds (`500ms`).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
            .collect();
        self.name = Some(Arc::from(clean));
        self
    }

    /// Requests per period.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst in effect.
    #[must_use]
    pub fn burst_size(&self) -> u64 {
        self.burst.unwrap_or(self.limit)
    }

    /// The policy name in effect.
    #[must_use]
    pub fn name(&self) -> String {
        if let Some(name) = &self.name {
            return name.to_string();
        }
        match self.period.as_millis() {
            1_000 => "second".into(),
            60_000 => "minute".into(),
            3_600_000 => "hour".into(),
            86_400_000 => "day".into(),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        }
    }

    pub(crate) fn compile(&self) -> Gcra {
        let period_ns = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = (period_ns / self.limit).max(1);
        let capacity = interval.saturating_mul(self.burst_size());
        let name = self.name();
        let window = self.period.as_secs() + u64::from(self.period.subsec_nanos() > 0);
        let mut policy = String::with_capacity(name.len() + 32);
        push_sf_string(&mut policy, &name);
        policy.push_str(&format!(";q={};w={}", self.limit, window));
        let mut prefix = String::with_capacity(name.len() + 6);
        push_sf_string(&mut prefix, &name);
        prefix.push_str(";r=");
        Gcra {
            prefix: prefix.into_boxed_str(),
            interval,
            capacity,
            limit: self.limit,
            // Built from printable ASCII only (the name is cleaned).
            policy_header: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"quota\"")),
        }
    }
}

#[cfg(feature = "config")]
impl From<&crate::config::Quota> for Quota {
    fn from(q: &crate::config::Quota) -> Self {
        let quota = Self::new(q.limit, q.per);
        match q.burst {
            Some(burst) => quota.burst(burst),
            None => quota,
        }
    }
}

/// A structured-field string: quoted, with `"` and `\` escaped.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A compiled quota: GCRA in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Gcra {
    /// The emission interval: `period / limit`.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may be: `burst × interval`.
    capacity: u64,
    limit: u64,
    /// `"name";q=limit;w=seconds`, built once.
    pub(crate) policy_header: HeaderValue,
    /// `"name";r=`, the start of the `RateLimit` value.
    pub(crate) prefix: Box<str>,
}

impl Gcra {
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The emission interval and capacity in nanoseconds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn nanos(&self) -> (u64, u64) {
        (self.interval, self.capacity)
    }
}

/// What a check found for the quota the headers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuotaState {
    /// Index of the quota in its set.
    pub(crate) index: usize,
    /// Requests left now.
    pub(crate) remaining: u64,
    /// Nanoseconds until the whole burst is available again.
    pub(crate) reset: u64,
}

/// The verdict of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed; every quota was charged. The state is the quota with the
    /// fewest requests left (ties: the longest reset).
    Allowed(Option<QuotaState>),
    /// Refused; no quota was charged. `retry_after` is the wait, in
    /// nanoseconds, until every quota would allow the request; the state
    /// is the quota that needs the longest wait.
    Refused { retry_after: u64, state: QuotaState },
}

/// Checks one request against every quota, charging all of them or none.
/// `tats` holds each quota's theoretical arrival time (ns since the epoch).
#[inline(always)]
pub(crate) fn check(quotas: &[Gcra], tats: &mut [u64], now: u64) -> Verdict {
    // One quota, the common case: no loop and nothing to undo, inlined
    // into the store's look-up.
    if let ([q], [tat]) = (quotas, &mut *tats) {
        return check_one(q, tat, now);
    }
    check_all(quotas, tats, now)
}

/// [`check`] for one quota.
#[inline(always)]
pub(crate) fn check_one(q: &Gcra, tat: &mut u64, now: u64) -> Verdict {
    let next = (*tat).max(now).saturating_add(q.interval);
    let ahead = next - now;
    if ahead > q.capacity {
        return Verdict::Refused {
            retry_after: ahead - q.capacity,
            state: QuotaState {
                index: 0,
                remaining: 0,
                reset: (*tat).saturating_sub(now),
            },
        };
    }
    *tat = next;
    Verdict::Allowed(Some(QuotaState {
        index: 0,
        remaining: (q.capacity - ahead) / q.interval,
        reset: ahead,
    }))
}

/// [`check`] for any number of quotas: every one is checked before any
/// is charged.
#[inline(never)]
fn check_all(quotas: &[Gcra], tats: &mut [u64], now: u64) -> Verdict {
    let mut refused: Option<(u64, QuotaState)> = None;
    for (index, (q, tat)) in quotas.iter().zip(tats.iter()).enumerate() {
        let next = (*tat).max(now).saturating_add(q.interval);
        let ahead = next - now;
        if ahead > q.capacity {
            let wait = ahead - q.capacity;
            if refused.is_none_or(|(w, _)| wait > w) {
                let state = QuotaState {
                    index,
                    remaining: 0,
                    reset: (*tat).saturating_sub(now),
                };
                refused = Some((wait, state));
            }
        }
    }
    if let Some((retry_after, state)) = refused {
        return Verdict::Refused { retry_after, state };
    }
    let mut closest: Option<QuotaState> = None;
    for (index, (q, tat)) in quotas.iter().zip(tats.iter_mut()).enumerate() {
        *tat = (*tat).max(now) + q.interval;
        let ahead = *tat - now;
        let state = QuotaState {
            index,
            remaining: (q.capacity - ahead) / q.interval,
            reset: ahead,
        };
        if closest.is_none_or(|c| {
            state.remaining < c.remaining
                || (state.remaining == c.remaining && state.reset > c.reset)
        }) {
            closest = Some(state);
        }
    }
    Verdict::Allowed(closest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_rate() {
        let q = [Quota::per_second(10).burst(20).compile()];
        let mut tats = [0];
        for i in 0..20 {
            match check(&q, &mut tats, 0) {
                Verdict::Allowed(Some(s)) => assert_eq!(s.remaining, 19 - i),
                other => panic!("request {i}: {other:?}"),
            }
        }
        match check(&q, &mut tats, 0) {
            Verdict::Refused { retry_after, .. } => assert_eq!(retry_after, S / 10),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(&q, &mut tats, S / 10), Verdict::Allowed(_)));
        assert!(matches!(
            check(&q, &mut tats, S / 10),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn all_or_none() {
        let q = [
            Quota::per_second(100).compile(),
            Quota::per_minute(2).compile(),
        ];
        let mut tats = [0, 0];
        assert!(matches!(check(&q, &mut tats, 0), Verdict::Allowed(_)));
        assert!(matches!(check(&q, &mut tats, 0), Verdict::Allowed(_)));
        let before = tats;
        match check(&q, &mut tats, 0) {
            Verdict::Refused { retry_after, state } => {
                assert_eq!(state.index, 1);
                assert_eq!(retry_after, 30 * S);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tats, before, "a refused request charged a quota");
    }

    #[test]
    fn names_and_policy() {
        assert_eq!(
            Quota::per_minute(1000).compile().policy_header,
            "\"minute\";q=1000;w=60"
        );
        assert_eq!(Quota::new(5, Duration::from_millis(1500)).name(), "1500ms");
        assert_eq!(
            Quota::per_day(1).named("a\"b").compile().policy_header,
            "\"a\\\"b\";q=1;w=86400"
        );
    }
}
