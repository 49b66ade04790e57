//! Freshness and storability (RFC 9111 as a shared cache, RFC 5861).
//!
//! `http-cache-semantics` decides whether a response may be stored and its
//! freshness lifetime. Ages are judged here against tokio time (the
//! insertion `Instant` of the entry), so paused-time tests and the layer
//! agree, and the parts the crate leaves out are added: the apparent age
//! and response delay of RFC 9111 §4.2.3, `stale-while-revalidate` and
//! `stale-if-error`, and the request directives read with the stored
//! response's own freshness rather than the crate's matching (which compares
//! `Vary` values unnormalised).
//!
//! `Surrogate-Control` (as Fastly and the Edge Architecture spec read it) is
//! this shared cache's own policy and wins over `Cache-Control`: its
//! `no-store` forbids storing; its `max-age` replaces what `Cache-Control`
//! says of freshness and storing (`max-age`, `s-maxage`, `no-cache`,
//! `no-store`, which then speak to the clients) and `Expires`; its
//! `stale-while-revalidate` / `stale-if-error` replace those of
//! `Cache-Control`. `private` in `Cache-Control` still keeps a response out
//! of the cache (one user's data is never shared), as with Fastly.

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, PRAGMA};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

/// The largest age or lifetime counted (2^31 s, RFC 9111 §1.2.2).
const MAX_DELTA: Duration = Duration::from_secs(1 << 31);

/// The `Surrogate-Control` response header.
pub(crate) const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// Statuses the per-route TTL may make cacheable (the heuristically
/// cacheable ones of RFC 9110 §15.1 that this cache understands).
const TTL_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The statuses `http-cache-semantics` understands (and stores).
const UNDERSTOOD_STATUSES: &[u16] = &[
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// The `Surrogate-Capability` request header.
pub(crate) const SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// The `Cache-Control` directives a cache reads, from a request or a
/// response. Unknown directives are ignored; a malformed number makes the
/// directive count as present with value 0 (the strict reading).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    /// `max-stale` with no value is `Some(u64::MAX)`.
    pub(crate) max_stale: Option<u64>,
    pub(crate) min_fresh: Option<u64>,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) public: bool,
    pub(crate) private: bool,
    pub(crate) must_understand: bool,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
}

impl Directives {
    /// Reads every `Cache-Control` field of `headers`; a request without
    /// `Cache-Control` but with `Pragma: no-cache` is `no-cache` (§5.4).
    #[inline]
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        if headers.contains_key(CACHE_CONTROL) {
            Self::parse_cache_control(headers)
        } else if headers.contains_key(PRAGMA) {
            Self::parse_pragma(headers)
        } else {
            Self::default()
        }
    }

    /// A request without `Cache-Control`: `Pragma: no-cache` is `no-cache`.
    fn parse_pragma(headers: &HeaderMap) -> Self {
        Directives {
            no_cache: headers
                .get_all(PRAGMA)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("no-cache"))),
            ..Self::default()
        }
    }

    fn parse_cache_control(headers: &HeaderMap) -> Self {
        let mut d = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for part in value.split(',') {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part.trim(), None),
                };
                let seconds = || arg.map_or(0, |a| a.parse::<u64>().unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => d.max_age = Some(seconds()),
                    "s-maxage" => d.s_maxage = Some(seconds()),
                    "max-stale" => {
                        d.max_stale = Some(arg.map_or(u64::MAX, |a| a.parse().unwrap_or(0)));
                    }
                    "min-fresh" => d.min_fresh = Some(seconds()),
                    "no-cache" => d.no_cache = true,
                    "no-store" => d.no_store = true,
                    "only-if-cached" => d.only_if_cached = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "public" => d.public = true,
                    "private" => d.private = true,
                    "must-understand" => d.must_understand = true,
                    "stale-while-revalidate" => d.stale_while_revalidate = Some(seconds()),
                    "stale-if-error" => d.stale_if_error = Some(seconds()),
                    _ => {}
                }
            }
        }
        d
    }

    /// Whether a request with these directives may be answered by any
    /// fresh response without looking at its age (`no-cache`, `max-age`
    /// and `min-fresh` are absent).
    pub(crate) fn takes_any_fresh(&self) -> bool {
        !self.no_cache && self.max_age.is_none() && self.min_fresh.is_none()
    }

    /// Whether a stale response may not be served without revalidation
    /// (`must-revalidate`, `proxy-revalidate` or `no-cache` on the response).
    pub(crate) fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.no_cache
    }
}

/// The `Surrogate-Control` directives this cache reads (Fastly's set and
/// the Edge Architecture Specification 1.0's `max-age=N+M`). Directives
/// targeted at another surrogate (`max-age=60;edge1`) are left to it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Surrogate {
    pub(crate) max_age: Option<u64>,
    pub(crate) no_store: bool,
    pub(crate) stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, or the `+M` of `max-age=N+M`.
    pub(crate) stale_if_error: Option<u64>,
}

impl Surrogate {
    /// Reads every `Surrogate-Control` field; `None` when there is none.
    /// Directives targeted at `target` (`max-age=60;target`), when there
    /// are any, replace the untargeted ones; directives targeted at another
    /// surrogate are ignored.
    pub(crate) fn parse(headers: &HeaderMap, target: Option<&str>) -> Option<Self> {
        let mut values = headers.get_all(SURROGATE_CONTROL).iter().peekable();
        values.peek()?;
        let (mut general, mut targeted, mut any_targeted) =
            (Surrogate::default(), Surrogate::default(), false);
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for part in value.split(',') {
                let (part, into) = match part.split_once(';') {
                    None => (part, &mut general),
                    Some((part, to))
                        if target.is_some_and(|t| to.trim().eq_ignore_ascii_case(t)) =>
                    {
                        any_targeted = true;
                        (part, &mut targeted)
                    }
                    Some(_) => continue,
                };
                into.read(part);
            }
        }
        Some(if any_targeted { targeted } else { general })
    }

    /// Reads one directive.
    fn read(&mut self, part: &str) {
        let (name, arg) = match part.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (part.trim(), None),
        };
        let seconds = |a: Option<&str>| a.map_or(0, |a| a.parse::<u64>().unwrap_or(0));
        match name.to_ascii_lowercase().as_str() {
            "max-age" => {
                let (fresh, stale) = match arg.and_then(|a| a.split_once('+')) {
                    Some((fresh, stale)) => (Some(fresh), Some(stale)),
                    None => (arg, None),
                };
                self.max_age = Some(seconds(fresh));
                if stale.is_some() {
                    self.stale_if_error = Some(seconds(stale));
                }
            }
            "no-store" => self.no_store = true,
            "stale-while-revalidate" => self.stale_while_revalidate = Some(seconds(arg)),
            "stale-if-error" => self.stale_if_error = Some(seconds(arg)),
            _ => {}
        }
    }
}

/// What the cache learned about a response it may store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    /// The freshness lifetime (RFC 9111 §4.2.1).
    pub(crate) lifetime: Duration,
    /// The corrected initial age (§4.2.3) when it was received.
    pub(crate) initial_age: Duration,
    /// The response's directives.
    pub(crate) directives: Directives,
}

/// [`storable_by`] the surrogate named `meshgate`.
#[cfg(test)]
pub(crate) fn storable(
    method: &Method,
    uri: &http::Uri,
    status: StatusCode,
    request: &HeaderMap,
    response: &HeaderMap,
    response_delay: Duration,
    default_ttl: Option<Duration>,
) -> Option<Freshness> {
    storable_by(
        method,
        uri,
        status,
        request,
        response,
        response_delay,
        default_ttl,
        Some("meshgate"),
    )
}

/// Whether `(method, status, request, response)` may be stored by a shared
/// cache and, if so, for how long it is fresh. `default_ttl` applies to
/// responses with no explicit expiration (`max-age`, `s-maxage`,
/// `Expires`) and a status in the heuristically cacheable set; it replaces
/// heuristic freshness. `target` is this cache's name in
/// `Surrogate-Control` targeted directives.
#[allow(clippy::too_many_arguments)]
pub(crate) fn storable_by(
    method: &Method,
    uri: &http::Uri,
    status: StatusCode,
    request: &HeaderMap,
    response: &HeaderMap,
    response_delay: Duration,
    default_ttl: Option<Duration>,
    target: Option<&str>,
) -> Option<Freshness> {
    let surrogate = Surrogate::parse(response, target).unwrap_or_default();
    if surrogate.no_store {
        return None;
    }
    let mut directives = Directives::parse(response);
    // `no-store` that no `Surrogate-Control` lifetime replaces keeps the
    // response out: no need to build the policy (and a copy of the headers)
    // to hear it say so.
    if directives.no_store && surrogate.max_age.is_none() {
        return None;
    }
    let explicit = directives.max_age.is_some()
        || directives.s_maxage.is_some()
        || response.contains_key(EXPIRES)
        || surrogate.max_age.is_some();
    // `http-cache-semantics` matches directive names case-sensitively:
    // give it lowercased names (RFC 9111 §5.2: they are case-insensitive).
    // With a `Surrogate-Control` lifetime, the freshness directives of
    // `Cache-Control` (meant for the clients) are replaced by it.
    let mut judged = response.clone();
    if surrogate.max_age.is_some()
        || response
            .get_all(CACHE_CONTROL)
            .iter()
            .any(|v| v.as_bytes().iter().any(u8::is_ascii_uppercase))
    {
        let replaced: &[&str] = if surrogate.max_age.is_some() {
            &["max-age", "s-maxage", "no-cache", "no-store"]
        } else {
            &[]
        };
        let mut lowered: Vec<HeaderValue> = response
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| {
                let lowered = lower_directive_names(v.to_str().ok()?, replaced);
                (!lowered.is_empty())
                    .then(|| HeaderValue::from_str(&lowered).ok())
                    .flatten()
            })
            .collect();
        if let Some(max_age) = surrogate.max_age {
            let value = if directives.s_maxage.is_some() {
                format!("max-age={max_age}, s-maxage={max_age}")
            } else {
                format!("max-age={max_age}")
            };
            lowered.push(HeaderValue::from_str(&value).ok()?);
            judged.remove(EXPIRES);
            directives.max_age = Some(max_age);
            directives.s_maxage = directives.s_maxage.map(|_| max_age);
            directives.no_cache = false;
        }
        judged.remove(CACHE_CONTROL);
        for value in lowered {
            judged.append(CACHE_CONTROL, value);
        }
    }
    if surrogate.stale_while_revalidate.is_some() {
        directives.stale_while_revalidate = surrogate.stale_while_revalidate;
    }
    if surrogate.stale_if_error.is_some() {
        directives.stale_if_error = surrogate.stale_if_error;
    }
    if let Some(ttl) = default_ttl
        && !explicit
        && TTL_STATUSES.contains(&status.as_u16())
    {
        judged.append(
            CACHE_CONTROL,
            HeaderValue::from_str(&format!("max-age={}", ttl.as_secs())).ok()?,
        );
    }
    // The crate stores only the statuses it lists as understood; RFC 9111
    // §3 allows any final status other than 206/304 with explicit
    // freshness (unless `must-understand`). Those are judged as a 200 would
    // be: explicit freshness is then what makes them storable.
    let judged_status = if !UNDERSTOOD_STATUSES.contains(&status.as_u16())
        && explicit
        && !directives.must_understand
        && status.as_u16() >= 200
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED
    {
        StatusCode::OK
    } else {
        status
    };
    let now = SystemTime::now();
    let policy = CachePolicy::new_options(
        &Judged {
            method,
            uri,
            headers: request,
        },
        &JudgedResponse {
            status: judged_status,
            headers: &judged,
        },
        now,
        CacheOptions {
            shared: true,
            ..CacheOptions::default()
        },
    );
    if !policy.is_storable() {
        return None;
    }
    // RFC 9111 §1.2.2: delta-seconds past 2^31 are taken as 2^31.
    let age_value = policy.age(now).min(MAX_DELTA);
    // An `Age` that is not one non-negative integer (§5.1) makes the
    // response stale: the crate would read it as 0, i.e. fresh.
    let lifetime = if valid_age(response) {
        policy.time_to_live(now).saturating_add(age_value)
    } else {
        Duration::ZERO
    };
    // RFC 9111 §4.2.3: apparent age from `Date`, corrected by the delay.
    let apparent = response
        .get(DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|date| now.duration_since(date).ok())
        .unwrap_or_default();
    let corrected = age_value.saturating_add(response_delay);
    let initial_age = Duration::from_secs(apparent.max(corrected).as_secs()).min(MAX_DELTA);
    Some(Freshness {
        lifetime: lifetime.min(MAX_DELTA),
        initial_age,
        directives,
    })
}

/// `Cache-Control` with its directive names lowercased (arguments kept)
/// and the `dropped` ones left out.
fn lower_directive_names(value: &str, dropped: &[&str]) -> String {
    value
        .split(',')
        .filter_map(|part| {
            let (name, arg) = match part.split_once('=') {
                Some((name, arg)) => (name.trim().to_ascii_lowercase(), Some(arg)),
                None => (part.trim().to_ascii_lowercase(), None),
            };
            if name.is_empty() || dropped.contains(&name.as_str()) {
                return None;
            }
            Some(match arg {
                Some(arg) => format!("{name}={arg}"),
                None => name,
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `Age` is absent or one field line of digits.
fn valid_age(response: &HeaderMap) -> bool {
    let mut values = response.get_all(AGE).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(age), None) => {
            let age = age.as_bytes();
            !age.is_empty() && age.iter().all(u8::is_ascii_digit)
        }
        (Some(_), Some(_)) => false,
    }
}

struct Judged<'a> {
    method: &'a Method,
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
}

impl http_cache_semantics::RequestLike for Judged<'_> {
    fn uri(&self) -> http::Uri {
        self.uri.clone()
    }
    fn is_same_uri(&self, other: &http::Uri) -> bool {
        self.uri == other
    }
    fn method(&self) -> &Method {
        self.method
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

struct JudgedResponse<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl http_cache_semantics::ResponseLike for JudgedResponse<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

/// Ages below this many seconds are served from [`AGE_DIGITS`].
const AGE_SLOTS: usize = 10_000;
/// The width of one slot of [`AGE_DIGITS`].
const AGE_WIDTH: usize = 4;

/// Every age below [`AGE_SLOTS`] written out, zero-padded to
/// [`AGE_WIDTH`] digits: an `Age` value is a static slice of it, so a hit
/// formats nothing and allocates nothing for it.
static AGE_DIGITS: [u8; AGE_SLOTS * AGE_WIDTH] = age_digits();

/// [`AGE_DIGITS`] as text (digits only, so always UTF-8).
static AGE_TEXT: &str = match std::str::from_utf8(&AGE_DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("the age table is ASCII digits"),
};

const fn age_digits() -> [u8; AGE_SLOTS * AGE_WIDTH] {
    let mut out = [b'0'; AGE_SLOTS * AGE_WIDTH];
    let mut n = 0;
    while n < AGE_SLOTS {
        let mut value = n;
        let mut i = AGE_WIDTH;
        while i > 0 {
            i -= 1;
            out[n * AGE_WIDTH + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        n += 1;
    }
    out
}

/// The `Age` value of a response that has been in the cache `age`.
pub(crate) fn age_value(age: Duration) -> HeaderValue {
    let secs = age.as_secs();
    if let Ok(n) = usize::try_from(secs)
        && n < AGE_SLOTS
    {
        let digits = match n {
            0..10 => 1,
            10..100 => 2,
            100..1000 => 3,
            _ => 4,
        };
        let end = (n + 1) * AGE_WIDTH;
        // `from_static` checks the bytes inline (no call); they are digits,
        // so its panic for invalid bytes cannot happen.
        if let Some(digits) = AGE_TEXT.get(end - digits..end) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(secs)
}

/// The headers a cache never stores or forwards from a stored response
/// (hop-by-hop, RFC 9110 §7.6.1) and the ones it recomputes.
pub(crate) fn strip_for_storage(headers: &mut HeaderMap) {
    let listed: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-cache",
    ] {
        headers.remove(name);
    }
    headers.remove(AGE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn judge(
        req: &[(&'static str, &'static str)],
        res: &[(&'static str, &'static str)],
    ) -> Option<Freshness> {
        storable(
            &Method::GET,
            &http::Uri::from_static("http://a/x"),
            StatusCode::OK,
            &headers(req),
            &headers(res),
            Duration::ZERO,
            None,
        )
    }

    #[test]
    fn directives_are_parsed_case_insensitively_with_quotes() {
        let d = Directives::parse(&headers(&[
            ("cache-control", "Max-Age=\"10\", no-cache"),
            ("cache-control", "max-stale, stale-if-error=5"),
        ]));
        assert_eq!(d.max_age, Some(10));
        assert!(d.no_cache);
        assert_eq!(d.max_stale, Some(u64::MAX));
        assert_eq!(d.stale_if_error, Some(5));
        assert!(Directives::parse(&headers(&[("pragma", "no-cache")])).no_cache);
    }

    #[test]
    fn shared_cache_rules() {
        assert_eq!(
            judge(&[], &[("cache-control", "max-age=10")])
                .unwrap()
                .lifetime,
            Duration::from_secs(10)
        );
        assert_eq!(
            judge(&[], &[("cache-control", "max-age=10, s-maxage=20")])
                .unwrap()
                .lifetime,
            Duration::from_secs(20)
        );
        assert!(judge(&[], &[("cache-control", "max-age=10, private")]).is_none());
        assert!(judge(&[], &[("cache-control", "no-store")]).is_none());
        assert!(judge(&[], &[("cache-control", "max-age=10, No-Store")]).is_none());
        // A `Surrogate-Control` lifetime replaces `no-store` (for clients).
        let surrogate = [
            ("cache-control", "no-store"),
            ("surrogate-control", "max-age=30"),
        ];
        assert_eq!(
            judge(&[], &surrogate).unwrap().lifetime,
            Duration::from_secs(30)
        );
        let other = [
            ("cache-control", "no-store"),
            ("surrogate-control", "max-age=30;other"),
        ];
        assert!(judge(&[], &other).is_none());
        assert!(
            judge(
                &[("cache-control", "no-store")],
                &[("cache-control", "max-age=10")]
            )
            .is_none()
        );
        assert!(
            judge(
                &[("authorization", "Bearer x")],
                &[("cache-control", "max-age=10")]
            )
            .is_none()
        );
        assert!(
            judge(
                &[("authorization", "Bearer x")],
                &[("cache-control", "max-age=10, public")]
            )
            .is_some()
        );
        assert_eq!(
            judge(&[], &[("cache-control", "max-age=10"), ("age", "4")])
                .unwrap()
                .initial_age,
            Duration::from_secs(4)
        );
    }

    #[test]
    fn other_final_statuses_need_explicit_freshness() {
        let judge_status = |status: u16, cc: &'static str| {
            storable(
                &Method::GET,
                &http::Uri::from_static("http://a/x"),
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                &headers(&[("cache-control", cc)]),
                Duration::ZERO,
                Some(Duration::from_secs(60)),
            )
            .map(|f| f.lifetime)
        };
        assert_eq!(judge_status(500, "max-age=5"), Some(Duration::from_secs(5)));
        assert_eq!(judge_status(500, "public"), None);
        assert_eq!(judge_status(599, "max-age=5, must-understand"), None);
        assert_eq!(judge_status(206, "max-age=5"), None);
        assert_eq!(judge_status(304, "max-age=5"), None);
    }

    #[test]
    fn odd_ages_and_directive_case() {
        for age in ["abc", "-1", "1.5", "0, 0"] {
            let f = judge(&[], &[("cache-control", "max-age=3600"), ("age", age)]).unwrap();
            assert_eq!(f.lifetime, Duration::ZERO, "{age}");
        }
        let f = judge(
            &[],
            &[
                ("cache-control", "max-age=3600"),
                ("age", "0"),
                ("age", "0"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, Duration::ZERO);
        let f = judge(&[], &[("cache-control", "Max-Age=3600, No-CaChE")]).unwrap();
        assert_eq!(f.lifetime, Duration::ZERO);
        assert!(judge(&[], &[("cache-control", "NO-STORE, max-age=5")]).is_none());
        let huge = storable(
            &Method::GET,
            &http::Uri::from_static("http://a/x"),
            StatusCode::OK,
            &HeaderMap::new(),
            &headers(&[
                ("cache-control", "max-age=18446744073709551615"),
                ("age", "18446744073709551615"),
            ]),
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(huge.initial_age, MAX_DELTA);
        assert_eq!(huge.lifetime, MAX_DELTA);
    }

    #[test]
    fn age_values_are_the_seconds_in_decimal() {
        for secs in [
            0,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            9999,
            10_000,
            86_400,
            u64::MAX,
        ] {
            assert_eq!(
                age_value(Duration::from_secs(secs)),
                secs.to_string().as_str(),
                "{secs}"
            );
        }
        assert_eq!(age_value(Duration::from_millis(1999)), "1");
    }

    #[test]
    fn the_route_ttl_applies_only_without_explicit_expiration() {
        let ttl = |res: &[(&'static str, &'static str)]| {
            storable(
                &Method::GET,
                &http::Uri::from_static("http://a/x"),
                StatusCode::OK,
                &HeaderMap::new(),
                &headers(res),
                Duration::ZERO,
                Some(Duration::from_secs(60)),
            )
            .map(|f| f.lifetime)
        };
        assert_eq!(ttl(&[]), Some(Duration::from_secs(60)));
        assert_eq!(
            ttl(&[("cache-control", "max-age=5")]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(ttl(&[("cache-control", "no-store")]), None);
        assert_eq!(ttl(&[("cache-control", "no-cache")]), Some(Duration::ZERO));
    }
}
