//! TLS over real sockets on loopback, with certificates made by `rcgen` at
//! test time: the proxy to `https` upstreams, and the gateway server as a
//! TLS listener.

mod mesh;
#[path = "../common/pki.rs"]
mod pki;
mod proxy;
mod server;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::peer::{PeerAddr, PeerCertificate};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub(crate) use pki::{Identity, Pki, client_config};

/// What the test service saw of one request.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) version: http::Version,
    pub(crate) peer: Option<PeerAddr>,
    pub(crate) certificate: Option<PeerCertificate>,
}

/// A running server whose service answers `hello` and reports each
/// request on a channel.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: mpsc::UnboundedReceiver<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

pub(crate) async fn start(config: ServerConfig) -> Running {
    let (report, seen) = mpsc::unbounded_channel();
    let report = Arc::new(report);
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let report = Arc::clone(&report);
        async move {
            let version = request.version();
            let _ = report.send(Seen {
                version,
                peer: request.extensions().get::<PeerAddr>().copied(),
                certificate: request.extensions().get::<PeerCertificate>().cloned(),
            });
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "hello over {version:?}"
            )))))
        }
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(service, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        seen,
        stop: Some(stop),
        task,
    }
}
