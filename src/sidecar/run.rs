//! The sidecar: built stacks bound to their listeners and served.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use super::build::{self, Built};
use super::config::{SidecarConfig, SidecarError, WorkloadTls};
use crate::gateway::admin::{Admin, AdminParts};
use crate::gateway::run::Servers;
use crate::gateway::{Server, ServerConfig};
use crate::tls::{TlsMaterial, TlsWatcher};

/// A sidecar built from a [`SidecarConfig`]: the inbound and outbound
/// stacks, ready to bind. See the [module docs](super).
///
/// Building must run inside a tokio runtime (balancers with outlier
/// detection start their timers).
#[derive(Debug)]
pub struct Sidecar {
    config: SidecarConfig,
    built: Built,
    metrics: Option<PrometheusHandle>,
    /// Re-reads the TLS files while the sidecar lives (`tls_files` only).
    _watcher: Option<TlsWatcher>,
}

impl Sidecar {
    /// Validates the config and builds both stacks; with
    /// [`tls_files`](SidecarConfig::tls_files), starts watching them.
    ///
    /// # Errors
    /// Every problem found, each starting with its field: a missing
    /// certificate, key, trust bundle or application address, PEM or files
    /// that do not parse or a key that does not match, a non-loopback
    /// outbound address, an outbound service without endpoints, with a bad
    /// name, endpoint or expected identity, two services of one name.
    pub fn new(config: SidecarConfig) -> Result<Self, SidecarError> {
        let built = build::build(&config).map_err(SidecarError)?;
        let metrics = if config.metrics {
            crate::gateway::run::prometheus()
        } else {
            None
        };
        let watcher = match &config.tls {
            WorkloadTls::Files { watch, .. } => Some(built.material.watch(*watch)),
            _ => None,
        };
        Ok(Self {
            config,
            built,
            metrics,
            _watcher: watcher,
        })
    }

    /// Binds the inbound, outbound and admin listeners (port 0 picks a
    /// free port; the bound addresses are on the result).
    ///
    /// # Errors
    /// The first bind error, naming the listener.
    pub async fn bind(self) -> io::Result<BoundSidecar> {
        let bind = |addr: SocketAddr, config: ServerConfig, what: &'static str| async move {
            Server::bind(addr, config)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("{what} listener on {addr}: {e}")))
        };
        let inbound = bind(
            self.config.inbound_addr,
            build::inbound_server(&self.config, &self.built.inbound_tls),
            "inbound",
        )
        .await?;
        let outbound = bind(
            self.config.outbound_addr,
            self.config.server.clone(),
            "outbound",
        )
        .await?;
        let admin = bind(self.config.admin_addr, ServerConfig::new(), "admin").await?;
        let addrs = [
            inbound.local_addr()?,
            outbound.local_addr()?,
            admin.local_addr()?,
        ];
        Ok(BoundSidecar {
            sidecar: self,
            inbound,
            outbound,
            admin,
            addrs,
        })
    }
}

/// A [`Sidecar`] with its listeners bound, ready to serve.
#[derive(Debug)]
pub struct BoundSidecar {
    sidecar: Sidecar,
    inbound: Server,
    outbound: Server,
    admin: Server,
    addrs: [SocketAddr; 3],
}

impl BoundSidecar {
    /// The inbound (mTLS) listener's address: what peers' outbound
    /// services list as endpoint.
    #[must_use]
    pub fn inbound_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The outbound (plain HTTP) listener's address: where the local
    /// application sends its calls.
    #[must_use]
    pub fn outbound_addr(&self) -> SocketAddr {
        self.addrs[1]
    }

    /// The admin listener's address.
    #[must_use]
    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs[2]
    }

    /// The workload's TLS material, shared with both listeners: call
    /// [`reload`](TlsMaterial::reload) (on SIGHUP, say) to re-read the
    /// files at once, or [`replace_pem`](TlsMaterial::replace_pem) to
    /// install new PEM; new handshakes use it, established connections go
    /// on.
    #[must_use]
    pub fn tls(&self) -> &TlsMaterial {
        &self.sidecar.built.material
    }

    /// Serves until `shutdown` completes, then drains the listeners (each
    /// up to the server config's shutdown timeout) and returns.
    ///
    /// # Errors
    /// A listener's fatal error.
    pub async fn serve<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let Self {
            sidecar,
            inbound,
            outbound,
            admin,
            ..
        } = self;
        let connections = vec![
            ("inbound".to_owned(), inbound.connections()),
            ("outbound".to_owned(), outbound.connections()),
        ];
        let admin_service = Admin::from_parts(admin_parts(&sidecar, connections));
        let mut servers = Servers::new();
        servers.spawn(inbound, sidecar.built.inbound.clone());
        servers.spawn(outbound, sidecar.built.outbound.clone());
        servers.spawn(admin, admin_service);
        servers.run_until(shutdown).await
    }
}

/// What the admin endpoints show of a sidecar: each outbound service as
/// an upstream (its balancer), its breaker and retries under the service's
/// name, and both listeners' connections. Ready once serving: a sidecar's
/// readiness does not depend on the services its application calls.
fn admin_parts(
    sidecar: &Sidecar,
    connections: Vec<(String, crate::gateway::Connections)>,
) -> AdminParts {
    let services = &sidecar.built.services;
    AdminParts {
        metrics_path: sidecar.config.metrics.then(|| "/metrics".to_owned()),
        metrics: sidecar.metrics.clone(),
        ready_needs_upstreams: false,
        upstreams: services
            .iter()
            .map(|s| (s.name.clone(), s.balancer.clone()))
            .collect(),
        breakers: services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.name.clone(), s.breaker.clone()?)))
            .collect(),
        retries: services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.retry.clone()?)))
            .collect(),
        limiters: Vec::new(),
        caches: Vec::new(),
        routes: sidecar
            .config
            .services
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "direction": "outbound",
                    "upstreams": [s.name],
                    "timeout_ms": u64::try_from(s.timeout.as_millis()).unwrap_or(u64::MAX),
                    "retry": s.retry.is_some(),
                    "circuit_breaker": s.circuit_breaker.is_some(),
                })
            })
            .collect(),
        connections,
    }
}
