//! The gateway's own side: listeners, limits, admin listener, request id,
//! trace context, access log, metrics and the Redis connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::secret::Secret;
use super::units::{ByteSize, duration};

/// A listener for client traffic.
///
/// ```yaml
/// listeners:
///   - name: public
///     address: 0.0.0.0:8080
///     protocols: [http1, h2c]
///     limits: { max_request_body: 1MiB }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Name in logs and metrics; unique. Default: `http` for the first
    /// listener, `http-N` for the one at index N.
    #[serde(default)]
    pub name: String,
    /// The address to bind, `ip:port`. Required.
    pub address: SocketAddr,
    /// Protocols accepted on the connection. Default: `[http1, h2c]`
    /// (HTTP/2 with prior knowledge, detected by its preface).
    #[serde(default = "Protocol::both")]
    pub protocols: Vec<Protocol>,
    /// Limits that protect the gateway from oversized or slow clients.
    #[serde(default)]
    pub limits: Limits,
    /// How long a graceful shutdown waits for in-flight requests before
    /// closing the remaining connections. Default: `30s`.
    #[serde(default = "Listener::default_shutdown", with = "duration")]
    pub shutdown_timeout: Duration,
    /// TLS on this listener (needs the `tls` cargo feature): a certificate
    /// chain and key, ALPN `h2` / `http/1.1`, optionally client
    /// certificates. Default: none (cleartext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// TLS on a listener: PEM files read when the gateway is built.
///
/// ```yaml
/// tls:
///   certificate: /etc/meshgate/tls/chain.pem
///   key: /etc/meshgate/tls/key.pem
///   client_ca: /etc/meshgate/tls/clients-ca.pem   # mutual TLS
///   client_auth: required                         # or optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain (leaf first), PEM. Required.
    pub certificate: std::path::PathBuf,
    /// The private key, PEM. Required.
    pub key: std::path::PathBuf,
    /// CA certificates that client certificates must chain to; set it to
    /// ask clients for certificates. Default: none.
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
    /// With `client_ca`: whether a client without a certificate is refused
    /// (`required`) or served (`optional`). Default: `required`.
    #[serde(default)]
    pub client_auth: ClientAuthMode,
}

/// Whether a TLS listener with a `client_ca` requires client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// A client without a valid certificate fails the handshake.
    #[default]
    Required,
    /// A client may connect without a certificate.
    Optional,
}

impl Listener {
    fn default_shutdown() -> Duration {
        Duration::from_secs(30)
    }

    /// The listener used when the file has no `listeners`:
    /// `127.0.0.1:8080`, HTTP/1.1 and h2c, default limits.
    pub fn default_listener() -> Self {
        Listener {
            name: "http".to_owned(),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            protocols: Protocol::both(),
            limits: Limits::default(),
            shutdown_timeout: Self::default_shutdown(),
            tls: None,
        }
    }
}

/// An HTTP protocol on a connection: `http1` or `h2c` (HTTP/2 over
/// cleartext with prior knowledge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0).
    #[default]
    Http1,
    /// HTTP/2 over cleartext, prior knowledge.
    H2c,
}

impl Protocol {
    fn both() -> Vec<Protocol> {
        vec![Protocol::Http1, Protocol::H2c]
    }
}

/// Limits on a listener's connections and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line and headers); larger gets `431`.
    /// Default: `64KiB`.
    pub max_header_bytes: ByteSize,
    /// Most request headers; more gets `431`. Default: `100`.
    pub max_headers: usize,
    /// Largest request body; larger gets `413`. Default: `10MiB`.
    pub max_request_body: ByteSize,
    /// Time a client has to send the complete request head (slowloris
    /// protection). Default: `10s`.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Most open client connections; past it new connections wait in the
    /// accept queue. Default: `10000`.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: ByteSize::kib(64),
            max_headers: 100,
            max_request_body: ByteSize::mib(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/status`.
/// Keep it on loopback or a private network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Whether the admin listener runs. Default: `true`.
    pub enabled: bool,
    /// The address to bind. Default: `127.0.0.1:9901`.
    pub address: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            enabled: true,
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 9901)),
        }
    }
}

/// The access log, one line per request through `tracing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// Whether requests are logged. Default: `true`.
    pub enabled: bool,
    /// `text` or `json`. Default: `text`.
    pub format: AccessLogFormat,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            enabled: true,
            format: AccessLogFormat::Text,
        }
    }
}

/// The request id every request is given: kept from the client when it
/// sends one valid id, else generated (a UUID v4); forwarded upstream in
/// `header` and echoed on the response (see
/// [`observe`](crate::observe)). Transform templates read it as
/// `${request_id}`, the access log as `request_id`.
///
/// ```yaml
/// request_id: { header: x-correlation-id }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdHeader {
    /// Whether requests are given an id. Default: `true`. Off, nothing is
    /// added or echoed, and a transform template that reads
    /// `${request_id}` is refused at load.
    pub enabled: bool,
    /// The header that carries the id. Default: `x-request-id`. Framing,
    /// hop-by-hop, `Host`, `Content-Type` and trace context headers are
    /// refused.
    #[serde(deserialize_with = "super::fields::header_name")]
    pub header: HeaderName,
}

impl Default for RequestIdHeader {
    fn default() -> Self {
        RequestIdHeader {
            enabled: true,
            header: HeaderName::from_static("x-request-id"),
        }
    }
}

/// W3C Trace Context propagation: the gateway is a hop of the caller's
/// trace (B3 headers accepted), or starts one, and sends `traceparent` and
/// `tracestate` upstream (see [`observe`](crate::observe)).
///
/// ```yaml
/// trace_context: { enabled: false }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceContextHeaders {
    /// Whether trace context is propagated. Default: `true`. Off, the
    /// client's trace headers go upstream as they came.
    pub enabled: bool,
}

impl Default for TraceContextHeaders {
    fn default() -> Self {
        TraceContextHeaders { enabled: true }
    }
}

/// The format of access log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// Human-readable `key=value` text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Prometheus metrics, served on the admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Whether metrics are recorded and served. Default: `true`.
    pub enabled: bool,
    /// Path on the admin listener. Default: `/metrics`.
    pub path: String,
    /// Prefix of every metric name. Default: `meshgate`.
    pub prefix: String,
    /// Upper bounds, in seconds, of the latency histogram buckets; strictly
    /// increasing. Default: 5 ms to 10 s, Prometheus' usual set.
    pub latency_buckets: Vec<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            path: "/metrics".to_owned(),
            prefix: "meshgate".to_owned(),
            latency_buckets: vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        }
    }
}

/// The Redis server that cluster-wide rate limits share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// `redis://[:password@]host[:port][/db]`, `rediss://…` or
    /// `unix://…`; may be or contain `${VAR}` (e.g. `${REDIS_URL}`). A
    /// secret: it may hold a password.
    pub url: Secret,
    /// Time to connect. Default: `1s`.
    pub connect_timeout: Duration,
    /// Time one command may take before the configured Redis-down behaviour
    /// applies. Default: `100ms`.
    pub command_timeout: Duration,
    /// Prefix of every key the gateway writes. Default: `meshgate:`.
    pub key_prefix: String,
}
