//! Integration tests of the gateway assembly over real sockets on loopback.

mod assembly;
#[cfg(feature = "tls")]
mod auth;
#[cfg(feature = "redis")]
mod redis;
mod server;
#[cfg(feature = "tls")]
mod tls;
