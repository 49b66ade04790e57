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

    /// Whether the upstream was involved at all: `true` for the kinds that
    /// describe a failure of the upstream or of the path to it.
    #[must_use]
    pub const fn is_upstream_failure(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::UpstreamConnect | Self::UpstreamTimeout | Self::UpstreamReset
        )
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
