//! A WebSocket echo through the proxy, with a raw RFC 6455 handshake and
//! hand-made frames (no WebSocket library): the client masks, the upstream
//! unmasks and echoes, the proxy only copies bytes.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshgate::Body;
use meshgate::proxy::Proxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::{connect, head, upstream};

/// The key and accept value of the RFC 6455 §1.3 example.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;

/// One final frame; masked when `mask` is given (client to server).
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame: opcode, whether it was masked, and the unmasked payload.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, bool, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(stream.read_u16().await?),
        127 => stream.read_u64().await?,
        len => u64::from(len),
    };
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, masked, payload))
}

/// The upstream's echo loop over the upgraded connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    while let Ok((opcode, masked, payload)) = read_frame(&mut stream).await {
        assert!(
            masked,
            "client frames arrive masked, untouched by the proxy"
        );
        if stream
            .write_all(&frame(opcode, &payload, None))
            .await
            .is_err()
            || opcode == CLOSE
        {
            break;
        }
    }
}

/// A WebSocket echo upstream: answers the handshake with 101 and echoes.
fn echo_upstream() -> std::net::SocketAddr {
    upstream(|mut request: Request<Incoming>| async move {
        let headers = request.headers();
        let is_websocket = headers.get("upgrade").is_some_and(|v| v == "websocket")
            && headers
                .get("connection")
                .is_some_and(|v| v.to_str().unwrap().to_ascii_lowercase().contains("upgrade"))
            && headers.get("sec-websocket-key").is_some_and(|v| v == KEY);
        if !is_websocket {
            let mut response = Response::new(Body::from("not a websocket handshake"));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                echo(TokioIo::new(upgraded)).await;
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", ACCEPT)
            .body(Body::empty())
            .unwrap()
    })
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let upstream = echo_upstream();
    let proxy = crate::support::serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());

    let mut stream = connect(proxy).await;
    stream
        .write_all(
            format!(
                "GET /chat HTTP/1.1\r\n\
                 host: chat.example.com\r\n\
                 upgrade: websocket\r\n\
                 connection: Upgrade\r\n\
                 sec-websocket-key: {KEY}\r\n\
                 sec-websocket-version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let response_head = String::from_utf8(crate::support::read_head(&mut stream).await).unwrap();
    let (status, headers) = head(&response_head);
    assert_eq!(
        status, "HTTP/1.1 101 Switching Protocols",
        "{response_head}"
    );
    assert!(
        headers.contains(&("upgrade".into(), "websocket".into())),
        "{response_head}"
    );
    assert!(
        headers.contains(&("connection".into(), "upgrade".into())),
        "{response_head}"
    );
    assert!(headers.contains(&("sec-websocket-accept".into(), ACCEPT.into())));
    assert!(headers.contains(&("via".into(), "1.1 meshgate".into())));

    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let messages: [(u8, &[u8]); 3] = [(TEXT, b"hello"), (BINARY, &big), (TEXT, "é ∀".as_bytes())];
    for (opcode, payload) in messages {
        stream
            .write_all(&frame(opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d])))
            .await
            .unwrap();
        let (echo_opcode, masked, echoed) =
            tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
                .await
                .expect("the echo comes back")
                .unwrap();
        assert_eq!((echo_opcode, masked), (opcode, false));
        assert_eq!(echoed, payload);
    }

    // A close handshake, then the upstream hangs up and the tunnel ends.
    stream
        .write_all(&frame(CLOSE, &1000u16.to_be_bytes(), Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let (opcode, _, payload) = read_frame(&mut stream).await.unwrap();
    assert_eq!(
        (opcode, payload.as_slice()),
        (CLOSE, &1000u16.to_be_bytes()[..])
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the proxy closes the tunnel once the upstream has");
    assert_eq!(read.unwrap(), 0);
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_response() {
    let upstream = echo_upstream();
    let proxy = crate::support::serve_proxy(Proxy::to(format!("http://{upstream}")).unwrap());
    // A wrong key: the upstream answers 400 and the connection stays HTTP
    // (`close` so that the exchange ends).
    let response = crate::support::exchange(
        proxy,
        "GET /chat HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade, close\r\n\
         sec-websocket-key: bm90IHRoZSBrZXk=\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("not a websocket handshake"),
        "{response}"
    );
}

#[tokio::test]
async fn without_server_upgrades_the_client_gets_a_101_and_a_closed_connection() {
    let upstream = echo_upstream();
    let proxy = Proxy::to(format!("http://{upstream}")).unwrap();
    // A front server that does not call `.with_upgrades()`: hyper still
    // hands out an `OnUpgrade`, which then fails.
    let listener = crate::support::listener();
    let front = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    tower::ServiceExt::oneshot(proxy.clone(), request)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // `exchange` reads until the server closes, within 10 s: the failed
    // tunnel neither hangs nor carries bytes.
    let response = crate::support::exchange(
        front,
        &format!(
            "GET /chat HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
        ),
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\n"), "{response}");
}
