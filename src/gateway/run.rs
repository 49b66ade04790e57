//! The gateway: built stacks bound to their listeners and served.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::{Request, Response};
use hyper::body::Incoming;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use super::admin::Admin;
use super::build::{self, BuildErrors, Built};
use super::server::{Connections, Server, ServerConfig};
use crate::body::Body;
use crate::config::{Config, Listener, Protocol};
use crate::limit::RequestBodyLimitLayer;
use crate::observe::{AccessLogLayer, MetricsLayer, RequestIdLayer, TraceContextLayer};
use crate::routing::MatchedRoute;

/// The traffic service of one listener: every request of a connection goes
/// through it.
pub type GatewayService = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// A gateway built from a [`Config`]: upstreams (balancers with their
/// health checks, pooled proxies), routes with their stacks, and what the
/// admin endpoints read.
///
/// Building starts the upstreams' health checks, so it must run inside a
/// tokio runtime. They stop when the gateway (and every service cloned from
/// it) is dropped.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    built: Arc<Built>,
    metrics: Option<PrometheusHandle>,
    /// Each listener's TLS acceptor, in config order.
    #[cfg(feature = "tls")]
    tls: Vec<Option<crate::tls::ServerTls>>,
}

/// Latency buckets of `meshgate_request_duration_seconds`, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder the gateway installs on first use,
/// or `None` when the application installed a recorder of its own (then the
/// admin `/metrics` endpoint says so instead of serving an empty page).
pub(crate) fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

impl Gateway {
    /// Builds every stack the config describes.
    ///
    /// # Errors
    /// The problems found, each naming its config field: sections this build
    /// does not support yet, endpoints the balancer refuses, route conflicts
    /// the router finds.
    pub fn from_config(config: Config) -> Result<Self, BuildErrors> {
        let built = build::build(&config)?;
        #[cfg(feature = "tls")]
        let tls = build::listener_tls(&config)?;
        let metrics = if config.metrics.enabled {
            prometheus()
        } else {
            None
        };
        Ok(Self {
            config: Arc::new(config),
            built: Arc::new(built),
            metrics,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// The config the gateway was built from.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The traffic stack for `listener`: request id → trace context →
    /// access log → metrics → body limit → router → per-route stacks (the
    /// first four as the config turns them on).
    #[must_use]
    pub fn service(&self, listener: &Listener) -> GatewayService {
        let max_body = usize::try_from(listener.limits.max_request_body.0).unwrap_or(usize::MAX);
        let access_log = self.config.access_log.enabled.then(AccessLogLayer::new);
        let metrics = self.metrics.is_some().then(|| {
            MetricsLayer::new()
                .route_from(|extensions| extensions.get::<MatchedRoute>().map(MatchedRoute::name))
        });
        // The access log and transform templates read the id from the
        // request's extensions; without either, the insert is saved.
        let id_readers = self.config.access_log.enabled
            || self.config.routes.iter().any(|r| r.transform.is_some());
        let request_id = (self.config.request_id.enabled).then(|| {
            RequestIdLayer::new()
                .header(self.config.request_id.header.clone())
                .tag_requests(id_readers)
        });
        let trace_context = self
            .config
            .trace_context
            .enabled
            .then(TraceContextLayer::new);
        let service = ServiceBuilder::new()
            .option_layer(request_id)
            .option_layer(trace_context)
            .option_layer(access_log)
            .option_layer(metrics)
            .layer(RequestBodyLimitLayer::new(max_body))
            .service(self.built.router.clone());
        BoxCloneSyncService::new(tower::ServiceExt::map_response(service, |response| {
            response.map(Body::new)
        }))
    }

    /// Binds every listener and the admin listener (port 0 picks a free
    /// port; the bound addresses are on the result).
    ///
    /// # Errors
    /// The first bind error, naming the listener.
    pub async fn bind(self) -> io::Result<BoundGateway> {
        let mut listeners = Vec::with_capacity(self.config.listeners.len());
        #[cfg(feature = "tls")]
        let mut tls = self.tls.iter();
        for listener in &self.config.listeners {
            let server_config = ServerConfig::new()
                .max_header_bytes(
                    usize::try_from(listener.limits.max_header_bytes.0).unwrap_or(usize::MAX),
                )
                .max_headers(listener.limits.max_headers)
                .header_read_timeout(listener.limits.header_read_timeout)
                .max_connections(listener.limits.max_connections)
                .shutdown_timeout(listener.shutdown_timeout)
                .http2(listener.protocols.contains(&Protocol::H2c));
            #[cfg(feature = "tls")]
            // One entry per listener, in config order.
            let server_config = match tls.next().cloned().flatten() {
                Some(tls) => server_config.tls(tls),
                None => server_config,
            };
            let server = Server::bind(listener.address, server_config)
                .await
                .map_err(|e| {
                    named(
                        e,
                        &format!("listener {:?} on {}", listener.name, listener.address),
                    )
                })?;
            listeners.push(BoundListener {
                name: listener.name.clone(),
                service: self.service(listener),
                server,
            });
        }
        let admin = if self.config.admin.enabled {
            let server = Server::bind(self.config.admin.address, ServerConfig::new())
                .await
                .map_err(|e| {
                    named(
                        e,
                        &format!("admin listener on {}", self.config.admin.address),
                    )
                })?;
            Some(server)
        } else {
            None
        };
        Ok(BoundGateway {
            gateway: self,
            listeners,
            admin,
        })
    }
}

fn named(error: io::Error, what: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// A listener bound to its address, with its stack.
#[derive(Debug)]
struct BoundListener {
    name: String,
    service: GatewayService,
    server: Server,
}

/// A [`Gateway`] with its listeners bound, ready to serve.
#[derive(Debug)]
pub struct BoundGateway {
    gateway: Gateway,
    listeners: Vec<BoundListener>,
    admin: Option<Server>,
}

impl BoundGateway {
    /// Each traffic listener's name and bound address, in config order.
    #[must_use]
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.server.local_addr().ok()?)))
            .collect()
    }

    /// The admin listener's bound address, when it runs.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains every listener (each
    /// up to its shutdown timeout) and returns.
    ///
    /// # Errors
    /// A listener's fatal error.
    pub async fn serve<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let mut servers = Servers::new();
        let mut connections: Vec<(String, Connections)> = Vec::new();
        for listener in self.listeners {
            connections.push((listener.name.clone(), listener.server.connections()));
            servers.spawn(listener.server, listener.service);
        }
        if let Some(admin) = self.admin {
            let service = Admin::new(
                Arc::clone(&self.gateway.config),
                Arc::clone(&self.gateway.built),
                self.gateway.metrics.clone(),
                connections,
            );
            servers.spawn(admin, service);
        }
        servers.run_until(shutdown).await
    }
}

/// Servers run together: each spawned on its own task, all asked to stop
/// (and drain) when the shutdown future completes; the first fatal error
/// of any is the result. The gateway's and the sidecar's listeners run
/// this way.
pub(crate) struct Servers {
    tasks: tokio::task::JoinSet<io::Result<()>>,
    stop: watch::Sender<bool>,
}

impl Servers {
    pub(crate) fn new() -> Self {
        Self {
            tasks: tokio::task::JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Serves `service` on `server` until the shutdown.
    pub(crate) fn spawn<S, B>(&mut self, server: Server, service: S)
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        let mut stopped = self.stop.subscribe();
        self.tasks.spawn(server.serve(service, async move {
            // An error means the sender is gone, which also means stopping.
            let _stopping = stopped.wait_for(|stop| *stop).await.is_ok();
        }));
    }

    /// Waits for `shutdown`, then stops every server and waits for them
    /// to drain.
    pub(crate) async fn run_until<F>(mut self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        shutdown.await;
        let _ = self.stop.send(true);
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(error),
                Err(error) => result = Err(io::Error::other(error)),
            }
        }
        result
    }
}
