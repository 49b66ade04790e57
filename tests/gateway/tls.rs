//! A TLS listener configured in YAML: PEM files read at build, ALPN, and
//! `X-Forwarded-Proto: https` upstream.

use std::sync::Arc;

use axum::Router;
use meshgate::config::Config;
use meshgate::gateway::Gateway;
use meshgate::tls::rustls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn tls_listener_from_config_serves_https() {
    let app = Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        format!(
            "proto={}",
            headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        )
    });
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = upstream_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(upstream_listener, app).await });

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("meshgate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let yaml = format!(
        "listeners:
  - address: 127.0.0.1:0
    tls: {{ certificate: \"{}\", key: \"{}\" }}
admin: {{ enabled: false }}
access_log: {{ enabled: false }}
upstreams: [{{ name: up, endpoints: [\"{upstream}\"] }}]
routes: [{{ name: all, match: {{ paths: [{{ prefix: / }}] }}, upstream: up }}]
",
        cert_path.display(),
        key_path.display()
    );
    let gateway = Gateway::from_config(Config::from_yaml_str(&yaml).unwrap())
        .unwrap_or_else(|e| panic!("{e}"))
        .bind()
        .await
        .unwrap();
    let addr = gateway.listener_addrs()[0].1;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(async move {
        let _ = stopped.await;
    }));

    let roots = meshgate::tls::roots_from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("proto=https"), "{answer}");

    // A cleartext request to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unreadable_certificate_is_named_at_build() {
    let yaml = "listeners:
  - address: 127.0.0.1:0
    tls: { certificate: /nonexistent/chain.pem, key: /nonexistent/key.pem }
upstreams: [{ name: up, endpoints: [\"127.0.0.1:1\"] }]
routes: [{ name: all, match: { paths: [{ prefix: / }] }, upstream: up }]
";
    let errors = Gateway::from_config(Config::from_yaml_str(yaml).unwrap()).unwrap_err();
    let problems = errors.problems();
    assert!(
        problems
            .iter()
            .any(|p| p
                .starts_with("listeners[0].tls.certificate: cannot read /nonexistent/chain.pem")),
        "{errors}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("listeners[0].tls.key: cannot read /nonexistent/key.pem")),
        "{errors}"
    );
}
