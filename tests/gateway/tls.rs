//! TLS configured in YAML: a TLS listener (PEM files read at build, ALPN,
//! `X-Forwarded-Proto: https` upstream) and mutual TLS to an `https`
//! upstream (`upstreams[].tls`).

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

/// Writes `files` (name, content) into a fresh directory and returns it.
fn write_files(tag: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshgate-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

/// A gateway in front of one `https` upstream with the given `tls` section;
/// answers the status and body of `GET /` through it.
async fn through_gateway(upstream: std::net::SocketAddr, tls: &str) -> (u16, String) {
    let yaml = format!(
        "listeners: [{{ address: 127.0.0.1:0 }}]
admin: {{ enabled: false }}
access_log: {{ enabled: false }}
upstreams:
  - name: payments
    endpoints: [\"https://127.0.0.1:{}\"]
    tls: {tls}
routes: [{{ name: all, match: {{ paths: [{{ prefix: / }}] }}, upstream: payments }}]
",
        upstream.port()
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
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    (status, body)
}

#[tokio::test]
async fn an_mtls_upstream_is_reached_with_the_configured_ca_client_certificate_and_name() {
    use meshgate::gateway::{Server, ServerConfig};
    use meshgate::peer::PeerCertificate;
    use meshgate::tls::{ClientAuth, ServerTls};

    let pki = crate::pki::Pki::new("upstream-mtls");
    // The upstream requires a client certificate from the test CA and
    // answers with the client's DNS name.
    let server_tls = ServerTls::mutual_from_pem(
        pki.server.chain_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
        pki.ca_pem.as_bytes(),
        ClientAuth::Required,
    )
    .unwrap();
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::new().tls(server_tls),
    )
    .await
    .unwrap();
    let upstream = server.local_addr().unwrap();
    let service = tower::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
        let client = request
            .extensions()
            .get::<PeerCertificate>()
            .and_then(|c| c.dns_names().first().cloned())
            .unwrap_or_else(|| "none".to_owned());
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(format!("client={client}")),
        )))
    });
    let (stop_upstream, upstream_stopped) = tokio::sync::oneshot::channel::<()>();
    let upstream_task = tokio::spawn(server.serve(service, async move {
        let _ = upstream_stopped.await;
    }));

    let dir = write_files(
        "upstream-tls",
        &[
            ("ca.pem", &pki.ca_pem),
            ("client.pem", &pki.client.chain_pem),
            ("client-key.pem", &pki.client.key_pem),
        ],
    );
    let (ca, cert, key) = (
        dir.join("ca.pem").display().to_string(),
        dir.join("client.pem").display().to_string(),
        dir.join("client-key.pem").display().to_string(),
    );

    let full = format!(
        "{{ ca: \"{ca}\", certificate: \"{cert}\", key: \"{key}\", server_name: localhost }}"
    );
    assert_eq!(
        through_gateway(upstream, &full).await,
        (200, "client=client.test".to_owned())
    );
    // Without the client certificate the upstream refuses the handshake.
    let no_client = format!("{{ ca: \"{ca}\" }}");
    assert_eq!(through_gateway(upstream, &no_client).await.0, 502);
    // Mozilla's roots do not know the test CA.
    let no_ca = format!("{{ certificate: \"{cert}\", key: \"{key}\" }}");
    assert_eq!(through_gateway(upstream, &no_ca).await.0, 502);
    // A server name the certificate does not cover.
    let wrong_name = format!(
        "{{ ca: \"{ca}\", certificate: \"{cert}\", key: \"{key}\", server_name: other.test }}"
    );
    assert_eq!(through_gateway(upstream, &wrong_name).await.0, 502);

    let _ = stop_upstream.send(());
    upstream_task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn upstream_tls_errors_name_the_field() {
    let yaml = "upstreams:
  - name: a
    endpoints: [\"https://127.0.0.1:1\"]
    tls: { certificate: /nonexistent/client.pem }
  - name: b
    endpoints: [\"127.0.0.1:1\"]
    tls: { server_name: \"bad name\" }
routes: [{ name: all, match: { paths: [{ prefix: / }] }, upstream: a }]
";
    let errors = Config::from_yaml_str(yaml).unwrap_err().to_string();
    assert!(
        errors.contains("upstreams[0].tls.key: a client certificate needs its key"),
        "{errors}"
    );
    assert!(errors.contains("upstreams[1].tls.server_name:"), "{errors}");
    assert!(
        errors.contains("upstreams[1].tls: no endpoint is https"),
        "{errors}"
    );

    let yaml = "admin: { enabled: false }
upstreams:
  - name: a
    endpoints: [\"https://127.0.0.1:1\"]
    tls: { ca: /nonexistent/ca.pem }
routes: [{ name: all, match: { paths: [{ prefix: / }] }, upstream: a }]
";
    let errors = Gateway::from_config(Config::from_yaml_str(yaml).unwrap()).unwrap_err();
    assert!(
        errors
            .problems()
            .iter()
            .any(|p| p.starts_with("upstreams[0].tls.ca: cannot read /nonexistent/ca.pem")),
        "{errors}"
    );
}
