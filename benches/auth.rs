//! API-key and JWT checks through the layers against a bare `service_fn`
//! and a raw `jsonwebtoken::decode` of the same token, in the same run.
//! `auth/jwt_hs256` includes building the request, the claim headers, the
//! extension and the inner `service_fn`; `auth/jwt_hs256_raw_decode` is
//! the decode alone.
//!
//! `cargo bench --bench auth`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{EncodingKey, Header, Validation, encode, get_current_timestamp};
use meshgate::auth::api_key::ApiKeyLayer;
use meshgate::auth::jwt::{Algorithm, Issuer, JwtKey, JwtLayer};
use meshgate::auth::{Consumer, ConsumerStore};
use serde_json::{Map, Value, json};
use tower::{Layer, Service, service_fn};

const SECRET: &[u8] = b"bench-secret-0123456789-abcdefghij";
const RSA_PRIVATE: &[u8] = include_bytes!("../tests/auth/fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/auth/fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../tests/auth/fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/auth/fixtures/ec_public.pem");

async fn ok(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

fn request(name: &'static str, value: &HeaderValue) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert(name, value.clone());
    req
}

fn claims() -> Value {
    json!({
        "sub": "user-7", "iss": "https://idp.bench/", "aud": "orders",
        "exp": get_current_timestamp() + 86_400, "roles": ["admin", "ops"],
        "scope": "orders:read",
    })
}

fn issuer(key: JwtKey) -> Issuer {
    Issuer::new()
        .issuer("https://idp.bench/")
        .audience("orders")
        .key(key)
}

/// The validation the layer applies for `issuer(..)`.
fn raw_validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["https://idp.bench/"]);
    validation.set_audience(&["orders"]);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let store = ConsumerStore::new();
    for i in 0..10_000 {
        store
            .add_key(Consumer::new(format!("c{i}")), &format!("key-{i}"))
            .unwrap();
    }
    let key = HeaderValue::from_static("key-4242");

    let mut bare = service_fn(ok);
    c.bench_function("auth/service_fn", |b| {
        b.to_async(&rt).iter(|| {
            let fut = bare.call(request("x-api-key", &key));
            async move { black_box(fut.await.unwrap()) }
        })
    });
    c.bench_function("auth/consumer_store_lookup_10k", |b| {
        b.iter(|| black_box(store.authenticate(black_box(b"key-4242"))))
    });
    let mut api_key = ApiKeyLayer::new(store.clone()).layer(service_fn(ok));
    c.bench_function("auth/api_key", |b| {
        b.to_async(&rt).iter(|| {
            let fut = api_key.call(request("x-api-key", &key));
            async move { black_box(fut.await.unwrap()) }
        })
    });

    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let raw_key = jsonwebtoken::DecodingKey::from_secret(SECRET);
    let validation = raw_validation();
    c.bench_function("auth/jwt_hs256_raw_decode", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<Map<String, Value>>(black_box(&hs), &raw_key, &validation)
                    .unwrap(),
            )
        })
    });

    let cases = [
        (
            "auth/jwt_hs256",
            hs.clone(),
            JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
        ),
        (
            "auth/jwt_rs256",
            encode(
                &Header::new(Algorithm::RS256),
                &claims(),
                &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            )
            .unwrap(),
            JwtKey::from_pem(Algorithm::RS256, RSA_PUBLIC).unwrap(),
        ),
        (
            "auth/jwt_es256",
            encode(
                &Header::new(Algorithm::ES256),
                &claims(),
                &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            )
            .unwrap(),
            JwtKey::from_pem(Algorithm::ES256, EC_PUBLIC).unwrap(),
        ),
    ];
    for (name, token, key) in cases {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let mut svc = JwtLayer::new(issuer(key)).layer(service_fn(ok));
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let fut = svc.call(request("authorization", &bearer));
                async move {
                    let res = fut.await.unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res)
                }
            })
        });
    }
}

/// `AUTH_PROFILE=<service_fn|raw_hs256|jwt_hs256>:<n>` runs `n` calls of
/// one variant and exits, for instruction counts (callgrind or `perf stat
/// -e instructions`), which a loaded machine does not blur.
fn profile(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: u64 = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    rt.block_on(async {
        match variant {
            "service_fn" => {
                let mut s = service_fn(ok);
                for _ in 0..n {
                    black_box(s.call(request("authorization", &bearer)).await.unwrap());
                }
            }
            "raw_hs256" => {
                let key = jsonwebtoken::DecodingKey::from_secret(SECRET);
                let validation = raw_validation();
                for _ in 0..n {
                    black_box(
                        jsonwebtoken::decode::<Map<String, Value>>(
                            black_box(&token),
                            &key,
                            &validation,
                        )
                        .unwrap(),
                    );
                }
            }
            _ => {
                let key = JwtKey::hmac(Algorithm::HS256, SECRET).unwrap();
                let mut s = JwtLayer::new(issuer(key)).layer(service_fn(ok));
                for _ in 0..n {
                    let res = s.call(request("authorization", &bearer)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(res);
                }
            }
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("AUTH_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
