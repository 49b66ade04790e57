//! Integration tests of the gateway assembly over real sockets on loopback.

mod assembly;
#[cfg(feature = "tls")]
#[path = "../common/pki.rs"]
mod pki;
#[cfg(feature = "redis")]
mod redis;
mod server;
#[cfg(feature = "tls")]
mod tls;
mod transform;
