//! Mesh TLS: STRICT and PERMISSIVE listeners, SPIFFE identities, rotating
//! material (files, reload, watcher, trust bundle), and the proxy's secure
//! naming by SPIFFE ID.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::peer::{PeerCertificate, SpiffeId};
use meshgate::proxy::Proxy;
use meshgate::tls::{ClientAuth, TlsFiles, TlsMaterial, rustls};
use meshgate::{Body, Rejection, RejectionKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Service;

use crate::pki::{MeshCa as Ca, Workload};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A rustls client trusting `trusted` (PEM bundles) and presenting
/// `identity`.
fn client_config(trusted: &[&str], identity: Option<&Workload>) -> Arc<rustls::ClientConfig> {
    let roots = meshgate::tls::roots_from_pem(trusted.concat().as_bytes()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                meshgate::tls::certificates_from_pem(identity.chain_pem.as_bytes()).unwrap(),
                meshgate::tls::private_key_from_pem(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// A held-back request: the service reports `started` and answers once
/// `release` fires.
struct Slow {
    started: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A running server whose service answers with the client's SPIFFE ID
/// (`none` without one); `/slow` waits for the test's go-ahead first.
struct Echo {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Echo {
    async fn start(config: ServerConfig) -> Self {
        Self::start_with_slow(config, None).await
    }

    async fn start_with_slow(config: ServerConfig, slow: Option<Slow>) -> Self {
        let slow = Arc::new(Mutex::new(slow));
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let slow = request
                .uri()
                .path()
                .eq("/slow")
                .then(|| slow.lock().unwrap().take())
                .flatten();
            let identity = request
                .extensions()
                .get::<PeerCertificate>()
                .map(|certificate| {
                    certificate
                        .spiffe_id()
                        .map_or_else(|| "no SPIFFE ID".to_owned(), |id| id.to_string())
                })
                .unwrap_or_else(|| "none".to_owned());
            async move {
                if let Some(slow) = slow {
                    let _ = slow.started.send(());
                    let _ = slow.release.await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(identity))))
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
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// An HTTP/1.1 connection, over TLS or plain TCP.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    /// The server's leaf certificate, DER (TLS only).
    server_certificate: Option<Vec<u8>>,
}

impl Connection {
    async fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let server_certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.to_vec());
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            server_certificate,
        })
    }

    async fn plain(addr: SocketAddr) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            server_certificate: None,
        })
    }

    /// The body of a `GET path`, which must answer 200.
    async fn get(&mut self, path: &str) -> Result<String, BoxError> {
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(body.to_vec())?)
    }
}

/// One request on a new TLS connection: the body, or why it failed.
async fn get_over_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, BoxError> {
    Connection::tls(addr, config).await?.get("/").await
}

fn strict(material: &TlsMaterial) -> ServerConfig {
    ServerConfig::new().tls(material.server_tls(ClientAuth::Required))
}

const WEB: &str = "spiffe://mesh.test/ns/shop/sa/web";
const API: &str = "spiffe://mesh.test/ns/shop/sa/api";
const OTHER: &str = "spiffe://mesh.test/ns/billing/sa/ledger";

#[tokio::test]
async fn strict_refuses_plain_text_other_cas_expired_and_missing_certificates() {
    let ca = Ca::new("strict");
    let server = ca.workload(API);
    let material = ca.material(&server);
    assert_eq!(
        material.identity().map(|id| id.to_string()),
        Some(API.to_owned())
    );
    let echo = Echo::start(strict(&material)).await;

    let web = ca.workload(WEB);
    let body = get_over_tls(echo.addr, client_config(&[&ca.pem], Some(&web)))
        .await
        .unwrap();
    assert_eq!(body, WEB, "the SPIFFE ID reaches the service");

    let plain = async { Connection::plain(echo.addr).await?.get("/").await };
    assert!(plain.await.is_err(), "plain text is refused");

    let stranger = Ca::new("stranger");
    let foreign = stranger.workload(WEB);
    let refused = get_over_tls(echo.addr, client_config(&[&ca.pem], Some(&foreign))).await;
    assert!(refused.is_err(), "a certificate of another CA is refused");

    let expired = ca.expired_workload(WEB);
    let refused = get_over_tls(echo.addr, client_config(&[&ca.pem], Some(&expired))).await;
    assert!(refused.is_err(), "an expired certificate is refused");

    let refused = get_over_tls(echo.addr, client_config(&[&ca.pem], None)).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );

    // The listener still serves after all those failures.
    let body = get_over_tls(echo.addr, client_config(&[&ca.pem], Some(&web)))
        .await
        .unwrap();
    assert_eq!(body, WEB);
    echo.stop().await;
}

#[tokio::test]
async fn permissive_serves_plain_text_and_mtls_with_the_identity_only_on_mtls() {
    let ca = Ca::new("permissive");
    let material = ca.material(&ca.workload(API));
    let echo = Echo::start(strict(&material).tls_permissive(true)).await;

    let mut plain = Connection::plain(echo.addr).await.unwrap();
    assert_eq!(plain.get("/").await.unwrap(), "none");
    assert_eq!(
        plain.get("/again").await.unwrap(),
        "none",
        "keep-alive works"
    );

    let web = ca.workload(WEB);
    let body = get_over_tls(echo.addr, client_config(&[&ca.pem], Some(&web)))
        .await
        .unwrap();
    assert_eq!(body, WEB);

    // TLS clients are still verified in permissive mode.
    let stranger = Ca::new("stranger");
    let refused = get_over_tls(
        echo.addr,
        client_config(&[&ca.pem], Some(&stranger.workload(WEB))),
    )
    .await;
    assert!(refused.is_err());

    // h2c with prior knowledge is plain text too.
    let tcp = TcpStream::connect(echo.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("http://localhost/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "none");
    echo.stop().await;
}

#[tokio::test(start_paused = true)]
async fn permissive_closes_a_connection_that_sends_nothing_at_the_header_timeout() {
    let ca = Ca::new("silent");
    let material = ca.material(&ca.workload(API));
    let timeout = Duration::from_secs(10);
    let config = strict(&material)
        .tls_permissive(true)
        .header_read_timeout(timeout);
    let echo = Echo::start(config).await;
    // Nothing at all, then the first bytes of a ClientHello record.
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let started = tokio::time::Instant::now();
        let mut stream = TcpStream::connect(echo.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection before 60 s");
        assert!(read.is_err() || buf.is_empty(), "{buf:?}");
        assert!(
            started.elapsed() >= timeout,
            "closed after {:?} for {partial:?}",
            started.elapsed()
        );
    }
    echo.stop().await;
}

/// A temporary directory with the three PEM files, removed when dropped.
struct PemDir {
    path: PathBuf,
}

impl PemDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "meshgate-tls-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles::new(
            self.path.join("cert.pem"),
            self.path.join("key.pem"),
            self.path.join("bundle.pem"),
        )
    }

    fn write_certificate(&self, workload: &Workload) {
        std::fs::write(self.path.join("cert.pem"), &workload.chain_pem).unwrap();
    }

    fn write_key(&self, workload: &Workload) {
        std::fs::write(self.path.join("key.pem"), &workload.key_pem).unwrap();
    }

    fn write_bundle(&self, bundle: &str) {
        std::fs::write(self.path.join("bundle.pem"), bundle).unwrap();
    }

    fn write(&self, workload: &Workload, bundle: &str) {
        self.write_certificate(workload);
        self.write_key(workload);
        self.write_bundle(bundle);
    }
}

impl Drop for PemDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[tokio::test]
async fn after_a_reload_new_connections_get_the_new_certificate_and_old_requests_complete() {
    let ca = Ca::new("rotation");
    let (old, new) = (ca.workload(API), ca.workload(API));
    let dir = PemDir::new("rotation");
    dir.write(&old, &ca.pem);
    let material = TlsMaterial::from_files(dir.files()).unwrap();
    assert!(!material.reload().unwrap(), "nothing changed yet");
    let (started, started_rx) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let slow = Slow {
        started,
        release: release_rx,
    };
    let echo = Echo::start_with_slow(strict(&material), Some(slow)).await;
    let client = client_config(&[&ca.pem], Some(&ca.workload(WEB)));

    let mut before = Connection::tls(echo.addr, Arc::clone(&client))
        .await
        .unwrap();
    assert_eq!(
        before.server_certificate.as_deref(),
        Some(old.der.as_slice())
    );
    let long_request = tokio::spawn(async move {
        let body = before.get("/slow").await.unwrap();
        (before, body)
    });
    started_rx.await.unwrap();

    dir.write(&new, &ca.pem);
    assert!(material.reload().unwrap());
    assert_eq!(material.generation(), 1);
    assert!(!material.reload().unwrap(), "the same files again");

    let mut after = Connection::tls(echo.addr, Arc::clone(&client))
        .await
        .unwrap();
    assert_eq!(
        after.server_certificate.as_deref(),
        Some(new.der.as_slice())
    );
    assert_eq!(after.get("/").await.unwrap(), WEB);

    release.send(()).unwrap();
    let (mut before, body) = long_request.await.unwrap();
    assert_eq!(
        body, WEB,
        "the long request on the old connection completed"
    );
    assert_eq!(
        before.get("/").await.unwrap(),
        WEB,
        "and its connection still serves"
    );
    echo.stop().await;
}

#[tokio::test]
async fn a_half_written_set_fails_the_reload_and_keeps_the_old_material() {
    let ca = Ca::new("half");
    let (old, new) = (ca.workload(API), ca.workload(API));
    let dir = PemDir::new("half");
    dir.write(&old, &ca.pem);
    let material = TlsMaterial::from_files(dir.files()).unwrap();
    let echo = Echo::start(strict(&material)).await;
    let client = client_config(&[&ca.pem], Some(&ca.workload(WEB)));

    // The new certificate is there, its key not yet.
    dir.write_certificate(&new);
    let error = material.reload().unwrap_err();
    assert!(error.to_string().contains("key"), "{error}");
    assert_eq!(material.generation(), 0);
    let connection = Connection::tls(echo.addr, Arc::clone(&client))
        .await
        .unwrap();
    assert_eq!(
        connection.server_certificate.as_deref(),
        Some(old.der.as_slice())
    );

    // A missing file is named.
    std::fs::remove_file(dir.path.join("key.pem")).unwrap();
    let error = material.reload().unwrap_err();
    assert!(error.to_string().contains("key.pem"), "{error}");
    assert_eq!(material.generation(), 0);

    // Once the writer is done, the next reload takes the set.
    dir.write_key(&new);
    assert!(material.reload().unwrap());
    let connection = Connection::tls(echo.addr, client).await.unwrap();
    assert_eq!(
        connection.server_certificate.as_deref(),
        Some(new.der.as_slice())
    );
    echo.stop().await;
}

#[tokio::test]
async fn a_failed_replace_keeps_the_old_material() {
    let ca = Ca::new("replace");
    let server = ca.workload(API);
    let material = ca.material(&server);
    let echo = Echo::start(strict(&material)).await;
    let other = ca.workload(OTHER);
    let bad = [
        (
            other.chain_pem.as_str(),
            server.key_pem.as_str(),
            ca.pem.as_str(),
        ),
        ("not PEM", other.key_pem.as_str(), ca.pem.as_str()),
        (other.chain_pem.as_str(), other.key_pem.as_str(), ""),
        (other.chain_pem.as_str(), other.key_pem.as_str(), "garbage"),
    ];
    for (chain, key, bundle) in bad {
        let result = material.replace_pem(chain.as_bytes(), key.as_bytes(), bundle.as_bytes());
        assert!(result.is_err(), "{chain:.20} / {bundle:.20}");
    }
    assert_eq!(material.generation(), 0);
    assert_eq!(
        material.identity().map(|id| id.to_string()),
        Some(API.to_owned())
    );
    let client = client_config(&[&ca.pem], Some(&ca.workload(WEB)));
    let connection = Connection::tls(echo.addr, client).await.unwrap();
    assert_eq!(
        connection.server_certificate.as_deref(),
        Some(server.der.as_slice())
    );

    let missing =
        TlsMaterial::from_files(TlsFiles::new("/nonexistent/c.pem", "k.pem", "b.pem")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/c.pem"),
        "{missing}"
    );
    echo.stop().await;
}

#[tokio::test]
async fn the_watcher_picks_up_a_change() {
    let ca = Ca::new("watch");
    let (old, new) = (ca.workload(API), ca.workload(OTHER));
    let dir = PemDir::new("watch");
    dir.write(&old, &ca.pem);
    let material = TlsMaterial::from_files(dir.files()).unwrap();
    let watcher = material.watch(Duration::from_millis(10));

    dir.write(&new, &ca.pem);
    let picked_up = tokio::time::timeout(Duration::from_secs(10), async {
        while material.generation() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(picked_up.is_ok(), "the watcher reloaded the files");
    assert_eq!(material.generation(), 1);
    assert_eq!(
        material.identity().map(|id| id.to_string()),
        Some(OTHER.to_owned())
    );

    drop(watcher);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_watcher_reloads_nothing() {
    let ca = Ca::new("unwatched");
    let dir = PemDir::new("unwatched");
    dir.write(&ca.workload(API), &ca.pem);
    let material = TlsMaterial::from_files(dir.files()).unwrap();
    let watcher = material.watch(Duration::from_secs(5));
    drop(watcher);
    dir.write(&ca.workload(OTHER), &ca.pem);
    // Twelve intervals pass; a live watcher would have reloaded.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(material.generation(), 0);
    assert!(
        material.reload().unwrap(),
        "the change was still there to take"
    );
    assert_eq!(
        material.identity().map(|id| id.to_string()),
        Some(OTHER.to_owned())
    );
}

#[tokio::test]
async fn after_a_trust_bundle_rotation_clients_of_the_old_ca_are_refused() {
    let (old_ca, new_ca) = (Ca::new("old"), Ca::new("new"));
    let material = old_ca.material(&old_ca.workload(API));
    let echo = Echo::start(strict(&material)).await;
    // The clients trust both CAs for the server's certificate; what they
    // present decides. The same configuration is kept across the rotation,
    // so a resumed session would show.
    let old_client = client_config(&[&old_ca.pem, &new_ca.pem], Some(&old_ca.workload(WEB)));
    let new_client = client_config(&[&old_ca.pem, &new_ca.pem], Some(&new_ca.workload(WEB)));
    assert_eq!(
        get_over_tls(echo.addr, Arc::clone(&old_client))
            .await
            .unwrap(),
        WEB
    );
    assert_eq!(
        get_over_tls(echo.addr, Arc::clone(&old_client))
            .await
            .unwrap(),
        WEB
    );
    assert!(
        get_over_tls(echo.addr, Arc::clone(&new_client))
            .await
            .is_err()
    );

    let server = new_ca.workload(API);
    material
        .replace_pem(
            server.chain_pem.as_bytes(),
            server.key_pem.as_bytes(),
            new_ca.pem.as_bytes(),
        )
        .unwrap();

    let refused = get_over_tls(echo.addr, Arc::clone(&old_client)).await;
    assert!(
        refused.is_err(),
        "a client of the old CA is refused, resumption included"
    );
    assert_eq!(get_over_tls(echo.addr, new_client).await.unwrap(), WEB);
    echo.stop().await;
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn text(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn the_proxy_accepts_upstreams_by_spiffe_id() {
    let ca = Ca::new("naming");
    let api = Echo::start(strict(&ca.material(&ca.workload(API)))).await;
    let other = Echo::start(strict(&ca.material(&ca.workload(OTHER)))).await;
    let web = ca.material(&ca.workload(WEB));
    let proxy = |identities: &[&str]| {
        Proxy::builder()
            .tls_material(web.clone())
            .tls_peer_identities(identities.iter().copied())
            .build()
            .unwrap()
    };
    // By IP: the certificates name only `localhost`, so this passes only
    // because the SPIFFE ID is checked instead of the name.
    let api_uri = format!("https://{}/", api.addr);
    let other_uri = format!("https://{}/", other.addr);

    let response = proxy(&[API]).call(get(&api_uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        text(response).await,
        WEB,
        "the proxy presented its identity"
    );

    let response = proxy(&[API]).call(get(&other_uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::UpstreamConnect);

    let mut shop = proxy(&["spiffe://mesh.test/ns/shop/*"]);
    assert_eq!(
        shop.call(get(&api_uri)).await.unwrap().status(),
        StatusCode::OK
    );
    let response = shop.call(get(&other_uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let mut both = proxy(&[API, OTHER]);
    assert_eq!(
        both.call(get(&other_uri)).await.unwrap().status(),
        StatusCode::OK
    );

    // A server of another CA with the expected ID is refused too.
    let stranger = Ca::new("stranger");
    let impostor = Echo::start(strict(&stranger.material(&stranger.workload(API)))).await;
    let response = proxy(&[API])
        .call(get(&format!("https://{}/", impostor.addr)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);

    // So is an expired certificate with the expected ID.
    let expired = Echo::start(strict(&ca.material(&ca.expired_workload(API)))).await;
    let response = proxy(&[API])
        .call(get(&format!("https://{}/", expired.addr)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);

    // Without identities, the name is verified against the material's bundle.
    let mut by_name = Proxy::builder().tls_material(web.clone()).build().unwrap();
    let response = by_name
        .call(get(&format!("https://localhost:{}/", api.addr.port())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = by_name.call(get(&api_uri)).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_GATEWAY,
        "127.0.0.1 is not in the certificate"
    );

    for stop in [api, other, impostor, expired] {
        stop.stop().await;
    }
}

#[test]
fn bad_peer_identities_fail_the_build() {
    let ca = Ca::new("bad");
    let web = ca.material(&ca.workload(WEB));
    for ids in [
        vec![],
        vec!["https://td/web"],
        vec!["spiffe://td/*/web"],
        vec!["spiffe://TD/web"],
    ] {
        let error = Proxy::builder()
            .tls_material(web.clone())
            .tls_peer_identities(ids.clone())
            .build()
            .unwrap_err();
        assert!(
            error.to_string().contains("peer identit"),
            "{ids:?}: {error}"
        );
    }
    // Also with static roots.
    let error = Proxy::builder()
        .tls_roots_pem(ca.pem.as_bytes())
        .tls_peer_identities(["spiffe://td/"])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("peer identity"), "{error}");
}

#[tokio::test]
async fn peer_identities_work_with_static_roots_too() {
    let ca = Ca::new("static");
    let api = Echo::start(strict(&ca.material(&ca.workload(API)))).await;
    let web = ca.workload(WEB);
    let proxy = |identity: &str| {
        Proxy::builder()
            .tls_roots_pem(ca.pem.as_bytes())
            .tls_client_identity(web.chain_pem.as_bytes(), web.key_pem.as_bytes())
            .tls_peer_identities([identity])
            .build()
            .unwrap()
    };
    let uri = format!("https://{}/", api.addr);
    let response = proxy(API).call(get(&uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, WEB);
    let response = proxy(OTHER).call(get(&uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    api.stop().await;
}

#[tokio::test]
async fn the_proxy_presents_the_new_client_certificate_after_a_reload() {
    let ca = Ca::new("client");
    let api = Echo::start(strict(&ca.material(&ca.workload(API)))).await;
    let (first, second) = (ca.workload(WEB), ca.workload(OTHER));
    let dir = PemDir::new("client");
    dir.write(&first, &ca.pem);
    let material = TlsMaterial::from_files(dir.files()).unwrap();
    // A new connection per request, so each one shows what is presented
    // at its handshake (the second one may resume the first's session).
    let mut proxy = Proxy::builder()
        .tls_material(material.clone())
        .tls_peer_identities([API])
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let uri = format!("https://{}/", api.addr);
    for _ in 0..2 {
        let response = proxy.call(get(&uri)).await.unwrap();
        assert_eq!(text(response).await, WEB);
    }

    dir.write(&second, &ca.pem);
    assert!(material.reload().unwrap());
    // No session of the old generation is resumed: the new certificate is
    // presented.
    for _ in 0..2 {
        let response = proxy.call(get(&uri)).await.unwrap();
        assert_eq!(text(response).await, OTHER);
    }
    api.stop().await;
}

#[test]
fn spiffe_ids_parse_from_the_public_api() {
    let id: SpiffeId = WEB.parse().unwrap();
    assert_eq!(id.trust_domain(), "mesh.test");
    assert_eq!(id.path(), "/ns/shop/sa/web");
    let error = "spiffe://mesh.test/ns/shop/"
        .parse::<SpiffeId>()
        .unwrap_err();
    assert!(error.to_string().contains("trailing slash"), "{error}");
}
