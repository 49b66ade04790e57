//! The meshgate gateway: a YAML-configured API gateway in one command.
//!
//! ```text
//! cargo run --release --example gateway                          # the demo
//! cargo run --release --example gateway -- --config gateway.yaml # your config
//! cargo run --release --example gateway -- --check gateway.yaml  # validate, exit 0/1
//! ```
//!
//! With no arguments it starts small demo services on loopback in the same
//! process (two `users` instances, a `users-canary`, `orders` and a
//! `flaky` one) and serves meshgate's default config
//! (`meshgate::config::DEFAULT_CONFIG`) in front of them, on
//! `127.0.0.1:8080`, with the admin endpoints on `127.0.0.1:9901`. Then:
//!
//! ```text
//! curl -i localhost:8080/users/7
//! #   200 from users instance 1 or 2 (round robin), 10 % from users-canary;
//! #   the upstream saw x-request-id, traceparent, x-forwarded-for
//! curl -i -H 'x-canary: true' localhost:8080/users/7
//! #   always users-canary
//! curl -i localhost:8080/flaky
//! #   200: the demo fails two calls in three with 503, the retry cures it
//! for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code}\n' localhost:8080/breaker; done
//! #   500 500 500 503: the breaker opened after 3 failures (Retry-After: 10)
//! curl -i localhost:8080/nowhere
//! #   404 application/problem+json
//! curl -s localhost:9901/metrics | grep meshgate_requests_total
//! curl -s localhost:9901/admin/status
//! curl -s localhost:9901/readyz
//! ```
//!
//! `TOKIO_WORKER_THREADS` sets the worker threads (default: one per core;
//! `1` runs tokio's single-threaded scheduler). `MESHGATE_LOG` sets the log level (`info` by default, which includes the
//! access log; `warn` silences it). The config's `access_log.format: json`
//! writes JSON lines. SIGTERM or Ctrl-C drains in-flight requests and exits.

mod demo;

/// mimalloc rather than glibc's malloc: a proxied request makes a few dozen
/// small allocations (hyper's and the layers'), and glibc's allocator spends
/// about a tenth of the request's instructions on them. A deployment
/// choice of this binary, like nginx's pool allocator; applications that
/// embed meshgate pick their own.
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;
#[path = "../support/allocator.rs"]
mod allocator;

use std::process::ExitCode;

use meshgate::config::{AccessLogFormat, Config, DEFAULT_CONFIG};
use meshgate::gateway::Gateway;

const USAGE: &str = "usage: gateway [--config FILE | --check FILE]";

fn main() -> ExitCode {
    // One worker thread (TOKIO_WORKER_THREADS=1, as the load bench runs it)
    // gets tokio's single-threaded scheduler, which skips work stealing.
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok());
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("meshgate: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, file) = match args.as_slice() {
        [] => (Mode::Demo, None),
        [flag, file] if flag == "--config" => (Mode::Serve, Some(file.clone())),
        [flag, file] if flag == "--check" => (Mode::Check, Some(file.clone())),
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let config = match file {
        Some(path) => match Config::from_file(&path) {
            Ok(config) => config,
            Err(errors) => {
                eprintln!("{path}: invalid config");
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        },
        None => match demo_config().await {
            Ok(config) => config,
            Err(error) => {
                eprintln!("demo: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    init_logging(&config);

    let gateway = match Gateway::from_config(config) {
        Ok(gateway) => gateway,
        Err(errors) => {
            eprintln!("config cannot be served:");
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if mode == Mode::Check {
        println!("config ok");
        return ExitCode::SUCCESS;
    }

    let bound = match gateway.bind().await {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in bound.listener_addrs() {
        println!("meshgate: listener {name} on http://{addr}");
    }
    if let Some(addr) = bound.admin_addr() {
        println!("meshgate: admin on http://{addr} (/healthz /readyz /metrics /admin/status)");
    }
    match bound.serve(shutdown_signal()).await {
        Ok(()) => {
            println!("meshgate: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("meshgate: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Demo,
    Serve,
    Check,
}

/// Starts the demo services and loads the default config with their
/// addresses.
async fn demo_config() -> Result<Config, String> {
    let users_1 = demo::echo("users", 1).await.map_err(|e| e.to_string())?;
    let users_2 = demo::echo("users", 2).await.map_err(|e| e.to_string())?;
    let canary = demo::echo("users-canary", 1)
        .await
        .map_err(|e| e.to_string())?;
    let orders = demo::echo("orders", 1).await.map_err(|e| e.to_string())?;
    let flaky = demo::flaky().await.map_err(|e| e.to_string())?;
    let addrs = [
        users_1.addr,
        users_2.addr,
        canary.addr,
        orders.addr,
        flaky.addr,
    ];
    let names = [
        "MESHGATE_DEMO_USERS_1",
        "MESHGATE_DEMO_USERS_2",
        "MESHGATE_DEMO_USERS_CANARY",
        "MESHGATE_DEMO_ORDERS",
        "MESHGATE_DEMO_FLAKY",
    ];
    let env = |name: &str| {
        if let Some(i) = names.iter().position(|n| *n == name) {
            return Some(addrs[i].to_string());
        }
        match name {
            "MESHGATE_DEMO_API_KEY" => Some(DEMO_API_KEY.to_owned()),
            "MESHGATE_DEMO_JWT_SECRET" => Some(DEMO_JWT_SECRET.to_owned()),
            _ => std::env::var(name).ok(),
        }
    };
    let config = Config::from_yaml_str_with_env(DEFAULT_CONFIG, env).map_err(|e| e.to_string())?;
    println!("meshgate demo: API key for /orders:   X-API-Key: {DEMO_API_KEY}");
    println!(
        "meshgate demo: JWT for /orders:       Authorization: Bearer {}",
        demo_token()?
    );
    Ok(config)
}

/// The demo consumer's API key: a demo secret, printed at start-up.
const DEMO_API_KEY: &str = "demo-key-7f3a9c";
/// The demo issuer's HS256 secret (at least 32 bytes).
const DEMO_JWT_SECRET: &str = "meshgate-demo-secret-not-for-production!";

/// A token of the demo issuer for `demo-user`, valid for a day.
fn demo_token() -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": "meshgate-demo",
        "aud": "meshgate-demo",
        "sub": "demo-user",
        "roles": ["reader"],
        "iat": now,
        "exp": now + 86_400,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEMO_JWT_SECRET.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

fn init_logging(config: &Config) {
    let level = std::env::var("MESHGATE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt().with_max_level(level);
    let _ = match config.access_log.format {
        AccessLogFormat::Json => builder.json().try_init(),
        AccessLogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    println!("meshgate: shutting down, draining in-flight requests");
}
