//! The sidecar assembly: an inbound and an outbound mesh proxy with mutual
//! TLS, peer identity and authorization, built from the same layers as the
//! gateway — what Envoy does beside a workload under Istio, or
//! linkerd2-proxy under Linkerd.
//!
//! The assembly holds no request logic: [`Sidecar::new`] validates a
//! [`SidecarConfig`] (plain Rust builders; a YAML form is out of scope for
//! now) and stacks layers; [`Sidecar::bind`] binds three listeners on the
//! gateway's [`Server`](crate::gateway::Server); [`BoundSidecar::serve`]
//! serves until shutdown, then drains.
//!
//! ```text
//!                    ┌──────────────────────── pod / host ─────────────────────────┐
//!  peer sidecar ═mTLS═► INBOUND (0.0.0.0:15006, TLS, STRICT | PERMISSIVE)          │
//!                    │   request id → trace context → metrics{direction="inbound", │
//!                    │   peer_identity} → access log → peer identity → authz (403) │
//!                    │   → timeout (504) → proxy ─── plain HTTP ──► application    │
//!                    │                                                 │           │
//!                    │ OUTBOUND (127.0.0.1:15001, plain HTTP) ◄────────┘           │
//!                    │   request id → trace context → metrics{direction="outbound",│
//!                    │   service} → access log → route by Host (404) → timeout     │
//!                    │   → retry (budget) → circuit breaker (503) → load balancer  │
//!                    │   (outlier ejection) → proxy ═mTLS═► peer sidecar's inbound │
//!                    │                                                             │
//!                    │ ADMIN (0.0.0.0:15020): /healthz /readyz /metrics            │
//!                    │   /admin/status                                             │
//!                    └─────────────────────────────────────────────────────────────┘
//! ```
//!
//! # Inbound
//!
//! Terminates mTLS with the workload's certificate; peers' certificates
//! must chain to the trust bundle. The [`MtlsMode`]:
//!
//! * **STRICT** (default): a client certificate is required; plain text
//!   and certificates from another CA fail the handshake.
//! * **PERMISSIVE** (for a migration): plain-text connections are served
//!   on the same port (told apart by their first byte), and so are TLS
//!   clients without a certificate; neither has a peer identity, so rules
//!   on peers do not match them.
//!
//! The peer identity is the SPIFFE ID of the certificate's URI SAN
//! (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`), put into the request's
//! extensions by [`PeerIdentityLayer`](crate::auth::peer_identity::PeerIdentityLayer)
//! for the [authorization rules](SidecarConfig::authorization)
//! ([`AuthzRule::peers`](crate::auth::authz::AuthzRule::peers), Istio's
//! `principals`).
//!
//! # Outbound
//!
//! The application sends plain HTTP to the outbound listener with the
//! service's name as `Host` (`http://reviews.shop.svc/…`, proxy-style
//! absolute URIs work too). The listener must be on loopback unless
//! [allowed](SidecarConfig::allow_non_loopback_outbound): whoever reaches
//! it calls peers with this workload's identity. The host (case-insensitive,
//! port ignored) picks an [`OutboundService`]; a host that names none is
//! answered `404` problem+json ("no route"), as Envoy answers a request no
//! route matches; nothing internal is named. The service's peers are
//! reached over mTLS (HTTP/2 when they offer it): the workload certificate
//! as client certificate, the trust bundle as roots, and the peer's
//! certificate must carry one of the service's
//! [expected SPIFFE IDs](OutboundService::expected_identities) (Istio's
//! secure naming) or, when it names none, the service name as a DNS SAN.
//!
//! # Certificate rotation
//!
//! The workload's certificate, key and trust bundle are a
//! [`TlsMaterial`](crate::tls::TlsMaterial) read by both directions at
//! each new handshake. Given as files
//! ([`tls_files`](SidecarConfig::tls_files)), they are re-read at an
//! interval and swapped in when they change and validate; given as
//! material ([`tls_material`](SidecarConfig::tls_material)), the caller
//! swaps them. [`BoundSidecar::tls`] reloads at once (on SIGHUP, say).
//! New handshakes use the new material; established connections, and the
//! requests on them, go on until they close.
//!
//! # Headers
//!
//! | header | where | what happens |
//! | --- | --- | --- |
//! | `x-request-id` | both | kept if valid, else generated; passed on and echoed |
//! | `traceparent`, `tracestate` (B3 `x-b3-*` accepted) | both | a new span per hop, passed on |
//! | `x-meshgate-peer-identity` (configurable) | inbound | **always removed**, then set to the peer's SPIFFE ID when there is one |
//! | `x-forwarded-client-cert` | inbound | removed (by default) |
//! | `X-Forwarded-For`, `-Proto` (`https` over TLS, `http` over PERMISSIVE plain text), `-Host` | inbound | set for the application, incoming values replaced |
//! | `Via` | inbound | `1.1 meshgate` appended |
//! | `X-Forwarded-*`, `Via` | outbound | not added (the peer's inbound sets them) |
//! | hop-by-hop (`Connection`, …) | both | removed |
//!
//! # Metrics and admin
//!
//! `meshgate_requests_total`, `meshgate_request_duration_seconds`,
//! `meshgate_requests_in_flight` and `meshgate_rejections_total` with
//! `direction="inbound"` and a `peer_identity` label (at most
//! [`max_peer_labels`](SidecarConfig::max_peer_labels) identities, then
//! `other`; `unknown` without one), or `direction="outbound"` and the
//! `service` label. The admin listener serves `/healthz`, `/readyz` (ready
//! once serving), `/metrics` (Prometheus, with each service's endpoint,
//! breaker and retry figures) and `/admin/status`, the gateway's own
//! admin endpoints.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use meshgate::auth::authz::AuthzRule;
//! use meshgate::circuit_breaker::CircuitBreakerLayer;
//! use meshgate::sidecar::{OutboundService, Sidecar, SidecarConfig};
//! use meshgate::tls::TlsFiles;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SidecarConfig::new()
//!     .service_name("reviews")
//!     // Re-read every 5 s: a SPIFFE agent or cert-manager rotates them.
//!     .tls_files(
//!         TlsFiles::new("/var/run/mesh/svid.pem", "/var/run/mesh/svid.key", "/var/run/mesh/bundle.pem"),
//!         Duration::from_secs(5),
//!     )
//!     .app_addr("127.0.0.1:8080".parse()?)
//!     .authorization([AuthzRule::allow().peers(["spiffe://cluster.local/ns/shop/sa/web"])])
//!     .outbound_service(
//!         OutboundService::new("ratings.shop.svc")
//!             .endpoints(["10.0.3.7:15006", "10.0.3.8:15006"])
//!             .expected_identities(["spiffe://cluster.local/ns/shop/sa/ratings"])
//!             .timeout(Duration::from_secs(2))
//!             .circuit_breaker(CircuitBreakerLayer::new()),
//!     );
//! let sidecar = Sidecar::new(config)?.bind().await?;
//! println!("inbound {} outbound {}", sidecar.inbound_addr(), sidecar.outbound_addr());
//! sidecar.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

mod build;
mod config;
mod run;

pub use config::{MtlsMode, OutboundService, SidecarConfig, SidecarError};
pub use run::{BoundSidecar, Sidecar};
