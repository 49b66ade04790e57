//! Integration tests of the gateway assembly over real sockets on loopback.

mod assembly;
mod auth;
#[cfg(feature = "tls")]
mod auth_https;
#[cfg(feature = "redis")]
mod redis;
mod server;
#[cfg(feature = "tls")]
mod tls;
