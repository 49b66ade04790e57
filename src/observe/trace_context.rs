use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::hex_into;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The `sampled` trace flag.
const SAMPLED: u8 = 0x01;
/// The trace flags this layer knows and forwards: `sampled` and Trace
/// Context Level 2's `random-trace-id`.
const KNOWN_FLAGS: u8 = 0x03;

/// The trace context of a request at this hop, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    flags: u8,
}

impl TraceContext {
    /// The trace-id, shared by every hop of the trace.
    #[must_use]
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace-id as 32 lower-case hex digits.
    #[must_use]
    pub fn trace_id_hex(&self) -> String {
        let mut out = [0u8; 32];
        hex_into(&self.trace_id, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// This hop's span-id: the parent-id the inner service sees.
    #[must_use]
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The caller's span-id, when the trace came in rather than started here.
    #[must_use]
    pub fn parent_id(&self) -> Option<[u8; 8]> {
        self.parent_id
    }

    /// Whether the caller marked the trace as sampled.
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` value for the inner service (version `00`).
    #[must_use]
    pub fn traceparent(&self) -> HeaderValue {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut text[3..35]);
        hex_into(&self.span_id, &mut text[36..52]);
        hex_into(&[self.flags], &mut text[53..55]);
        // Digits, hex and hyphens are always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

/// Propagates W3C Trace Context, accepting B3.
///
/// See the [module docs](crate::observe).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TraceContextLayer {
    _priv: (),
}

impl TraceContextLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = PropagateTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTraceContext { inner }
    }
}

/// The service of [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct PropagateTraceContext<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PropagateTraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let context = propagate(request.headers_mut());
        request.extensions_mut().insert(context);
        self.inner.call(request)
    }
}

/// Reads the incoming context, starts this hop's span, and rewrites the
/// trace headers for the inner service.
fn propagate(headers: &mut HeaderMap) -> TraceContext {
    let span_id = random_non_zero::<8>();
    // One pass over the names: most requests carry none of these headers,
    // and each look-up hashes its name.
    let (mut has_traceparent, mut has_tracestate, mut has_b3) = (false, false, false);
    for name in headers.keys() {
        let name = name.as_str();
        has_traceparent |= name == "traceparent";
        has_tracestate |= name == "tracestate";
        has_b3 |= name.starts_with("x-b3-");
    }
    let b3 = if has_b3 { B3::read(headers) } else { None };
    let traceparent = if has_traceparent {
        read_traceparent(headers)
    } else {
        None
    };
    let context = if let Some((trace_id, parent_id, flags)) = traceparent {
        TraceContext {
            trace_id,
            span_id,
            parent_id: Some(parent_id),
            flags,
        }
    } else {
        // Without a valid traceparent, tracestate must not be trusted.
        if has_tracestate {
            headers.remove(TRACESTATE);
        }
        match &b3 {
            Some(b3) => TraceContext {
                trace_id: b3.trace_id,
                span_id,
                parent_id: b3.span_id,
                flags: u8::from(b3.sampled.unwrap_or(false)),
            },
            None => TraceContext {
                trace_id: random_non_zero::<16>(),
                span_id,
                parent_id: None,
                flags: 0,
            },
        }
    };
    headers.insert(TRACEPARENT, context.traceparent());
    match b3 {
        Some(b3) if b3.trace_id == context.trace_id => {
            let mut span = [0u8; 16];
            hex_into(&context.span_id, &mut span);
            // Hex digits are always a valid header value.
            if let Ok(value) = HeaderValue::from_bytes(&span) {
                headers.insert(B3_SPAN_ID, value);
            }
            match b3.span_id_value {
                Some(parent) => headers.insert(B3_PARENT_SPAN_ID, parent),
                None => headers.remove(B3_PARENT_SPAN_ID),
            };
        }
        // B3 headers that are malformed or name another trace are dropped,
        // so the inner service never sees two disagreeing contexts.
        _ if has_b3 => {
            for name in [
                B3_TRACE_ID,
                B3_SPAN_ID,
                B3_PARENT_SPAN_ID,
                B3_SAMPLED,
                B3_FLAGS,
            ] {
                headers.remove(name);
            }
        }
        _ => {}
    }
    context
}

/// Parses the one `traceparent` header (W3C Trace Context §3.2).
///
/// Returns the trace-id, the caller's parent-id, and the flags this layer
/// forwards. Several `traceparent` headers are invalid.
fn read_traceparent(headers: &HeaderMap) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let v = value.as_bytes();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let [version] = parse_hex::<1>(&v[0..2])?;
    match version {
        0xff => return None,
        0x00 if v.len() != 55 => return None,
        // A later version may append fields after a hyphen; version 00
        // fields are read and version 00 is written.
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = parse_hex::<16>(&v[3..35]).filter(|id| *id != [0; 16])?;
    let parent_id = parse_hex::<8>(&v[36..52]).filter(|id| *id != [0; 8])?;
    let [flags] = parse_hex::<1>(&v[53..55])?;
    Some((trace_id, parent_id, flags & KNOWN_FLAGS))
}

/// The B3 multi-header context, when `x-b3-traceid` is valid.
#[derive(Clone)]
struct B3 {
    trace_id: [u8; 16],
    span_id: Option<[u8; 8]>,
    span_id_value: Option<HeaderValue>,
    sampled: Option<bool>,
}

impl B3 {
    fn read(headers: &HeaderMap) -> Option<Self> {
        let raw = headers.get(B3_TRACE_ID)?.as_bytes();
        let trace_id = match raw.len() {
            32 => parse_hex::<16>(raw)?,
            16 => {
                let low = parse_hex::<8>(raw)?;
                let mut id = [0u8; 16];
                id[8..].copy_from_slice(&low);
                id
            }
            _ => return None,
        };
        if trace_id == [0; 16] {
            return None;
        }
        let span_value = headers.get(B3_SPAN_ID);
        let span_id = span_value
            .and_then(|v| parse_hex::<8>(v.as_bytes()))
            .filter(|id| *id != [0; 8]);
        let debug = headers.get(B3_FLAGS).is_some_and(|v| v == "1");
        let sampled = match headers.get(B3_SAMPLED).map(HeaderValue::as_bytes) {
            _ if debug => Some(true),
            Some(b"1" | b"true") => Some(true),
            Some(b"0" | b"false") => Some(false),
            _ => None,
        };
        Some(Self {
            trace_id,
            span_id,
            span_id_value: span_id.and(span_value.cloned()),
            sampled,
        })
    }
}

/// Exactly `2 * N` lower-case hex digits.
fn parse_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// `N` random bytes, not all zero (an all-zero id is invalid).
fn random_non_zero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out == [0u8; N] {
        fastrand::fill(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn traceparent_grammar() {
        assert!(read_traceparent(&headers(&[("traceparent", VALID)])).is_some());
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let (_, _, flags) = read_traceparent(&headers(&[("traceparent", future)])).unwrap();
        assert_eq!(flags, 1);
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                read_traceparent(&headers(&[("traceparent", bad)])).is_none(),
                "{bad}"
            );
        }
        let twice = headers(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert!(read_traceparent(&twice).is_none());
    }

    #[test]
    fn unknown_flags_are_not_forwarded() {
        let map = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
        )]);
        assert_eq!(read_traceparent(&map).unwrap().2, 0x03);
    }

    #[test]
    fn b3_sixty_four_bit_ids_are_padded() {
        let map = headers(&[("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-sampled", "1")]);
        let b3 = B3::read(&map).unwrap();
        assert_eq!(&b3.trace_id[..8], &[0; 8]);
        assert_eq!(b3.sampled, Some(true));
        assert!(b3.span_id.is_none());
    }
}
