//! A `backend: redis` rate limit through the gateway, against a real
//! `redis-server` on a free loopback port (on PATH; `scripts/test` installs
//! it). Two gateways share one limit.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use super::assembly::{Running, named_upstream};

struct RedisServer(Child, u16);

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it or run scripts/test, which does"
                )
            });
        // Ready when it accepts connections: bounded polling.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self(child, port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on port {port} within 5 s");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_gateways_share_one_redis_limit() {
    let redis = RedisServer::start();
    let (orders, _) = named_upstream("orders").await;
    let yaml = format!(
        "listeners: [{{ address: 127.0.0.1:0 }}]
admin: {{ address: 127.0.0.1:0 }}
access_log: {{ enabled: false }}
redis: {{ url: \"redis://127.0.0.1:{}/\" }}
upstreams: [{{ name: orders, endpoints: [\"{orders}\"] }}]
routes:
  - name: limited
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: orders
    rate_limit: {{ key: global, backend: redis, quotas: [{{ limit: 3, per: minute }}] }}
",
        redis.1
    );
    let first = Running::start(&yaml).await;
    let second = Running::start(&yaml).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let gateway = if i % 2 == 0 { &first } else { &second };
        statuses.push(gateway.get("/", &[]).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    first.stop().await;
    second.stop().await;
}
