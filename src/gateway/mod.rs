//! The gateway assembly: serving layers over TCP, and (to come) building
//! them from the YAML config.
//!
//! The assembly holds no request logic of its own. Today it has the
//! connection [`Server`]: HTTP/1.1 (with upgrades) and h2c on one port (or,
//! with the `tls` feature and [`ServerConfig::tls`], TLS with ALPN `h2` /
//! `http/1.1` and optional client-certificate verification), each
//! request tagged with the client's [`PeerAddr`](crate::peer::PeerAddr), and
//! the limits that protect a gateway from its clients:
//!
//! | limit | default | past it |
//! | --- | --- | --- |
//! | request head size | 64 KiB | `431` (HTTP/1), stream refused (HTTP/2) |
//! | header count | 100 | `431` (HTTP/1) |
//! | time to send a request head (with TLS: handshake included, for the first) | 10 s | connection closed (slowloris) |
//! | open connections | 10 000 | not accepted until one closes |
//! | graceful shutdown drain | 30 s | remaining connections closed |
//!
//! `Gateway::from_config`, which reads the config and stacks routing,
//! retries, breakers, balancing and the proxy, arrives with the gateway issue.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use meshgate::gateway::{Server, ServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
//!     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! let config = ServerConfig::new()
//!     .header_read_timeout(Duration::from_secs(5))
//!     .max_connections(1_000);
//! let server = Server::bind("127.0.0.1:8080".parse().unwrap(), config).await?;
//! server.serve(app, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod admin;
mod build;
mod run;
mod server;

pub use build::{BuildErrors, GatewayBody};
pub use run::{BoundGateway, Gateway, GatewayService};
pub use server::{Connections, Server, ServerConfig};
