//! The response cache in front of an upstream, over real HTTP: a caching
//! reverse proxy (`CacheLayer` → `Proxy`) on the gateway `Server`.
//!
//! It is what `scripts/cache-conformance` runs the HTTP caching test suite
//! (cache-tests.fyi) against.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example cache_proxy -- 127.0.0.1:8001 http://127.0.0.1:8000
//! ```
//!
//! Then, with an origin on port 8000 that answers `Cache-Control: max-age=60`:
//!
//! ```text
//! curl -si localhost:8001/page | grep -i -e x-cache -e age
//! #   x-cache: MISS
//! curl -si localhost:8001/page | grep -i -e x-cache -e age
//! #   age: 0
//! #   x-cache: HIT
//! curl -si -H 'cache-control: only-if-cached' localhost:8001/other
//! #   HTTP/1.1 504 Gateway Timeout (nothing stored for /other)
//! ```

use std::net::SocketAddr;

use meshgate::cache::CacheLayer;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::proxy::Proxy;
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8001").parse()?;
    let upstream = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
    let proxy = Proxy::to(upstream.as_str())?;
    let service = CacheLayer::new().layer(proxy);
    let server = Server::bind(listen, ServerConfig::new()).await?;
    eprintln!("cache_proxy: {} -> {upstream}", server.local_addr()?);
    server
        .serve(service, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
