//! Byte ranges of a stored response (RFC 9110 §14): parsing `Range` and
//! evaluating `If-Range`.

use std::time::SystemTime;

use http::header::{DATE, ETAG, IF_RANGE, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue};

/// The most ranges read from one `Range` field; a longer list is ignored
/// (RFC 9110 §14.2 lets a server ignore a `Range` it will not honour).
const MAX_RANGES: usize = 64;

/// How a request's `Range` is answered from a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// The whole representation (`200`): no or an ignored `Range` (unknown
    /// unit, invalid syntax, several ranges).
    Whole,
    /// One range, `first..=last`, with `first <= last < len` (`206`).
    Part { first: u64, last: u64 },
    /// No requested range overlaps the representation (`416`).
    Unsatisfiable,
}

/// Reads `Range: bytes=…` against a representation of `len` bytes.
///
/// One satisfiable range is served as a part. Several ranges get the whole
/// representation (allowed by RFC 9110 §14.2; no multipart), unless none is
/// satisfiable. An invalid field, another unit or more than
/// [`MAX_RANGES`] ranges are ignored.
pub(crate) fn byte_range(value: &HeaderValue, len: u64) -> RangeAnswer {
    let Ok(value) = value.to_str() else {
        return RangeAnswer::Whole;
    };
    let Some((unit, set)) = value.split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    let mut count = 0;
    let mut part = None;
    let mut satisfiable = false;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return RangeAnswer::Whole;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeAnswer::Whole;
        };
        let resolved = match (first, last) {
            ("", suffix) => {
                let Some(suffix) = number(suffix) else {
                    return RangeAnswer::Whole;
                };
                // A zero suffix, or any suffix of an empty representation,
                // selects nothing.
                (suffix > 0 && len > 0).then(|| (len.saturating_sub(suffix), len - 1))
            }
            (first, "") => {
                let Some(first) = number(first) else {
                    return RangeAnswer::Whole;
                };
                (first < len).then(|| (first, len - 1))
            }
            (first, last) => {
                let (Some(first), Some(last)) = (number(first), number(last)) else {
                    return RangeAnswer::Whole;
                };
                if last < first {
                    // An invalid range-spec makes the whole field invalid.
                    return RangeAnswer::Whole;
                }
                (first < len).then(|| (first, last.min(len - 1)))
            }
        };
        if let Some(range) = resolved {
            satisfiable = true;
            part = Some(range);
        }
    }
    match (count, part) {
        (0, _) => RangeAnswer::Whole,
        (_, _) if !satisfiable => RangeAnswer::Unsatisfiable,
        (1, Some((first, last))) => RangeAnswer::Part { first, last },
        _ => RangeAnswer::Whole,
    }
}

/// Digits only, saturating at `u64::MAX` (a position past any length).
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// Whether the request's `If-Range` (if any) lets its `Range` apply to the
/// stored response (RFC 9110 §13.1.5): an entity tag must strongly match
/// the stored `ETag`; a date must equal the stored `Last-Modified`, which
/// must be strong (at least a second before the stored `Date`).
pub(crate) fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = request.get(IF_RANGE) else {
        return true;
    };
    let condition = condition.as_bytes().trim_ascii();
    if condition.starts_with(b"\"") || condition.starts_with(b"W/") {
        // Weak tags never match in a strong comparison.
        return !condition.starts_with(b"W/")
            && stored
                .get(ETAG)
                .is_some_and(|etag| etag.as_bytes().trim_ascii() == condition);
    }
    let date = |value: Option<&HeaderValue>| -> Option<SystemTime> {
        httpdate::parse_http_date(value?.to_str().ok()?).ok()
    };
    let (Some(since), Some(modified)) = (
        std::str::from_utf8(condition)
            .ok()
            .and_then(|c| httpdate::parse_http_date(c).ok()),
        date(stored.get(LAST_MODIFIED)),
    ) else {
        return false;
    };
    let strong = date(stored.get(DATE)).is_some_and(|sent| {
        sent.duration_since(modified)
            .is_ok_and(|d| d.as_secs() >= 1)
    });
    strong && since == modified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(range: &'static str, len: u64) -> RangeAnswer {
        byte_range(&HeaderValue::from_static(range), len)
    }

    fn part(first: u64, last: u64) -> RangeAnswer {
        RangeAnswer::Part { first, last }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(answer("bytes=0-4", 10), part(0, 4));
        assert_eq!(answer("bytes=5-", 10), part(5, 9));
        assert_eq!(answer("bytes=-3", 10), part(7, 9));
        assert_eq!(answer("bytes=-30", 10), part(0, 9));
        assert_eq!(answer("bytes=8-100", 10), part(8, 9));
        assert_eq!(answer("Bytes = 2-2", 10), part(2, 2));
        assert_eq!(answer("bytes=0-99999999999999999999999", 10), part(0, 9));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(answer("bytes=10-", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=10-20", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=-0", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=0-0", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=-5", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(answer("bytes=20-30, 40-", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(
            answer("bytes=99999999999999999999999-", 10),
            RangeAnswer::Unsatisfiable
        );
    }

    #[test]
    fn ignored_ranges_get_the_whole_representation() {
        for range in [
            "items=0-4",
            "bytes",
            "bytes=",
            "bytes=a-b",
            "bytes=4-1",
            "bytes=1-2-3",
            "bytes=-",
            "bytes=0-1, 4-5",
            "bytes=0-1, 20-30",
            "bytes=+1-2",
        ] {
            assert_eq!(answer(range, 10), RangeAnswer::Whole, "{range}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(
            byte_range(&HeaderValue::from_str(&many).unwrap(), 10),
            RangeAnswer::Whole
        );
    }

    #[test]
    fn if_range() {
        let mut stored = HeaderMap::new();
        stored.insert(ETAG, HeaderValue::from_static("\"v1\""));
        stored.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 02 Nov 2026 10:00:00 GMT"),
        );
        stored.insert(
            DATE,
            HeaderValue::from_static("Mon, 02 Nov 2026 10:00:05 GMT"),
        );
        let holds = |condition: Option<&'static str>, stored: &HeaderMap| {
            let mut request = HeaderMap::new();
            if let Some(c) = condition {
                request.insert(IF_RANGE, HeaderValue::from_static(c));
            }
            if_range_holds(&request, stored)
        };
        assert!(holds(None, &stored));
        assert!(holds(Some("\"v1\""), &stored));
        assert!(!holds(Some("\"v2\""), &stored));
        assert!(!holds(Some("W/\"v1\""), &stored));
        assert!(holds(Some("Mon, 02 Nov 2026 10:00:00 GMT"), &stored));
        assert!(!holds(Some("Mon, 02 Nov 2026 10:00:01 GMT"), &stored));
        assert!(!holds(Some("yesterday"), &stored));
        let mut weak = stored.clone();
        weak.insert(ETAG, HeaderValue::from_static("W/\"v1\""));
        weak.insert(
            DATE,
            HeaderValue::from_static("Mon, 02 Nov 2026 10:00:00 GMT"),
        );
        assert!(!holds(Some("W/\"v1\""), &weak));
        assert!(!holds(Some("\"v1\""), &weak));
        assert!(!holds(Some("Mon, 02 Nov 2026 10:00:00 GMT"), &weak));
    }
}
