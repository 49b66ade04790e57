//! The gateway assembly: the YAML config turned into layers, served.
//!
//! The assembly holds no request logic of its own: [`Gateway::from_config`]
//! reads a validated [`Config`](crate::config::Config) and builds, per
//! upstream, a load balancer (with its health checks) over a pooled proxy,
//! and per route the stack
//!
//! ```text
//! compression → ip_restriction → cors → auth → authz → rate_limit → cache
//!   → transform (headers, query) → transform (JSON bodies) → fault
//!   → timeout → retry → circuit_breaker → load_balancer → proxy
//! ```
//!
//! with only the layers the route configures (the part from `timeout` on is
//! composed with concrete types and boxed once per backend). In front of the
//! router every listener gets request id → trace context → access log →
//! metrics → body limit. A config section this build cannot honour (a metric
//! prefix other than `meshgate`, a per-endpoint request limit, `https`
//! endpoints without the `tls` feature) refuses to build with the field
//! named, rather than serving traffic the operator meant to treat otherwise.
//!
//! [`Gateway::bind`] binds the listeners and the admin listener;
//! [`BoundGateway::serve`] serves until a shutdown signal, then drains. The
//! admin listener answers `/healthz`, `/readyz` (every upstream has an
//! endpoint that may take traffic), `/metrics` (Prometheus) and
//! `/admin/status` (JSON).
//!
//! The connection [`Server`] serves HTTP/1.1 (with upgrades) and h2c on one
//! port (or, with the `tls` feature and [`ServerConfig::tls`], TLS with ALPN
//! `h2` / `http/1.1` and optional client-certificate verification), tags each
//! request with the client's [`PeerAddr`](crate::peer::PeerAddr), and
//! enforces the limits that protect a gateway from its clients:
//!
//! | limit | default | past it |
//! | --- | --- | --- |
//! | request head size | 64 KiB | `431` (HTTP/1), stream refused (HTTP/2) |
//! | header count | 100 | `431` (HTTP/1) |
//! | time to send a request head (with TLS: handshake included, for the first) | 10 s | connection closed (slowloris) |
//! | open connections | 10 000 | not accepted until one closes |
//! | graceful shutdown drain | 30 s | remaining connections closed |
//! | request body (per listener, `limits.max_request_body`) | 10 MiB | `413` problem |
//!
//! ```no_run
//! use meshgate::config::Config;
//! use meshgate::gateway::Gateway;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("gateway.yaml")?;
//! let gateway = Gateway::from_config(config)?.bind().await?;
//! for (name, addr) in gateway.listener_addrs() {
//!     println!("{name} on {addr}");
//! }
//! gateway.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

pub(crate) mod admin;
mod build;
pub(crate) mod run;
mod server;
mod timer;

pub use build::{BuildErrors, GatewayBody};
pub use run::{BoundGateway, Gateway, GatewayService};
pub use server::{Connections, Server, ServerConfig};
