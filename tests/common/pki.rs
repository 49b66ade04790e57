//! A throw-away PKI for tests: a CA made by `rcgen` and the server and
//! client identities it issued. Included by test crates with
//! `#[path = "../common/pki.rs"] mod pki;`.

#![allow(dead_code, unreachable_pub)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A certificate chain and its key, PEM.
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
