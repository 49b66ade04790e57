//! Config → the two stacks. No request logic lives here: every behaviour is
//! a layer's.

use std::convert::Infallible;
use std::future::{Ready, ready};

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::util::{BoxCloneSyncService, Either};
use tower_layer::Layer;

use super::config::{MtlsMode, OutboundService, SidecarConfig, WorkloadTls};
use crate::auth::authz::AuthzLayer;
use crate::auth::peer_identity::identity_from_extensions;
use crate::body::Body;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::error::{Rejection, RejectionKind};
use crate::gateway::ServerConfig;
use crate::load_balancer::{self, LoadBalancerLayer};
use crate::observe::{AccessLogLayer, MetricsLayer, RequestIdLayer, TraceContextLayer};
use crate::proxy::Proxy;
use crate::retry::RetryLayer;
use crate::routing::{MatchedRoute, Route, Router};
use crate::timeout::TimeoutLayer;
use crate::tls::{ClientAuth, ServerTls, TlsMaterial};

/// A listener's whole stack, type-erased once.
pub(crate) type ListenerService =
    BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// The outbound router, or the 404 answer when there is no service.
type Outbound = Either<Router<Incoming>, tower::util::ServiceFn<NoRoute>>;
type NoRoute = fn(Request<Incoming>) -> Ready<Result<Response<Body>, Infallible>>;

fn no_route(_request: Request<Incoming>) -> Ready<Result<Response<Body>, Infallible>> {
    ready(Ok(Rejection::new(RejectionKind::NoRoute)
        .into_response()
        .map(Body::new)))
}

/// One outbound service as built, kept for the admin endpoints.
#[derive(Debug, Clone)]
pub(crate) struct BuiltService {
    pub(crate) name: String,
    pub(crate) balancer: LoadBalancerLayer,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) breaker: Option<CircuitBreakerLayer>,
}

/// Everything built from one config.
#[derive(Debug)]
pub(crate) struct Built {
    /// The workload's certificate, key and trust bundle, read by both
    /// directions at each handshake.
    pub(crate) material: TlsMaterial,
    pub(crate) inbound_tls: ServerTls,
    pub(crate) inbound: ListenerService,
    pub(crate) outbound: ListenerService,
    pub(crate) services: Vec<BuiltService>,
}

/// Validates the config and builds both stacks; every problem names its
/// field.
pub(crate) fn build(config: &SidecarConfig) -> Result<Built, Vec<String>> {
    let mut problems = Vec::new();
    let material = match workload_material(&config.tls) {
        Ok(material) => Some(material),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let app = match config.app_addr {
        Some(addr) => Some(addr),
        None => {
            problems.push("app_addr: the local application's address is required".to_owned());
            None
        }
    };
    if !config.outbound_addr.ip().is_loopback() && !config.allow_non_loopback_outbound {
        problems.push(format!(
            "outbound_addr: {} is not a loopback address; the outbound listener takes plain \
             text and calls peers with this workload's identity, so only the local \
             application may reach it (allow_non_loopback_outbound(true) overrides)",
            config.outbound_addr
        ));
    }
    let Some(material) = material else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let inbound_tls = material.server_tls(match config.mode {
        MtlsMode::Strict => ClientAuth::Required,
        MtlsMode::Permissive => ClientAuth::Optional,
    });
    let mut services = Vec::new();
    let mut routes = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        match outbound_service(&material, service) {
            Ok((built, route)) => {
                services.push(built);
                routes.push(route);
            }
            Err(problem) => problems.push(format!("outbound[{i}]{problem}")),
        }
    }
    // A sidecar whose application calls nothing has no routes, which the
    // router refuses; then every outbound call is answered 404 directly.
    let router = if routes.is_empty() {
        Some(Either::Right(tower::service_fn(no_route as NoRoute)))
    } else {
        match Router::builder().routes(routes).build() {
            Ok(router) => Some(Either::Left(router)),
            Err(error) => {
                problems.push(format!("outbound: {error}"));
                None
            }
        }
    };
    let (Some(app), Some(router)) = (app, router) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let app = Proxy::builder()
        .upstream(
            format!("http://{app}")
                .parse()
                .map_err(|e| vec![format!("app_addr: {e}")])?,
        )
        .build()
        .map_err(|e| vec![format!("app_addr: {e}")])?;
    Ok(Built {
        material,
        inbound_tls,
        inbound: inbound_stack(config, app),
        outbound: outbound_stack(config, router),
        services,
    })
}

/// The workload's material from the config, each problem naming its
/// field.
fn workload_material(tls: &WorkloadTls) -> Result<TlsMaterial, String> {
    match tls {
        WorkloadTls::Missing => Err(
            "certificate_pem: the workload certificate, key and trust bundle are required \
             (certificate_pem with trust_bundle_pem, tls_files or tls_material)"
                .to_owned(),
        ),
        WorkloadTls::Pem {
            chain_pem,
            key_pem,
            trust_pem,
        } => {
            if chain_pem.is_empty() || key_pem.is_empty() {
                return Err(
                    "certificate_pem: the workload certificate and key are required".to_owned(),
                );
            }
            if trust_pem.is_empty() {
                return Err(
                    "trust_bundle_pem: the trust bundle (CA certificates) is required".to_owned(),
                );
            }
            TlsMaterial::from_pem(chain_pem, key_pem, trust_pem)
                .map_err(|error| format!("certificate_pem / trust_bundle_pem: {error}"))
        }
        WorkloadTls::Files { files, .. } => {
            TlsMaterial::from_files(files.clone()).map_err(|error| format!("tls_files: {error}"))
        }
        WorkloadTls::Material(material) => Ok(material.clone()),
    }
}

/// The inbound listener's server settings: the sidecar's limits with the
/// inbound TLS; PERMISSIVE also serves plain text on the same port.
pub(crate) fn inbound_server(config: &SidecarConfig, tls: &ServerTls) -> ServerConfig {
    config
        .server
        .clone()
        .tls(tls.clone())
        .tls_permissive(config.mode == MtlsMode::Permissive)
}

/// The proxy that originates mTLS to one outbound service's peers: the
/// workload's current certificate as client identity, its current trust
/// bundle as roots, and the peer's certificate must carry one of the
/// expected SPIFFE IDs or, without any, name the service (DNS SAN).
fn outbound_proxy(material: &TlsMaterial, service: &OutboundService) -> Result<Proxy, String> {
    let proxy = Proxy::builder().tls_material(material.clone());
    let proxy = if service.expected_identities.is_empty() {
        proxy.tls_server_name(service.name.clone())
    } else {
        proxy.tls_peer_identities(service.expected_identities.iter().cloned())
    };
    proxy
        .connect_timeout(service.connect_timeout)
        // A sidecar is transparent: the peer's inbound sets what its
        // application should see.
        .x_forwarded(false)
        .via(None)
        .build()
        .map_err(|error| match error.to_string() {
            message if message.contains("identit") => format!(".expected_identities: {message}"),
            message => format!(": {message}"),
        })
}

/// One outbound service: its route (by host) to timeout → retry →
/// breaker → balancer → mTLS proxy.
fn outbound_service(
    material: &TlsMaterial,
    service: &OutboundService,
) -> Result<(BuiltService, Route<Incoming>), String> {
    let name = &service.name;
    if name.is_empty()
        || name.contains([':', '/', '*', ' '])
        || http::uri::Authority::try_from(name.as_str()).is_err()
    {
        return Err(format!(
            ".name: {name:?} is not a host name (no port, scheme, path or wildcard)"
        ));
    }
    if service.endpoints.is_empty() {
        return Err(".endpoints: at least one peer (host:port) is required".to_owned());
    }
    let mut balancer = LoadBalancerLayer::builder().strategy(service.balancing.clone());
    for (i, endpoint) in service.endpoints.iter().enumerate() {
        if endpoint.contains("://") {
            return Err(format!(
                ".endpoints[{i}]: {endpoint:?}: give host:port; peers are always reached over mTLS"
            ));
        }
        let parsed = load_balancer::Endpoint::parse(&format!("https://{endpoint}"))
            .map_err(|e| format!(".endpoints[{i}]: {e}"))?;
        balancer = balancer.endpoint(parsed);
    }
    if let Some(outlier) = &service.outlier_detection {
        balancer = balancer.outlier_detection(outlier.clone());
    }
    let balancer = balancer.build().map_err(|e| format!(".endpoints: {e}"))?;
    let proxy = outbound_proxy(material, service)?;
    let timeout = TimeoutLayer::new(service.timeout);
    let balanced = balancer.layer(proxy);
    let route = Route::new(name.clone()).host(name.clone());
    // Composed with concrete types and boxed once by the route.
    let route = match (&service.retry, &service.circuit_breaker) {
        (Some(retry), Some(breaker)) => {
            route.to(timeout.layer(retry.layer(breaker.layer(balanced))))
        }
        (Some(retry), None) => route.to(timeout.layer(retry.layer(balanced))),
        (None, Some(breaker)) => route.to(timeout.layer(breaker.layer(balanced))),
        (None, None) => route.to(timeout.layer(balanced)),
    };
    let built = BuiltService {
        name: name.clone(),
        balancer,
        retry: service.retry.clone(),
        breaker: service.circuit_breaker.clone(),
    };
    Ok((built, route))
}

/// request id → trace context → metrics → access log → peer identity →
/// authorization → timeout → the application.
fn inbound_stack(config: &SidecarConfig, app: Proxy) -> ListenerService {
    let metrics = config.metrics.then(|| {
        MetricsLayer::for_route(config.service_name.clone())
            .route_label("service")
            .label("direction", "inbound")
            .label_from_request(
                "peer_identity",
                identity_from_extensions,
                config.max_peer_labels,
                "unknown",
            )
    });
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceContextLayer::new())
        .option_layer(metrics)
        .option_layer(config.access_log.then(AccessLogLayer::new))
        .layer(config.peer_identity.clone())
        .layer(AuthzLayer::new(config.authorization.iter().cloned()))
        .layer(TimeoutLayer::new(config.inbound_timeout))
        .service(app);
    BoxCloneSyncService::new(tower::ServiceExt::<Request<Incoming>>::map_response(
        service,
        |response| response.map(Body::new),
    ))
}

/// request id → trace context → metrics → access log → route by host →
/// the service's stack; no route → 404.
fn outbound_stack(config: &SidecarConfig, router: Outbound) -> ListenerService {
    let metrics = config.metrics.then(|| {
        MetricsLayer::new()
            .route_label("service")
            .label("direction", "outbound")
            .route_from(|extensions| extensions.get::<MatchedRoute>().map(MatchedRoute::name))
    });
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceContextLayer::new())
        .option_layer(metrics)
        .option_layer(config.access_log.then(AccessLogLayer::new))
        .service(router);
    BoxCloneSyncService::new(tower::ServiceExt::map_response(service, |response| {
        response.map(Body::new)
    }))
}
