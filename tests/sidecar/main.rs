//! The sidecar over real sockets on loopback: applications behind their
//! sidecars, calling each other over mTLS with certificates made by
//! `rcgen` at test time.

mod config;
mod mesh;
mod mtls;
#[path = "../common/pki.rs"]
mod pki;
mod rotation;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::sidecar::{BoundSidecar, SidecarConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use pki::MeshCa;
pub(crate) use pki::{Identity, client_config};

pub(crate) const TRUST_DOMAIN: &str = "mesh.test";

/// The mesh CA of the tests, issuing workload certificates named by
/// service account and service.
pub(crate) struct Ca(MeshCa);

impl std::ops::Deref for Ca {
    type Target = MeshCa;

    fn deref(&self) -> &MeshCa {
        &self.0
    }
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        Self(MeshCa::new(name))
    }

    /// A workload certificate: `spiffe://mesh.test/ns/default/sa/<sa>` as
    /// URI SAN, the service name and `localhost` (so tests can reach an
    /// inbound listener directly) as DNS SANs.
    pub(crate) fn workload(&self, sa: &str, service: &str) -> Identity {
        self.workload_with(sa, service, |_| {})
    }

    pub(crate) fn workload_with(
        &self,
        sa: &str,
        service: &str,
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Identity {
        self.0
            .issue_with(&spiffe(sa), &[service, "localhost"], adjust)
    }
}

pub(crate) fn spiffe(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

/// A sidecar config for `identity` in front of `app`, every listener on
/// loopback port 0.
pub(crate) fn sidecar_config(ca: &Ca, identity: &Identity, app: SocketAddr) -> SidecarConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    SidecarConfig::new()
        .certificate_pem(identity.chain_pem.clone(), identity.key_pem.clone())
        .trust_bundle_pem(ca.pem.clone())
        .app_addr(app)
        .inbound_addr(any)
        .outbound_addr(any)
        .admin_addr(any)
        .access_log(false)
}

/// The problems `Sidecar::new` finds in `config`.
pub(crate) fn problems_of(config: SidecarConfig) -> Vec<String> {
    meshgate::sidecar::Sidecar::new(config)
        .unwrap_err()
        .problems()
        .to_vec()
}

/// A sidecar serving until dropped (or stopped).
pub(crate) struct RunningSidecar {
    pub(crate) inbound: SocketAddr,
    pub(crate) outbound: SocketAddr,
    pub(crate) admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSidecar {
    pub(crate) async fn start(config: SidecarConfig) -> Self {
        let bound: BoundSidecar = meshgate::sidecar::Sidecar::new(config)
            .unwrap()
            .bind()
            .await
            .unwrap();
        let (inbound, outbound, admin) = (
            bound.inbound_addr(),
            bound.outbound_addr(),
            bound.admin_addr(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            inbound,
            outbound,
            admin,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for RunningSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A demo application: answers `<name> saw <identity header>` (or `-`),
/// failing its first `fail_first` calls with a plain 503; counts calls.
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    pub(crate) calls: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl App {
    pub(crate) async fn start(name: &'static str, fail_first: usize) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let identity = request
                .headers()
                .get("x-meshgate-peer-identity")
                .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
            let xfcc = request.headers().contains_key("x-forwarded-client-cert");
            async move {
                let response = if n < fail_first {
                    Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(Full::new(Bytes::from("injected failure")))
                        .unwrap()
                } else {
                    Response::new(Full::new(Bytes::from(format!(
                        "{name} saw {identity} xfcc={xfcc}"
                    ))))
                };
                Ok::<_, Infallible>(response)
            }
        });
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::new())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(service, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            calls,
            _stop: stop,
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A plain HTTP client, as the application uses toward its outbound
/// listener.
pub(crate) fn plain_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET path` to `addr` with `Host: host`; the status, headers and body.
pub(crate) async fn call(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::get(format!("http://{addr}{path}")).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = plain_client()
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// `GET /` over TLS straight to a sidecar's inbound listener (its
/// certificate must name `localhost`).
pub(crate) async fn tls_get(
    inbound: SocketAddr,
    ca_pem: &str,
    identity: Option<&Identity>,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String), hyper_util::client::legacy::Error> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_pem, identity))
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = Request::get(format!("https://localhost:{}/", inbound.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(Empty::new()).unwrap()).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
