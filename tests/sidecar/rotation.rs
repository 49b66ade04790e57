//! Certificate rotation without restart: new handshakes present the new
//! certificate and trust the new bundle, while a request on a connection
//! made before the swap completes.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use meshgate::gateway::{Server, ServerConfig};
use meshgate::tls::{TlsMaterial, certificates_from_pem};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use crate::{Ca, Identity, RunningSidecar, client_config, sidecar_config, tls_get};

/// The DER of the certificate the inbound listener at `addr` presents.
async fn presented(addr: std::net::SocketAddr, ca: &Ca, client: &Identity) -> Vec<u8> {
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca.pem, Some(client))));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf(identity: &Identity) -> Vec<u8> {
    certificates_from_pem(identity.chain_pem.as_bytes()).unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotation_reaches_new_handshakes_while_an_old_connection_finishes() {
    // An application whose `/slow` waits for a permit the test releases.
    let gate = Arc::new(Semaphore::new(0));
    let (arrived, mut arrivals) = mpsc::unbounded_channel::<()>();
    let app_gate = Arc::clone(&gate);
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let gate = Arc::clone(&app_gate);
        let arrived = arrived.clone();
        async move {
            if request.uri().path() == "/slow" {
                let _ = arrived.send(());
                let _permit = gate.acquire().await.unwrap();
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
        }
    });
    let app = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::new())
        .await
        .unwrap();
    let app_addr = app.local_addr().unwrap();
    tokio::spawn(app.serve(service, std::future::pending::<()>()));

    let ca = Ca::new("rotation");
    let (first, second) = (ca.workload("b", "b.svc"), ca.workload("b", "b.svc"));
    let material = TlsMaterial::from_pem(
        first.chain_pem.as_bytes(),
        first.key_pem.as_bytes(),
        ca.pem.as_bytes(),
    )
    .unwrap();
    let b =
        RunningSidecar::start(sidecar_config(&ca, &first, app_addr).tls_material(material.clone()))
            .await;
    let caller = ca.workload("a", "a.svc");
    assert_eq!(presented(b.inbound, &ca, &caller).await, leaf(&first));

    // A long request on a connection made with the first certificate.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&ca.pem, Some(&caller)))
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let uri = format!("https://localhost:{}/slow", b.inbound.port());
    let slow = tokio::spawn(async move {
        let response = client
            .request(Request::get(uri).body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    arrivals.recv().await.unwrap();

    // Rotate the workload certificate: new handshakes present it.
    material
        .replace_pem(
            second.chain_pem.as_bytes(),
            second.key_pem.as_bytes(),
            ca.pem.as_bytes(),
        )
        .unwrap();
    assert_eq!(presented(b.inbound, &ca, &caller).await, leaf(&second));

    // The request on the old connection completes.
    gate.add_permits(1);
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"done");

    // Rotate the trust bundle to a new CA: its workloads are accepted, the
    // old CA's are refused from the next handshake on.
    let next = Ca::new("rotation-next");
    let next_b = next.workload("b", "b.svc");
    material
        .replace_pem(
            next_b.chain_pem.as_bytes(),
            next_b.key_pem.as_bytes(),
            next.pem.as_bytes(),
        )
        .unwrap();
    let refused = tls_get(b.inbound, &next.pem, Some(&caller), &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    let (status, _) = tls_get(
        b.inbound,
        &next.pem,
        Some(&next.workload("a", "a.svc")),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);

    // A set that does not validate (a key of another certificate) is
    // refused and the current material kept.
    let error = material
        .replace_pem(
            first.chain_pem.as_bytes(),
            second.key_pem.as_bytes(),
            ca.pem.as_bytes(),
        )
        .unwrap_err();
    assert!(!error.to_string().is_empty());
    assert_eq!(
        presented(b.inbound, &next, &next.workload("a", "a.svc")).await,
        leaf(&next_b)
    );
    b.stop().await;
}

#[tokio::test]
async fn tls_files_are_reloaded_through_the_bound_sidecar() {
    let ca = Ca::new("files");
    let (first, second) = (ca.workload("b", "b.svc"), ca.workload("b", "b.svc"));
    let dir = std::env::temp_dir().join(format!("meshgate-sidecar-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = meshgate::tls::TlsFiles::new(
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("bundle.pem"),
    );
    let write = |identity: &Identity| {
        std::fs::write(&files.certificate, &identity.chain_pem).unwrap();
        std::fs::write(&files.private_key, &identity.key_pem).unwrap();
        std::fs::write(&files.trust_bundle, &ca.pem).unwrap();
    };
    write(&first);
    let app = crate::App::start("b", 0).await;
    let any = "127.0.0.1:0".parse().unwrap();
    let bound = meshgate::sidecar::Sidecar::new(
        meshgate::sidecar::SidecarConfig::new()
            .tls_files(files.clone(), std::time::Duration::from_secs(3600))
            .app_addr(app.addr)
            .inbound_addr(any)
            .outbound_addr(any)
            .admin_addr(any)
            .access_log(false),
    )
    .unwrap()
    .bind()
    .await
    .unwrap();
    let material = bound.tls().clone();
    let inbound = bound.inbound_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    let caller = ca.workload("a", "a.svc");
    assert_eq!(presented(inbound, &ca, &caller).await, leaf(&first));
    assert!(!material.reload().unwrap(), "nothing changed yet");
    write(&second);
    assert!(material.reload().unwrap());
    assert_eq!(presented(inbound, &ca, &caller).await, leaf(&second));
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
