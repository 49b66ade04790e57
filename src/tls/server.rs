//! The server side: the certificate a listener presents, the ALPN it
//! offers, and how it verifies client certificates.

use std::fmt;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use super::{TlsError, certificates_from_pem, private_key_from_pem, provider, roots_from_pem};

/// Whether a mutual-TLS listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A client without a valid certificate fails the handshake.
    Required,
    /// A client may connect without a certificate; one it presents must be
    /// valid. Services tell the two apart by the presence of the
    /// [`PeerCertificate`](crate::peer::PeerCertificate) extension.
    Optional,
}

/// A TLS listener's configuration: certificate chain, private key and,
/// for mutual TLS, the CAs client certificates must chain to.
///
/// Cheap to clone (the rustls configuration is behind an `Arc`). The server
/// that uses it offers ALPN `h2` and `http/1.1` (`http/1.1` alone when its
/// HTTP/2 is off) unless the configuration given to
/// [`from_config`](Self::from_config) already names protocols.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn_protocols", &self.config.alpn_protocols.len())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS with this certificate chain (leaf first) and private key, both
    /// PEM; clients are not asked for certificates.
    ///
    /// # Errors
    ///
    /// Malformed PEM, no certificate or key, or a key that does not match
    /// the certificate.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::build(cert_chain_pem, key_pem, None)
    }

    /// Mutual TLS: as [`from_pem`](Self::from_pem), and client
    /// certificates are verified against the CA certificates of
    /// `client_ca_pem`.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem), and a CA bundle that is malformed,
    /// empty or not usable as trust anchors.
    pub fn mutual_from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: &[u8],
        auth: ClientAuth,
    ) -> Result<Self, TlsError> {
        Self::build(cert_chain_pem, key_pem, Some((client_ca_pem, auth)))
    }

    /// A rustls configuration built by the caller (its own verifier,
    /// resolver, session storage…). ALPN is set by the server when the
    /// configuration has none.
    #[must_use]
    pub fn from_config(config: impl Into<Arc<ServerConfig>>) -> Self {
        Self {
            config: config.into(),
        }
    }

    fn build(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_auth: Option<(&[u8], ClientAuth)>,
    ) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(cert_chain_pem)?;
        let key = private_key_from_pem(key_pem)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::new(format!("listener TLS: {error}")))?;
        let builder = match client_auth {
            None => builder.with_no_client_auth(),
            Some((ca_pem, auth)) => {
                let roots = Arc::new(roots_from_pem(ca_pem)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = match auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier.build().map_err(|error| {
                    TlsError::new(format!("listener TLS client verification: {error}"))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|error| TlsError::new(format!("listener TLS certificate: {error}")))?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The acceptor, with ALPN `h2` (when `http2`) and `http/1.1` unless
    /// the configuration names its own protocols.
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn acceptor(&self, http2: bool) -> tokio_rustls::TlsAcceptor {
        if !self.config.alpn_protocols.is_empty() {
            return tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config));
        }
        let mut config = (*self.config).clone();
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// The verified client certificate chain of a finished handshake, if the
/// client presented one.
#[cfg(feature = "gateway")]
pub(crate) fn peer_certificate(
    connection: &rustls::ServerConnection,
) -> Option<crate::peer::PeerCertificate> {
    let chain = connection.peer_certificates()?;
    let certificate = crate::peer::PeerCertificate::new(
        chain
            .iter()
            .map(|certificate| bytes::Bytes::copy_from_slice(certificate.as_ref()))
            .collect(),
    )?;
    // The verifier parsed the leaf already, so this does not fail for a
    // verified chain; if it did, the chain is still worth passing on.
    let Some(Ok(leaf)) = chain.first().map(webpki::EndEntityCert::try_from) else {
        return Some(certificate);
    };
    let dns_names = leaf.valid_dns_names().map(str::to_owned).collect();
    let uri_names = leaf.valid_uri_names().map(str::to_owned).collect();
    Some(certificate.with_subject_alt_names(dns_names, uri_names))
}
