//! The sidecar's configuration: plain typed builders, validated once by
//! [`Sidecar::new`](super::Sidecar::new).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::authz::AuthzRule;
use crate::auth::peer_identity::PeerIdentityLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::gateway::ServerConfig;
use crate::load_balancer::{OutlierDetection, Strategy};
use crate::retry::RetryLayer;
use crate::tls::{TlsFiles, TlsMaterial};

/// How the inbound listener treats peers, as Istio's `PeerAuthentication`
/// modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MtlsMode {
    /// Every connection must be TLS with a client certificate that chains
    /// to the trust bundle; anything else fails the handshake (plain text
    /// included). The default.
    #[default]
    Strict,
    /// For a migration: plain-text connections are accepted beside TLS on
    /// the same port (told apart by their first byte), and so are TLS
    /// clients without a certificate. Neither has a peer identity, so
    /// rules on `peers` do not match them. A certificate that is presented
    /// must still be valid.
    Permissive,
}

/// Where the workload's certificate chain and key, and the trust bundle
/// peers' certificates must chain to, come from.
#[derive(Clone, Default)]
pub(crate) enum WorkloadTls {
    /// Not given yet.
    #[default]
    Missing,
    /// PEM given in code (the trust bundle may still be missing).
    Pem {
        chain_pem: Vec<u8>,
        key_pem: Vec<u8>,
        trust_pem: Vec<u8>,
    },
    /// Files, reloaded when they change.
    Files { files: TlsFiles, watch: Duration },
    /// Material the caller rotates itself.
    Material(TlsMaterial),
}

impl fmt::Debug for WorkloadTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Pem {
                chain_pem,
                trust_pem,
                ..
            } => f
                .debug_struct("Pem")
                .field("chain_pem_bytes", &chain_pem.len())
                .field("trust_pem_bytes", &trust_pem.len())
                .finish_non_exhaustive(),
            Self::Files { files, watch } => f
                .debug_struct("Files")
                .field("files", files)
                .field("watch", watch)
                .finish(),
            Self::Material(material) => f.debug_tuple("Material").field(material).finish(),
        }
    }
}

/// A service the local application calls through the outbound listener,
/// by the name it uses as `Host` (`reviews.shop.svc`), with the peer
/// sidecars that serve it and how calls to it are made resilient.
///
/// Each service gets its own timeout, retry layer (and budget), optional
/// circuit breaker, load balancer (optional outlier detection) and
/// connection pool; nothing is shared between services.
#[derive(Debug, Clone)]
#[must_use]
pub struct OutboundService {
    pub(crate) name: String,
    pub(crate) endpoints: Vec<String>,
    pub(crate) expected_identities: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) circuit_breaker: Option<CircuitBreakerLayer>,
    pub(crate) outlier_detection: Option<OutlierDetection>,
    pub(crate) balancing: Strategy,
    pub(crate) connect_timeout: Duration,
}

impl OutboundService {
    /// The service called by this host name (the `Host` header or the
    /// authority the application sends; matched case-insensitively, the
    /// port ignored). Its peers' certificates must carry this name as a
    /// DNS SAN, unless [`expected_identities`](Self::expected_identities)
    /// names their SPIFFE IDs.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoints: Vec::new(),
            expected_identities: Vec::new(),
            timeout: Duration::from_secs(15),
            retry: Some(RetryLayer::new()),
            circuit_breaker: None,
            outlier_detection: None,
            balancing: Strategy::LeastRequest,
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// Adds a peer sidecar's inbound listener, `host:port`
    /// (`10.0.3.7:15006`); the sidecar reaches it over mTLS.
    ///
    /// Default: none; at least one is required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Adds several peers (see [`endpoint`](Self::endpoint)).
    pub fn endpoints<I: IntoIterator<Item = S>, S: Into<String>>(mut self, endpoints: I) -> Self {
        self.endpoints.extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// The SPIFFE IDs the peers may present (Istio's secure naming): exact
    /// IDs, or prefixes ending in `/*` (`spiffe://mesh.test/ns/shop/*`).
    /// With any, a peer is accepted by its certificate's SPIFFE ID (chained
    /// to the trust bundle), not by a DNS name; a peer with another
    /// identity is not called (`502`).
    ///
    /// Default: none: the peers' certificates must carry the service name
    /// as a DNS SAN.
    pub fn expected_identities<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        identities: I,
    ) -> Self {
        self.expected_identities
            .extend(identities.into_iter().map(Into::into));
        self
    }

    /// The whole call's budget, retries included (504 past it).
    ///
    /// Default: 15 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry policy and budget, or `None` for no retries.
    ///
    /// Default: [`RetryLayer::new`]: 3 attempts on gateway errors, connect
    /// failures and resets, of idempotent requests, within a budget of 20 %
    /// plus 10 per second.
    pub fn retry(mut self, retry: impl Into<Option<RetryLayer>>) -> Self {
        self.retry = retry.into();
        self
    }

    /// A circuit breaker over the whole service (per-endpoint ejection is
    /// [`outlier_detection`](Self::outlier_detection)).
    ///
    /// Default: none, as Istio without a `DestinationRule`.
    pub fn circuit_breaker(mut self, breaker: impl Into<Option<CircuitBreakerLayer>>) -> Self {
        self.circuit_breaker = breaker.into();
        self
    }

    /// Ejects endpoints that fail in a row.
    ///
    /// Default: none.
    pub fn outlier_detection(mut self, outlier: impl Into<Option<OutlierDetection>>) -> Self {
        self.outlier_detection = outlier.into();
        self
    }

    /// How the endpoint of each call is picked.
    ///
    /// Default: [`Strategy::LeastRequest`] (Istio's default).
    pub fn balancing(mut self, strategy: Strategy) -> Self {
        self.balancing = strategy;
        self
    }

    /// The TCP connect and TLS handshake budget per connection.
    ///
    /// Default: 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The service name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Everything a [`Sidecar`](super::Sidecar) is built from. Every setting
/// has a documented default except the two that describe the workload:
/// its certificate, key and trust bundle
/// ([`certificate_pem`](Self::certificate_pem) with
/// [`trust_bundle_pem`](Self::trust_bundle_pem), or rotating:
/// [`tls_files`](Self::tls_files), [`tls_material`](Self::tls_material))
/// and the local application's address ([`app_addr`](Self::app_addr)).
///
/// This is the Rust builder; a YAML form of the sidecar's configuration is
/// not part of this crate yet.
#[derive(Debug, Clone)]
#[must_use]
pub struct SidecarConfig {
    pub(crate) service_name: String,
    pub(crate) tls: WorkloadTls,
    pub(crate) app_addr: Option<SocketAddr>,
    pub(crate) inbound_addr: SocketAddr,
    pub(crate) outbound_addr: SocketAddr,
    pub(crate) admin_addr: SocketAddr,
    pub(crate) allow_non_loopback_outbound: bool,
    pub(crate) mode: MtlsMode,
    pub(crate) authorization: Vec<AuthzRule>,
    pub(crate) inbound_timeout: Duration,
    pub(crate) peer_identity: PeerIdentityLayer,
    pub(crate) services: Vec<OutboundService>,
    pub(crate) server: ServerConfig,
    pub(crate) metrics: bool,
    pub(crate) max_peer_labels: usize,
    pub(crate) access_log: bool,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            service_name: String::new(),
            tls: WorkloadTls::default(),
            app_addr: None,
            inbound_addr: SocketAddr::from(([0, 0, 0, 0], 15006)),
            outbound_addr: SocketAddr::from(([127, 0, 0, 1], 15001)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 15020)),
            allow_non_loopback_outbound: false,
            mode: MtlsMode::Strict,
            authorization: Vec::new(),
            inbound_timeout: Duration::from_secs(30),
            peer_identity: PeerIdentityLayer::new(),
            services: Vec::new(),
            server: ServerConfig::new(),
            metrics: true,
            max_peer_labels: 100,
            access_log: true,
        }
    }
}

impl SidecarConfig {
    /// The defaults (see each method).
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of the service this sidecar fronts: the `service` label of
    /// its inbound metrics.
    ///
    /// Default: empty.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The workload's certificate chain (leaf first) and private key, PEM:
    /// presented to peers on both directions. The leaf should carry the
    /// workload's SPIFFE ID as its one URI SAN and, for peers that check
    /// the service name instead of the SPIFFE ID, the service name as a
    /// DNS SAN; it is used for both TLS server and client authentication.
    /// Fixed for the sidecar's life: use [`tls_files`](Self::tls_files)
    /// or [`tls_material`](Self::tls_material) to rotate.
    ///
    /// Default: none; this, `tls_files` or `tls_material` is required.
    pub fn certificate_pem(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        let trust_pem = match std::mem::take(&mut self.tls) {
            WorkloadTls::Pem { trust_pem, .. } => trust_pem,
            _ => Vec::new(),
        };
        self.tls = WorkloadTls::Pem {
            chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            trust_pem,
        };
        self
    }

    /// The CA certificates (PEM) peers' certificates must chain to, both
    /// ways, with [`certificate_pem`](Self::certificate_pem).
    ///
    /// Default: none; required with `certificate_pem`.
    pub fn trust_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let (chain_pem, key_pem) = match std::mem::take(&mut self.tls) {
            WorkloadTls::Pem {
                chain_pem, key_pem, ..
            } => (chain_pem, key_pem),
            _ => (Vec::new(), Vec::new()),
        };
        self.tls = WorkloadTls::Pem {
            chain_pem,
            key_pem,
            trust_pem: pem.into(),
        };
        self
    }

    /// The workload's certificate chain, key and trust bundle from PEM
    /// files (as a SPIFFE agent or cert-manager writes them), re-read
    /// every `watch` interval: when they change, new handshakes on both
    /// directions use the new material while established connections go
    /// on. A set that does not validate (a certificate written before its
    /// key) is logged and retried at the next interval, the old material
    /// kept. [`BoundSidecar::tls`](super::BoundSidecar::tls) reloads at
    /// once (on a signal, say).
    ///
    /// Default: none; this, `certificate_pem` or `tls_material` is
    /// required. A `watch` under 1 s is raised to 1 s.
    pub fn tls_files(mut self, files: TlsFiles, watch: Duration) -> Self {
        self.tls = WorkloadTls::Files {
            files,
            watch: watch.max(Duration::from_secs(1)),
        };
        self
    }

    /// Material the caller owns and rotates (with
    /// [`TlsMaterial::replace_pem`], say, from a SPIFFE Workload API
    /// client); the sidecar reads the current certificate and bundle at
    /// each handshake.
    ///
    /// Default: none; this, `certificate_pem` or `tls_files` is required.
    pub fn tls_material(mut self, material: TlsMaterial) -> Self {
        self.tls = WorkloadTls::Material(material);
        self
    }

    /// Where the local application listens; the inbound listener forwards
    /// to it over plain HTTP.
    ///
    /// Default: none; required.
    pub fn app_addr(mut self, addr: SocketAddr) -> Self {
        self.app_addr = Some(addr);
        self
    }

    /// The inbound (mTLS) listener's address.
    ///
    /// Default: `0.0.0.0:15006` (Istio's inbound port).
    pub fn inbound_addr(mut self, addr: SocketAddr) -> Self {
        self.inbound_addr = addr;
        self
    }

    /// The outbound (plain HTTP, from the application) listener's address.
    /// It must be a loopback address unless
    /// [`allow_non_loopback_outbound`](Self::allow_non_loopback_outbound):
    /// anyone who can reach it makes calls with this workload's identity.
    ///
    /// Default: `127.0.0.1:15001` (Istio's outbound port).
    pub fn outbound_addr(mut self, addr: SocketAddr) -> Self {
        self.outbound_addr = addr;
        self
    }

    /// Lets the outbound listener bind a non-loopback address (a shared
    /// network namespace that is not reachable from elsewhere).
    ///
    /// Default: `false`.
    pub fn allow_non_loopback_outbound(mut self, allow: bool) -> Self {
        self.allow_non_loopback_outbound = allow;
        self
    }

    /// The admin listener's address (`/healthz`, `/readyz`, `/metrics`,
    /// `/admin/status`).
    ///
    /// Default: `0.0.0.0:15020` (Istio's merged health/metrics port), so a
    /// kubelet and Prometheus can reach it.
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin_addr = addr;
        self
    }

    /// STRICT or PERMISSIVE (see [`MtlsMode`]).
    ///
    /// Default: [`MtlsMode::Strict`].
    pub fn mode(mut self, mode: MtlsMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds authorization rules for inbound calls (by peer identity with
    /// [`AuthzRule::peers`], methods, paths, headers), decided as Istio's
    /// `AuthorizationPolicy`: a matching DENY refuses, and when there is any
    /// ALLOW rule a call must match one. Refusals are `403`.
    ///
    /// Default: none (every peer the mTLS mode admits is allowed).
    pub fn authorization<I: IntoIterator<Item = AuthzRule>>(mut self, rules: I) -> Self {
        self.authorization.extend(rules);
        self
    }

    /// The budget of an inbound call to the application (504 past it).
    ///
    /// Default: 30 s.
    pub fn inbound_timeout(mut self, timeout: Duration) -> Self {
        self.inbound_timeout = timeout;
        self
    }

    /// How the peer identity reaches the application (header name, whether
    /// `x-forwarded-client-cert` is stripped).
    ///
    /// Default: [`PeerIdentityLayer::new`]: `x-meshgate-peer-identity`,
    /// `x-forwarded-client-cert` stripped.
    pub fn peer_identity(mut self, layer: PeerIdentityLayer) -> Self {
        self.peer_identity = layer;
        self
    }

    /// Adds a service the application may call through the outbound
    /// listener. A call to any other host is answered `404`.
    ///
    /// Default: none.
    pub fn outbound_service(mut self, service: OutboundService) -> Self {
        self.services.push(service);
        self
    }

    /// The limits and timeouts of the inbound and outbound listeners
    /// (header sizes, connections, drain time); their TLS is set by the
    /// sidecar.
    ///
    /// Default: [`ServerConfig::new`].
    pub fn server(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Whether request metrics are recorded (and `/metrics` served).
    ///
    /// Default: `true`.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// The most distinct `peer_identity` label values of the inbound
    /// metrics; calls from further identities are counted as `other`.
    ///
    /// Default: 100. At least 1.
    pub fn max_peer_labels(mut self, max: usize) -> Self {
        self.max_peer_labels = max.max(1);
        self
    }

    /// Whether each call is logged (target `meshgate::access`).
    ///
    /// Default: `true`.
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }
}

/// Why a [`SidecarConfig`] could not be turned into a sidecar: each problem
/// starts with the field it is about (`outbound[1].endpoints[0]: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarError(pub(crate) Vec<String>);

impl SidecarError {
    /// The problems, one per entry, each starting with the field's name.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for SidecarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for SidecarError {}
