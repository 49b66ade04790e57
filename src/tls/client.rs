//! The client side: what the proxy trusts and presents to `https` upstreams.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, RootCertStore};

use super::material::{IdentityPattern, PeerRoots, SpiffeServerVerifier};
use super::{
    TlsError, TlsMaterial, certificates_from_pem, private_key_from_pem, provider, roots_from_pem,
};

/// Where the trusted roots come from.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
pub(crate) enum Roots {
    /// Mozilla's bundle (`webpki-roots`), built in.
    #[default]
    Mozilla,
    /// A PEM bundle, parsed when the configuration is built.
    Pem(Vec<u8>),
    /// A store the caller built.
    Store(RootCertStore),
}

/// The client TLS settings a proxy builder collects; turned into a rustls
/// configuration (and checked) when the proxy is built.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
pub(crate) struct ClientTls {
    pub(crate) roots: Roots,
    /// Certificate chain and private key, both PEM.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Rotating material: its certificate and bundle replace `identity`
    /// and `roots`.
    pub(crate) material: Option<TlsMaterial>,
    /// SPIFFE IDs (or `…/*` prefixes) accepted from servers, instead of
    /// the server name.
    pub(crate) peer_identities: Option<Vec<String>>,
}

#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
impl ClientTls {
    /// The rustls configuration, without ALPN (the connector sets it).
    pub(crate) fn config(&self) -> Result<ClientConfig, TlsError> {
        let identities = self
            .peer_identities
            .as_ref()
            .map(|ids| {
                if ids.is_empty() {
                    return Err(TlsError::new(
                        "upstream TLS: the list of peer identities is empty, so no server would be accepted",
                    ));
                }
                ids.iter().map(|id| IdentityPattern::parse(id)).collect()
            })
            .transpose()?;
        if let Some(material) = &self.material {
            let verifier: Arc<dyn ServerCertVerifier> = match identities {
                Some(identities) => Arc::new(SpiffeServerVerifier {
                    roots: PeerRoots::Material(material.clone()),
                    identities,
                    provider: provider(),
                }),
                None => material.server_verifier(),
            };
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|error| TlsError::new(format!("upstream TLS: {error}")))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_cert_resolver(material.client_certificate());
            config.resumption = Resumption::store(material.client_sessions());
            return Ok(config);
        }
        let roots = match &self.roots {
            Roots::Mozilla => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            Roots::Pem(pem) => roots_from_pem(pem)?,
            Roots::Store(store) => store.clone(),
        };
        if roots.is_empty() {
            return Err(TlsError::new("upstream TLS: the root store is empty"));
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::new(format!("upstream TLS: {error}")))?;
        let builder = match identities {
            Some(identities) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                    roots: PeerRoots::Fixed(Arc::new(roots)),
                    identities,
                    provider: provider(),
                })),
            None => builder.with_root_certificates(roots),
        };
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some((chain, key)) => {
                let chain = certificates_from_pem(chain)?;
                let key = private_key_from_pem(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    TlsError::new(format!("upstream TLS client certificate: {error}"))
                })
            }
        }
    }
}

/// An `http`-or-`https` connector for the crate's own small fetches (the
/// auth layer's JWKS): rustls trusting only the roots of `roots_pem`, or
/// Mozilla's when `None`; SNI from the URI's host; HTTP/1.1.
///
/// # Errors
///
/// A roots PEM that does not parse or holds no usable certificate.
#[cfg(feature = "auth")]
pub(crate) fn fetch_connector(
    roots_pem: Option<&[u8]>,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    TlsError,
> {
    let tls = ClientTls {
        roots: roots_pem.map_or(Roots::Mozilla, |pem| Roots::Pem(pem.to_vec())),
        ..ClientTls::default()
    }
    .config()?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    // The TLS connector picks by scheme; the TCP one must let `https` through.
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_trusts_mozilla_roots() {
        let config = ClientTls::default().config().unwrap();
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let one = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).unwrap();
        let tls = ClientTls {
            roots: Roots::Pem(one.cert.pem().into_bytes()),
            identity: Some((
                one.cert.pem().into_bytes(),
                two.signing_key.serialize_pem().into_bytes(),
            )),
            ..ClientTls::default()
        };
        let error = tls.config().unwrap_err();
        assert!(error.to_string().contains("client certificate"), "{error}");
    }
}
