//! Integration tests of the gateway assembly over real sockets on loopback.

mod assembly;
mod auth;
#[cfg(feature = "tls")]
mod auth_https;
#[path = "../common/captured_log.rs"]
mod captured_log;
mod observe;
#[cfg(feature = "tls")]
#[path = "../common/pki.rs"]
mod pki;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[path = "../common/redis_server.rs"]
mod redis_server;
mod server;
#[cfg(feature = "tls")]
mod tls;
mod transform;
