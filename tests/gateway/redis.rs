//! A `backend: redis` rate limit through the gateway, against a real
//! `redis-server` on a free loopback port (on PATH; `scripts/test` installs
//! it). Two gateways share one limit.

use http::StatusCode;

use super::assembly::{Running, named_upstream};
use super::redis_server::RedisServer;

#[tokio::test]
async fn two_gateways_share_one_redis_limit() {
    let redis = RedisServer::start();
    let (orders, _) = named_upstream("orders").await;
    let yaml = format!(
        "listeners: [{{ address: 127.0.0.1:0 }}]
admin: {{ address: 127.0.0.1:0 }}
access_log: {{ enabled: false }}
redis: {{ url: \"{}\" }}
upstreams: [{{ name: orders, endpoints: [\"{orders}\"] }}]
routes:
  - name: limited
    match: {{ paths: [{{ prefix: / }}] }}
    upstream: orders
    rate_limit: {{ key: global, backend: redis, quotas: [{{ limit: 3, per: minute }}] }}
",
        redis.url()
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
