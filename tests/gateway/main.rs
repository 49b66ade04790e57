//! Integration tests of the gateway assembly over real sockets on loopback.

mod assembly;
mod server;
#[cfg(feature = "tls")]
mod tls;
