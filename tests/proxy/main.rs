//! Behaviour of `meshgate::proxy` over real loopback sockets: in-process
//! upstreams, the proxy behind a hyper server that inserts `PeerAddr`, and
//! raw or hyper clients in front.

mod failures;
mod headers;
mod pool;
mod streaming;
mod support;
mod websocket;
