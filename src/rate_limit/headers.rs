//! The `RateLimit`, `RateLimit-Policy`, legacy `X-RateLimit-*` and
//! `Retry-After` headers.

use bytes::BytesMut;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{Entry, HeaderName, HeaderValue, RETRY_AFTER};

use super::quota::{Gcra, QuotaState};

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// What the headers of one response describe.
#[derive(Debug, Clone)]
pub(crate) struct HeaderInfo {
    pub(crate) quotas: Arc<[Gcra]>,
    pub(crate) state: QuotaState,
    pub(crate) legacy: bool,
}

impl HeaderInfo {
    /// Writes the headers. An inner rate limiter's headers that already
    /// show fewer requests left are kept: the client sees the tighter limit.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let Some(quota) = self.quotas.get(self.state.index) else {
            return;
        };
        // One look-up for the check and the write.
        let entry = headers.entry(RATELIMIT);
        if let Entry::Occupied(inner) = &entry
            && remaining_of(inner.get()).is_some_and(|r| r <= self.state.remaining)
        {
            return;
        }
        let reset = ceil_secs(self.state.reset);
        let mut value = BytesMut::with_capacity(quota.prefix.len() + 44);
        value.extend_from_slice(quota.prefix.as_bytes());
        push_u64(&mut value, self.state.remaining);
        value.extend_from_slice(b";t=");
        push_u64(&mut value, reset);
        // Built from a cleaned, printable-ASCII name and digits.
        if let Ok(value) = HeaderValue::from_maybe_shared(value.freeze()) {
            match entry {
                Entry::Occupied(mut inner) => {
                    inner.insert(value);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(value);
                }
            }
        }
        headers.insert(RATELIMIT_POLICY, quota.policy_header.clone());
        if self.legacy {
            headers.insert(X_LIMIT, HeaderValue::from(quota.limit()));
            headers.insert(X_REMAINING, HeaderValue::from(self.state.remaining));
            headers.insert(X_RESET, HeaderValue::from(reset));
        }
    }
}

/// Decimal digits, without the formatting machinery.
fn push_u64(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(crate::digits::decimal(n, &mut [0; 20]));
}

/// The `r` parameter of a `RateLimit` value.
fn remaining_of(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?;
    let start = text.find(";r=")? + 3;
    let digits = text[start..].split(';').next()?;
    digits.trim().parse().ok()
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after(headers: &mut HeaderMap, ns: u64) {
    headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(ns).max(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining() {
        assert_eq!(
            remaining_of(&HeaderValue::from_static("\"minute\";r=998;t=37")),
            Some(998)
        );
        assert_eq!(remaining_of(&HeaderValue::from_static("\"m\";t=3")), None);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(2_000_000_000), 2);
        assert_eq!(ceil_secs(0), 0);
    }
}
