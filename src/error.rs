//! Refusals as responses: the [`Rejection`] extension and RFC 9457 problem documents.
//!
//! Every meshgate layer that refuses a request answers with an HTTP response,
//! never with a service error, so stacks stay `Error = Infallible`-friendly and
//! drop into axum unchanged. The response has an `application/problem+json`
//! body ([RFC 9457]) and carries a [`Rejection`] in its extensions, so an outer
//! layer (metrics, retry, circuit breaker) can tell who refused it and why
//! without parsing the body.
//!
//! ```
//! use http::StatusCode;
//! use meshgate::error::{Rejection, RejectionKind};
//!
//! let response = Rejection::new(RejectionKind::Timeout)
//!     .with_detail("the request did not complete within 250 ms")
//!     .into_response();
//! assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! let rejection = response.extensions().get::<Rejection>().unwrap();
//! assert_eq!(rejection.kind(), RejectionKind::Timeout);
//! ```
//!
//! [RFC 9457]: https://www.rfc-editor.org/rfc/rfc9457

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::BoxError;

/// The media type of a problem document (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request was refused or failed, as a closed vocabulary every layer shares.
///
/// The kind fixes the HTTP status of the answer and how
/// [`classify`](crate::classify) reads the outcome. New kinds arrive with the
/// layers that produce them, hence `#[non_exhaustive]`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The request ran past its time budget inside this process (504).
    Timeout,
    /// The request arrived with its time budget already spent; the inner
    /// service was not called (504).
    DeadlineExceeded,
    /// The upstream could not be reached: connection refused, DNS failure,
    /// TLS handshake failure (502). The request was never sent.
    UpstreamConnect,
    /// The upstream took too long to answer (504).
    UpstreamTimeout,
    /// The upstream closed or reset the connection before a complete
    /// response (502).
    UpstreamReset,
    /// No healthy endpoint was available to take the request (503).
    NoHealthyEndpoint,
    /// A circuit breaker is open (503).
    CircuitOpen,
    /// The service is shedding load (503).
    Overloaded,
    /// A rate limit or quota is exhausted (429).
    RateLimited,
    /// No credentials, or credentials that are not valid (401).
    Unauthenticated,
    /// Valid credentials without the permission the request needs (403).
    Forbidden,
    /// No route matches the request (404).
    NoRoute,
    /// A route matches the path but not the method (405).
    MethodNotAllowed,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The request headers are larger or more numerous than allowed (431).
    HeadersTooLarge,
    /// The request is malformed (400).
    BadRequest,
}

impl RejectionKind {
    /// The HTTP status a response for this kind carries.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Timeout | Self::DeadlineExceeded | Self::UpstreamTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::UpstreamConnect | Self::UpstreamReset => StatusCode::BAD_GATEWAY,
            Self::NoHealthyEndpoint | Self::CircuitOpen | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// A short, stable, lower-case name for logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::UpstreamConnect => "upstream_connect",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamReset => "upstream_reset",
            Self::NoHealthyEndpoint => "no_healthy_endpoint",
            Self::CircuitOpen => "circuit_open",
            Self::Overloaded => "overloaded",
            Self::RateLimited => "rate_limited",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadRequest => "bad_request",
        }
    }

    /// The gRPC status code a gRPC caller gets for this kind
    /// (`grpc-status`, per the gRPC status code mapping).
    #[must_use]
    pub const fn grpc_status(self) -> u8 {
        match self {
            Self::Timeout | Self::DeadlineExceeded | Self::UpstreamTimeout => 4,
            Self::Unauthenticated => 16,
            Self::Forbidden => 7,
            Self::RateLimited | Self::PayloadTooLarge | Self::HeadersTooLarge => 8,
            Self::NoRoute | Self::MethodNotAllowed => 12,
            Self::BadRequest => 3,
            Self::UpstreamConnect
            | Self::UpstreamReset
            | Self::NoHealthyEndpoint
            | Self::CircuitOpen
            | Self::Overloaded => 14,
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed record, in the response extensions, of which layer refused a
/// request and why.
///
/// The cause (for example the upstream client's connect error) is kept for
/// logs and classification and never written to the response body.
#[derive(Clone)]
pub struct Rejection {
    kind: RejectionKind,
    detail: Cow<'static, str>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Rejection {
    /// A rejection of `kind` with no detail beyond the status.
    #[must_use]
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            detail: Cow::Borrowed(""),
            cause: None,
        }
    }

    /// Sets the human-readable explanation written to the problem's
    /// `detail` member. It is sent to the client: never put internals here.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Keeps the underlying error for logs and classification. It is not
    /// sent to the client.
    #[must_use]
    pub fn with_cause(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(Arc::from(cause.into()));
        self
    }

    /// What kind of rejection this is.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The explanation sent to the client, empty when there is none.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The underlying error, if one was kept.
    #[must_use]
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// The problem document this rejection is answered with.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let problem = Problem::new(self.kind.status());
        if self.detail.is_empty() {
            problem
        } else {
            problem.with_detail(self.detail.clone())
        }
    }

    /// The response a layer answers with in place of its inner service's:
    /// [`into_response`](Self::into_response) with the body wrapped as a
    /// [`ResponseBody::local`](crate::body::ResponseBody::local).
    #[must_use]
    pub fn into_layer_response<B>(self) -> Response<crate::body::ResponseBody<B>> {
        self.into_response().map(crate::body::ResponseBody::local)
    }

    /// The answer for a request: a trailers-only gRPC response when the
    /// request is gRPC (see [`is_grpc`]), else the problem+json response;
    /// either way as a layer's [`ResponseBody::local`](crate::body::ResponseBody::local).
    #[must_use]
    pub fn into_layer_response_for<B>(self, grpc: bool) -> Response<crate::body::ResponseBody<B>> {
        if grpc {
            self.into_grpc_response()
                .map(crate::body::ResponseBody::local)
        } else {
            self.into_layer_response()
        }
    }

    /// Builds a trailers-only gRPC response: HTTP 200 with
    /// `content-type: application/grpc`, `grpc-status` from
    /// [`RejectionKind::grpc_status`] and the detail as `grpc-message`
    /// (percent-encoded), and this rejection in its extensions. gRPC clients
    /// read these instead of an HTTP error status.
    #[must_use]
    pub fn into_grpc_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.kind.grpc_status())),
        );
        let message = if self.detail.is_empty() {
            self.kind.status().canonical_reason().unwrap_or("error")
        } else {
            &self.detail
        };
        // Percent-encoding leaves only visible ASCII and spaces.
        if let Ok(value) = HeaderValue::from_str(&percent_encode_grpc_message(message)) {
            headers.insert("grpc-message", value);
        }
        response.extensions_mut().insert(self);
        response
    }

    /// Builds the problem+json response, with this rejection in its
    /// extensions. Layers add protocol headers (`Retry-After`,
    /// `WWW-Authenticate`, …) to the result.
    #[must_use]
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = self.problem().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("cause", &self.cause.as_ref().map(|c| c.to_string()))
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

/// An RFC 9457 problem document: `{"type","title","status","detail"}`.
///
/// `type` defaults to `about:blank`, in which case RFC 9457 §4.2.1 asks that
/// `title` be the status's reason phrase, which is the default title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    type_uri: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: Option<Cow<'static, str>>,
    instance: Option<Cow<'static, str>>,
}

impl Problem {
    /// A problem of type `about:blank` for `status`, titled with its reason phrase.
    #[must_use]
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            type_uri: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            detail: None,
            instance: None,
        }
    }

    /// Sets the `type` URI. Default: `about:blank`.
    #[must_use]
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets the `title`. Default: the status's reason phrase.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the `detail`: an explanation specific to this occurrence.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the `instance` URI reference that identifies this occurrence.
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<Cow<'static, str>>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The status of the problem.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The document as JSON bytes.
    #[must_use]
    pub fn to_json(&self) -> Bytes {
        let mut out = String::with_capacity(
            64 + self.type_uri.len()
                + self.title.len()
                + self.detail.as_ref().map_or(0, |d| d.len() + 12),
        );
        out.push_str("{\"type\":");
        push_json_string(&mut out, &self.type_uri);
        out.push_str(",\"title\":");
        push_json_string(&mut out, &self.title);
        out.push_str(",\"status\":");
        out.push_str(self.status.as_str());
        if let Some(detail) = &self.detail {
            out.push_str(",\"detail\":");
            push_json_string(&mut out, detail);
        }
        if let Some(instance) = &self.instance {
            out.push_str(",\"instance\":");
            push_json_string(&mut out, instance);
        }
        out.push('}');
        Bytes::from(out)
    }

    /// The response: the status, `content-type: application/problem+json`
    /// and the JSON body (its length is known, so servers send
    /// `content-length`).
    #[must_use]
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.to_json()));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// Whether a request is gRPC: its `content-type` is `application/grpc` or
/// `application/grpc+…` / `application/grpc;…`.
#[must_use]
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|ct| {
        let ct = ct.as_bytes();
        ct.starts_with(b"application/grpc") && matches!(ct.get(16), None | Some(b'+' | b';'))
    })
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode_grpc_message(message: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Appends `s` as a JSON string literal (RFC 8259 §7).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                use std::fmt::Write as _;
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn problem_document_has_the_rfc_9457_members() {
        let response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .with_detail("quota \"minute\" exhausted\n\u{1}")
            .with_instance("/orders/1")
            .into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let json = body_json(response).await;
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "quota \"minute\" exhausted\n\u{1}",
                "instance": "/orders/1",
            })
        );
    }

    #[tokio::test]
    async fn rejection_response_carries_the_extension_and_hides_the_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "10.0.0.7:8080");
        let response = Rejection::new(RejectionKind::UpstreamConnect)
            .with_detail("the upstream could not be reached")
            .with_cause(cause)
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let rejection = response.extensions().get::<Rejection>().unwrap().clone();
        assert_eq!(rejection.kind(), RejectionKind::UpstreamConnect);
        assert!(rejection.cause().unwrap().to_string().contains("10.0.0.7"));
        let json = body_json(response).await;
        assert_eq!(json["detail"], "the upstream could not be reached");
        assert!(!json.to_string().contains("10.0.0.7"));
    }

    #[test]
    fn grpc_requests_get_a_trailers_only_grpc_status() {
        let response = Rejection::new(RejectionKind::Timeout)
            .with_detail("50% of the budget, then é")
            .into_grpc_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "4");
        assert_eq!(
            response.headers()["grpc-message"],
            "50%25 of the budget, then %C3%A9"
        );
        assert_eq!(
            response.extensions().get::<Rejection>().unwrap().kind(),
            RejectionKind::Timeout
        );
        assert_eq!(RejectionKind::CircuitOpen.grpc_status(), 14);
        assert_eq!(RejectionKind::RateLimited.grpc_status(), 8);
        assert_eq!(RejectionKind::Unauthenticated.grpc_status(), 16);
    }

    #[test]
    fn grpc_content_types() {
        let mut headers = http::HeaderMap::new();
        assert!(!is_grpc(&headers));
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&headers), grpc, "{ct}");
        }
    }

    #[test]
    fn every_kind_maps_to_an_error_status() {
        use RejectionKind::*;
        for kind in [
            Timeout,
            DeadlineExceeded,
            UpstreamConnect,
            UpstreamTimeout,
            UpstreamReset,
            NoHealthyEndpoint,
            CircuitOpen,
            Overloaded,
            RateLimited,
            Unauthenticated,
            Forbidden,
            NoRoute,
            MethodNotAllowed,
            PayloadTooLarge,
            HeadersTooLarge,
            BadRequest,
        ] {
            let status = kind.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind}"
            );
            assert!(Rejection::new(kind).problem().to_json().len() > 40);
        }
    }
}
