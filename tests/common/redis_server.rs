//! A `redis-server` child process on a free loopback port, for the tests
//! of the Redis rate-limit backend (included by `tests/rate_limit` and
//! `tests/gateway` with `#[path = "../common/redis_server.rs"]`).
//!
//! `redis-server` must be on PATH (`scripts/test` installs it); the tests
//! fail, not skip, when it is missing.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { child: None, port };
        server.spawn();
        server
    }

    /// (Re)starts the server on its port and waits until it accepts
    /// connections.
    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis backend tests need it on PATH; \
                     install it (apt-get install redis-server) or run scripts/test, which does"
                )
            });
        self.child = Some(child);
        // Ready when it accepts connections: bounded polling.
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        panic!(
            "redis-server did not listen on port {} within 5 s",
            self.port
        );
    }

    /// Stops the server (an outage), if it runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
