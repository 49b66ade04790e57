//! A throw-away PKI for tests, made by `rcgen`: a CA with a server and a
//! client identity ([`Pki`]), and a mesh CA issuing workload certificates
//! with SPIFFE IDs ([`MeshCa`]). Included by test crates with
//! `#[path = "../common/pki.rs"] mod pki;`.

#![allow(dead_code, unreachable_pub)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A certificate chain and its key, PEM, and its leaf, DER.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: Vec<u8>,
}

/// A test CA with a server identity (`localhost`, `127.0.0.1`) and a client
/// identity (`client.test`) it issued.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) server: Identity,
    pub(crate) client: Identity,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names.clone()).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, names[0].clone());
            let client = usage == ExtendedKeyUsagePurpose::ClientAuth;
            params.extended_key_usages = vec![usage];
            if client {
                params.subject_alt_names.push(SanType::URI(
                    format!("spiffe://{name}.test/ns/default/sa/client")
                        .try_into()
                        .unwrap(),
                ));
            }
            let cert = params.signed_by(&key, &issuer).unwrap();
            Identity {
                // Leaf first, then the CA, as servers send chains.
                chain_pem: format!("{}{}", cert.pem(), ca.pem()),
                key_pem: key.serialize_pem(),
                der: cert.der().to_vec(),
            }
        };
        let server = leaf(
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(
            vec!["client.test".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            ca_pem: ca.pem(),
            server,
            client,
        }
    }
}

/// A test CA that issues workload certificates with a SPIFFE ID.
pub(crate) struct MeshCa {
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A workload's certificate chain and key, PEM, and its leaf, DER.
pub(crate) type Workload = Identity;

impl MeshCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} mesh CA"));
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A workload certificate for `localhost` with this SPIFFE ID, usable
    /// as a server and a client certificate (as mesh workloads' are).
    pub(crate) fn workload(&self, spiffe_id: &str) -> Workload {
        self.issue(spiffe_id, false)
    }

    /// As [`workload`](Self::workload), expired since 2021.
    pub(crate) fn expired_workload(&self, spiffe_id: &str) -> Workload {
        self.issue(spiffe_id, true)
    }

    fn issue(&self, spiffe_id: &str, expired: bool) -> Workload {
        self.issue_with(spiffe_id, &["localhost"], |params| {
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        })
    }

    /// A workload certificate with this SPIFFE ID (URI SAN) and these DNS
    /// SANs, for TLS server and client authentication, after `adjust`.
    pub(crate) fn issue_with(
        &self,
        spiffe_id: &str,
        dns_names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Workload {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = dns_names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, spiffe_id.to_owned());
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id.try_into().unwrap()));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Workload {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// The workload's material, trusting this CA.
    pub(crate) fn material(&self, workload: &Workload) -> meshgate::tls::TlsMaterial {
        meshgate::tls::TlsMaterial::from_pem(
            workload.chain_pem.as_bytes(),
            workload.key_pem.as_bytes(),
            self.pem.as_bytes(),
        )
        .unwrap()
    }
}

/// A rustls client configuration trusting `ca_pem`, with an optional
/// client identity; no ALPN (the connector sets it).
pub(crate) fn client_config(
    ca_pem: &str,
    identity: Option<&Identity>,
) -> meshgate::tls::rustls::ClientConfig {
    use meshgate::tls::rustls;
    let roots = meshgate::tls::roots_from_pem(ca_pem.as_bytes()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                meshgate::tls::certificates_from_pem(identity.chain_pem.as_bytes()).unwrap(),
                meshgate::tls::private_key_from_pem(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}
