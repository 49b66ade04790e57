//! TLS on rustls (with the aws-lc-rs crypto provider): certificates and
//! keys from PEM, the client side the [`proxy`](crate::proxy) uses for
//! `https` upstreams, the server side the [`gateway`](crate::gateway)
//! server uses for TLS listeners, and rotating mesh material with SPIFFE
//! identities.
//!
//! With the `tls` feature:
//!
//! * the proxy reaches `https` upstreams, offering ALPN `h2` and
//!   `http/1.1`, so HTTP/2 is used when the upstream offers it; the server
//!   name (SNI) is the upstream's host. It trusts Mozilla's root
//!   certificates (the `webpki-roots` bundle, built in, so nothing is read
//!   from the machine) unless given its own with
//!   `ProxyBuilder::tls_roots_pem` or `ProxyBuilder::tls_roots`, and can
//!   present a client certificate (mTLS) with
//!   `ProxyBuilder::tls_client_identity`. A failed handshake (unknown
//!   issuer, wrong name, expired, refused client certificate) is answered
//!   502 `UpstreamConnect` with the cause, like a refused connect;
//! * the gateway `Server` terminates TLS with a [`ServerTls`]
//!   (`ServerConfig::tls`), offering ALPN `h2` and `http/1.1`, optionally
//!   verifying client certificates against a CA bundle ([`ClientAuth`]).
//!   The verified chain reaches services as a
//!   [`PeerCertificate`](crate::peer::PeerCertificate) request extension.
//!
//! # Rotation
//!
//! A [`TlsMaterial`] holds a workload's certificate chain, private key and
//! trust bundle, and can be replaced at run time:
//! [`replace_pem`](TlsMaterial::replace_pem) (from an admin endpoint or a
//! signal handler), [`reload`](TlsMaterial::reload) (re-reads the files it
//! was made [`from_files`](TlsMaterial::from_files) with) or
//! [`watch`](TlsMaterial::watch) (reloads every few seconds until the
//! returned [`TlsWatcher`] is dropped). Every swap validates the whole set
//! first — a key that does not match the certificate, as when files are
//! caught half-written, leaves the old material in place. Listeners made
//! with [`TlsMaterial::server_tls`] and proxies given it with
//! `ProxyBuilder::tls_material` read the current material at each
//! handshake: new connections get the new certificate and the new trust
//! bundle (clients of a CA dropped from it are refused), established
//! connections keep theirs, and TLS sessions are not resumed across a
//! swap.
//!
//! # SPIFFE identities
//!
//! A mesh workload's identity is the SPIFFE ID in its certificate's URI
//! SAN ([`SpiffeId`](crate::peer::SpiffeId), e.g.
//! `spiffe://cluster.local/ns/shop/sa/web`). On a listener, services read
//! the client's with
//! [`PeerCertificate::spiffe_id`](crate::peer::PeerCertificate::spiffe_id);
//! [`TlsMaterial::identity`] is the workload's own. The proxy checks the
//! server's with `ProxyBuilder::tls_peer_identities` (secure naming, as
//! Istio does it): the upstream's certificate must chain to the trust
//! bundle and carry one of the expected IDs (or one under a
//! `spiffe://td/ns/shop/*` prefix), whatever address it was reached at; a
//! server with another identity is a 502 `UpstreamConnect`.
//!
//! # Permissive mode
//!
//! `ServerConfig::tls_permissive(true)` serves plain-text HTTP beside TLS
//! on the same port (Istio's `PERMISSIVE`, for a migration to mTLS): a
//! connection whose first byte is not a TLS handshake record is served in
//! clear, without a `PeerCertificate`. The default is STRICT: plain text
//! fails the handshake and the connection is closed.
//!
//! The [`rustls`] crate is re-exported for callers that build their own
//! `RootCertStore` or `ServerConfig`.
//!
//! ```
//! use meshgate::tls::{ClientAuth, ServerTls};
//!
//! let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
//! let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
//! let tls = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
//! # let _ = tls;
//! // Clients must present a certificate issued by this CA.
//! let mtls = ServerTls::mutual_from_pem(
//!     cert_pem.as_bytes(),
//!     key_pem.as_bytes(),
//!     cert_pem.as_bytes(),
//!     ClientAuth::Required,
//! )
//! .unwrap();
//! # let _ = mtls;
//! assert!(ServerTls::from_pem(b"not pem", key_pem.as_bytes()).is_err());
//! ```
//!
//! A mesh workload: rotating material from files, a STRICT mTLS listener,
//! and a proxy that accepts one peer identity.
//!
//! ```
//! use std::time::Duration;
//! use meshgate::gateway::ServerConfig;
//! use meshgate::proxy::Proxy;
//! use meshgate::tls::{ClientAuth, TlsFiles, TlsMaterial};
//!
//! # fn pem() -> (String, String, String) {
//! #     let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
//! #     params.subject_alt_names.push(rcgen::SanType::URI(
//! #         "spiffe://cluster.local/ns/shop/sa/web".try_into().unwrap(),
//! #     ));
//! #     let key = rcgen::KeyPair::generate().unwrap();
//! #     let cert = params.self_signed(&key).unwrap();
//! #     (cert.pem(), key.serialize_pem(), cert.pem())
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("meshgate-tls-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let (chain, key, bundle) = pem();
//! # std::fs::write(dir.join("cert.pem"), chain)?;
//! # std::fs::write(dir.join("key.pem"), key)?;
//! # std::fs::write(dir.join("bundle.pem"), bundle)?;
//! let material = TlsMaterial::from_files(TlsFiles::new(
//!     dir.join("cert.pem"),
//!     dir.join("key.pem"),
//!     dir.join("bundle.pem"),
//! ))?;
//! assert_eq!(
//!     material.identity().map(|id| id.to_string()).as_deref(),
//!     Some("spiffe://cluster.local/ns/shop/sa/web")
//! );
//! // Picks up rotated files every 5 s until `_watcher` is dropped.
//! let _watcher = material.watch(Duration::from_secs(5));
//!
//! // Inbound: mutual TLS required (STRICT); `tls_permissive(true)` would
//! // also serve plain text.
//! let inbound = ServerConfig::new().tls(material.server_tls(ClientAuth::Required));
//! # let _ = inbound;
//!
//! // Outbound: present our certificate, accept only the payments workload.
//! let outbound = Proxy::builder()
//!     .tls_material(material.clone())
//!     .tls_peer_identities(["spiffe://cluster.local/ns/shop/sa/payments"])
//!     .build()?;
//! # let _ = outbound;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub(crate) mod client;
mod material;
mod server;

pub use material::{TlsFiles, TlsMaterial, TlsWatcher};
pub use rustls;
pub use server::{ClientAuth, ServerTls};

#[cfg(feature = "proxy")]
pub(crate) use client::ClientTls;
#[cfg(feature = "gateway")]
pub(crate) use server::peer_certificate;

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate, key or TLS configuration that cannot be used, found when
/// the configuration is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider every configuration here uses: aws-lc-rs, named
/// explicitly so that a second provider elsewhere in the build (ring) does
/// not make rustls's process default ambiguous.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates (`-----BEGIN CERTIFICATE-----` sections) of a PEM
/// document, in order; other sections are skipped.
///
/// # Errors
///
/// A malformed PEM document, or one without a certificate.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::new(format!("certificate PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(TlsError::new(
            "certificate PEM: no CERTIFICATE section found",
        ));
    }
    Ok(certificates)
}

/// The first private key of a PEM document (PKCS #8, PKCS #1 RSA or SEC1
/// EC).
///
/// # Errors
///
/// A malformed PEM document, or one without a private key.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsError::new("private key PEM: no PRIVATE KEY section found")
        }
        error => TlsError::new(format!("private key PEM: {error}")),
    })
}

/// A root store of every certificate of a PEM bundle.
///
/// # Errors
///
/// A malformed PEM bundle, one without a certificate, or a certificate
/// that is not a usable trust anchor.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates_from_pem(pem)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::new(format!("root certificate: {error}")))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_say_what_is_missing() {
        let error = certificates_from_pem(b"").unwrap_err();
        assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
        let error = private_key_from_pem(b"-----BEGIN CERTIFICATE-----\n").unwrap_err();
        assert!(error.to_string().starts_with("private key PEM"), "{error}");
        let error = roots_from_pem(b"garbage").unwrap_err();
        assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
    }

    #[test]
    fn generated_pem_parses() {
        let key = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let certs = certificates_from_pem(key.cert.pem().as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        private_key_from_pem(key.signing_key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(roots_from_pem(key.cert.pem().as_bytes()).unwrap().len(), 1);
    }
}
