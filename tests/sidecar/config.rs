//! Configuration errors name the field.

use meshgate::sidecar::{OutboundService, Sidecar, SidecarConfig};

use crate::{Ca, sidecar_config};

fn problems(config: SidecarConfig) -> Vec<String> {
    crate::problems_of(config)
}

fn has(problems: &[String], start: &str) {
    assert!(
        problems.iter().any(|p| p.starts_with(start)),
        "no problem starting with {start:?} in {problems:#?}"
    );
}

#[tokio::test]
async fn missing_workload_settings_are_named() {
    let problems = problems(SidecarConfig::new());
    has(&problems, "certificate_pem:");
    has(&problems, "app_addr:");
    let ca = Ca::new("config");
    let workload = ca.workload("a", "a.svc");
    let problems = crate::problems_of(
        SidecarConfig::new()
            .certificate_pem(workload.chain_pem, workload.key_pem)
            .app_addr("127.0.0.1:1".parse().unwrap()),
    );
    has(&problems, "trust_bundle_pem:");
    let problems = crate::problems_of(
        SidecarConfig::new()
            .tls_files(
                meshgate::tls::TlsFiles::new(
                    "/nonexistent/c.pem",
                    "/nonexistent/k.pem",
                    "/nonexistent/b.pem",
                ),
                std::time::Duration::from_secs(5),
            )
            .app_addr("127.0.0.1:1".parse().unwrap()),
    );
    has(&problems, "tls_files: ");
}

#[tokio::test]
async fn a_non_loopback_outbound_listener_is_refused_unless_allowed() {
    let ca = Ca::new("config");
    let config = sidecar_config(
        &ca,
        &ca.workload("a", "a.svc"),
        "127.0.0.1:1".parse().unwrap(),
    )
    .outbound_addr("0.0.0.0:0".parse().unwrap());
    has(
        &problems(config.clone()),
        "outbound_addr: 0.0.0.0:0 is not a loopback",
    );
    assert!(Sidecar::new(config.allow_non_loopback_outbound(true)).is_ok());
}

#[tokio::test]
async fn bad_pem_and_bad_services_are_named() {
    let ca = Ca::new("config");
    let app = "127.0.0.1:1".parse().unwrap();
    let bad_pem = sidecar_config(&ca, &ca.workload("a", "a.svc"), app).trust_bundle_pem("not pem");
    has(&problems(bad_pem), "certificate_pem / trust_bundle_pem:");
    let config = sidecar_config(&ca, &ca.workload("a", "a.svc"), app)
        .outbound_service(OutboundService::new("b.svc"))
        .outbound_service(OutboundService::new("c.svc").endpoint("http://10.0.0.1:80"))
        .outbound_service(OutboundService::new("d.svc:80").endpoint("10.0.0.1:15006"))
        .outbound_service(
            OutboundService::new("e.svc")
                .endpoint("10.0.0.1:15006")
                .expected_identities(["spiffe://MESH/not an id"]),
        );
    let problems = problems(config);
    has(&problems, "outbound[0].endpoints: at least one");
    has(&problems, "outbound[1].endpoints[0]:");
    has(&problems, "outbound[2].name:");
    has(&problems, "outbound[3].expected_identities:");
}

#[tokio::test]
async fn two_services_of_one_name_are_refused() {
    let ca = Ca::new("config");
    let config = sidecar_config(
        &ca,
        &ca.workload("a", "a.svc"),
        "127.0.0.1:1".parse().unwrap(),
    )
    .outbound_service(OutboundService::new("b.svc").endpoint("10.0.0.1:15006"))
    .outbound_service(OutboundService::new("b.svc").endpoint("10.0.0.2:15006"));
    has(&problems(config), "outbound:");
}
