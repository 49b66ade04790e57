//! Rotating TLS material: the workload's certificate chain, private key and
//! trust bundle behind one swappable handle that the server's certificate
//! resolver and client verifier, and the proxy's client certificate
//! resolver and server verifier, read at each handshake.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::{
    ClientAuth, ServerTls, TlsError, certificates_from_pem, private_key_from_pem, provider,
    roots_from_pem,
};
use crate::peer::SpiffeId;

/// How many TLS sessions each side remembers for resumption, per
/// generation of the material (rustls's own default).
const SESSION_CACHE_SIZE: usize = 256;

/// The paths of a workload's certificate chain, private key and trust
/// bundle, all PEM, as a secret mount or an agent (cert-manager,
/// SPIRE's `spiffe-helper`, Istio's `istio-agent`) writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key of the leaf (PKCS #8, PKCS #1 or SEC1).
    pub private_key: PathBuf,
    /// The CA certificates that peers' certificates must chain to.
    pub trust_bundle: PathBuf,
}

impl TlsFiles {
    /// The three paths.
    pub fn new(
        certificate: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
        trust_bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            certificate: certificate.into(),
            private_key: private_key.into(),
            trust_bundle: trust_bundle.into(),
        }
    }

    /// The three files' bytes; an error names the file.
    fn read(&self) -> Result<Source, TlsError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|error| {
                TlsError::new(format!("TLS {what} file {}: {error}", path.display()))
            })
        };
        Ok(Source {
            chain: read("certificate", &self.certificate)?,
            key: read("private key", &self.private_key)?,
            bundle: read("trust bundle", &self.trust_bundle)?,
        })
    }
}

/// The PEM bytes one generation was built from, to tell a changed file
/// from an unchanged one.
#[derive(PartialEq, Eq)]
struct Source {
    chain: Vec<u8>,
    key: Vec<u8>,
    bundle: Vec<u8>,
}

/// One generation of material, immutable once built; a swap replaces it
/// whole, so a handshake reads a consistent set.
struct Generation {
    number: u64,
    certified_key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    /// Verifies client certificates against `roots`; allows a client
    /// without one, which [`MaterialClientVerifier`] refuses when its
    /// [`ClientAuth`] requires one.
    client_verifier: Arc<dyn ClientCertVerifier>,
    /// Verifies server certificates (chain and name) against `roots`.
    server_verifier: Arc<dyn ServerCertVerifier>,
    /// Sessions are per generation: a session resumed after a swap would
    /// skip the verification against the new bundle, and would keep the
    /// identity of the old certificate.
    server_sessions: Arc<dyn StoresServerSessions>,
    client_sessions: Arc<dyn ClientSessionStore>,
    identity: Option<SpiffeId>,
    not_after: Option<SystemTime>,
    source: Source,
}

impl Generation {
    /// Parses and checks everything: PEM, the key matching the leaf, a
    /// usable non-empty bundle.
    fn build(source: Source, number: u64) -> Result<Self, TlsError> {
        let provider = provider();
        let chain = certificates_from_pem(&source.chain)?;
        let key = private_key_from_pem(&source.key)?;
        let roots = Arc::new(
            roots_from_pem(&source.bundle)
                .map_err(|error| TlsError::new(format!("trust bundle: {error}")))?,
        );
        let certified_key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|error| TlsError::new(format!("TLS certificate and key: {error}")))?;
        // `from_der` lets a key whose public half it cannot compute through.
        if let Err(error) = certified_key.keys_match()
            && !matches!(
                error,
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)
            )
        {
            return Err(TlsError::new(format!("TLS certificate and key: {error}")));
        }
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|error| TlsError::new(format!("trust bundle: {error}")))?;
        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&roots),
            provider,
        )
        .build()
        .map_err(|error| TlsError::new(format!("trust bundle: {error}")))?;
        let identity = certified_key
            .end_entity_cert()
            .ok()
            .and_then(|leaf| spiffe_id_of(leaf));
        let not_after = certified_key
            .end_entity_cert()
            .ok()
            .and_then(|leaf| not_after(leaf));
        // Peers refuse it, but the material is what the operator gave: keep
        // it and say so, so a stalled rotation is noticed.
        if not_after.is_some_and(|not_after| not_after < SystemTime::now()) {
            tracing::warn!(
                identity = identity.as_ref().map(SpiffeId::as_str),
                "the TLS certificate has expired; peers will refuse it"
            );
        }
        Ok(Self {
            number,
            certified_key: Arc::new(certified_key),
            roots,
            client_verifier,
            server_verifier,
            server_sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            client_sessions: Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE)),
            identity,
            not_after,
            source,
        })
    }
}

/// The SPIFFE ID of a DER certificate: its only URI SAN, if that is one.
pub(crate) fn spiffe_id_of(certificate: &CertificateDer<'_>) -> Option<SpiffeId> {
    let leaf = webpki::EndEntityCert::try_from(certificate).ok()?;
    let mut uris = leaf.valid_uri_names();
    match (uris.next(), uris.next()) {
        (Some(only), None) => only.parse().ok(),
        _ => None,
    }
}

struct Shared {
    current: ArcSwap<Generation>,
    files: Option<TlsFiles>,
    /// Serializes swaps so generations count up one by one; never held
    /// across an await (every swap is synchronous).
    swapping: Mutex<()>,
}

/// A workload's TLS material — certificate chain, private key (a rustls
/// [`CertifiedKey`] on the aws-lc-rs provider) and trust bundle — that can
/// be replaced while servers and proxies use it.
///
/// Cheap to clone: clones share the material (an `Arc`), so a swap through
/// one is seen by all, and by every [`ServerTls`] made with
/// [`server_tls`](Self::server_tls) and every proxy given it with
/// `ProxyBuilder::tls_material`. They read the current material at each
/// handshake (one atomic load, no lock): new handshakes use the new
/// material, established connections keep the one they started with.
///
/// A swap validates everything first (PEM, the key matching the
/// certificate, a non-empty usable bundle); on any error the old material
/// stays. TLS sessions are remembered per generation, so a resumed
/// session never outlives a swap (a client of a CA dropped from the
/// bundle cannot resume its way in).
///
/// ```
/// use meshgate::tls::{ClientAuth, TlsMaterial};
///
/// # let ca = rcgen::generate_simple_self_signed(vec!["web.test".to_owned()]).unwrap();
/// # let (chain, key, bundle) = (ca.cert.pem(), ca.signing_key.serialize_pem(), ca.cert.pem());
/// let material = TlsMaterial::from_pem(chain.as_bytes(), key.as_bytes(), bundle.as_bytes())?;
/// let tls = material.server_tls(ClientAuth::Required);
/// assert_eq!(material.generation(), 0);
/// // Later, e.g. from an admin endpoint or a signal handler:
/// material.replace_pem(chain.as_bytes(), key.as_bytes(), bundle.as_bytes())?;
/// assert_eq!(material.generation(), 1);
/// // A key that does not match the certificate is refused; the old material stays.
/// # let other = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).unwrap();
/// assert!(material.replace_pem(chain.as_bytes(), other.signing_key.serialize_pem().as_bytes(), bundle.as_bytes()).is_err());
/// assert_eq!(material.generation(), 1);
/// # let _ = tls;
/// # Ok::<(), meshgate::tls::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsMaterial {
    shared: Arc<Shared>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("TlsMaterial")
            .field("generation", &current.number)
            .field("identity", &current.identity)
            .field("trust_anchors", &current.roots.len())
            .field("files", &self.shared.files)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Material from PEM: the certificate chain (leaf first), its private
    /// key, and the trust bundle (the CA certificates peers must chain to).
    ///
    /// # Errors
    ///
    /// Malformed PEM, no certificate or key, a key that does not match the
    /// leaf, or an empty or unusable bundle.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        trust_bundle_pem: &[u8],
    ) -> Result<Self, TlsError> {
        let source = Source {
            chain: chain_pem.to_vec(),
            key: key_pem.to_vec(),
            bundle: trust_bundle_pem.to_vec(),
        };
        Ok(Self::new(Generation::build(source, 0)?, None))
    }

    /// Material read from three PEM files, which [`reload`](Self::reload)
    /// and [`watch`](Self::watch) read again.
    ///
    /// # Errors
    ///
    /// A file that cannot be read (the error names it), or material that
    /// [`from_pem`](Self::from_pem) refuses.
    pub fn from_files(files: TlsFiles) -> Result<Self, TlsError> {
        let generation = Generation::build(files.read()?, 0)?;
        Ok(Self::new(generation, Some(files)))
    }

    fn new(generation: Generation, files: Option<TlsFiles>) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(generation),
                files,
                swapping: Mutex::new(()),
            }),
        }
    }

    /// Replaces the material: validates the new set as
    /// [`from_pem`](Self::from_pem) does, then swaps it in atomically. New
    /// handshakes use it; established connections are untouched. On
    /// material made [`from_files`](Self::from_files), the next
    /// [`reload`](Self::reload) puts the files' content back if it differs.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem); the old material stays.
    pub fn replace_pem(
        &self,
        chain_pem: &[u8],
        key_pem: &[u8],
        trust_bundle_pem: &[u8],
    ) -> Result<(), TlsError> {
        self.swap(
            Source {
                chain: chain_pem.to_vec(),
                key: key_pem.to_vec(),
                bundle: trust_bundle_pem.to_vec(),
            },
            false,
        )
        .map(drop)
    }

    /// Reads the files again (material made with
    /// [`from_files`](Self::from_files)) and swaps in their content when it
    /// differs from the current one, byte for byte: `Ok(true)` after a
    /// swap, `Ok(false)` when nothing changed or the material has no files.
    ///
    /// A set caught half-written (a new certificate beside the old key)
    /// fails validation: the old material stays and the error is returned;
    /// the next reload, once the writer is done, succeeds.
    ///
    /// # Errors
    ///
    /// A file that cannot be read (named), or content that
    /// [`from_pem`](Self::from_pem) refuses.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.shared.files else {
            return Ok(false);
        };
        let source = files.read()?;
        if source == self.shared.current.load().source {
            return Ok(false);
        }
        self.swap(source, true)
    }

    /// Builds, then swaps; with `unless_same`, `Ok(false)` when the
    /// current material was built from the same bytes (another reload got
    /// there first).
    fn swap(&self, source: Source, unless_same: bool) -> Result<bool, TlsError> {
        // A poisoned lock only means another swap panicked; the material it
        // guards (the ArcSwap) is always whole, so carry on.
        let _swapping = self
            .shared
            .swapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.shared.current.load_full();
        if unless_same && source == current.source {
            return Ok(false);
        }
        let next = Generation::build(source, current.number + 1)?;
        self.shared.current.store(Arc::new(next));
        Ok(true)
    }

    /// Calls [`reload`](Self::reload) every `interval` on a tokio task
    /// (the file reads on the blocking pool) until the returned
    /// [`TlsWatcher`] is dropped. A swap is logged at `info`, a failure at
    /// `warn` (the old material stays and the next tick tries again).
    ///
    /// A few seconds is a good interval (5 s, say): certificates are
    /// rotated well before they expire (Istio and SPIRE at about half of
    /// their lifetime), and reading three small files costs little. Zero is
    /// raised to 1 ms. A material without files has nothing to reload:
    /// its watcher does nothing.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the task is spawned on the current one).
    #[must_use = "the watcher stops when dropped"]
    pub fn watch(&self, interval: Duration) -> TlsWatcher {
        let interval = interval.max(Duration::from_millis(1));
        let material = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let reloading = material.clone();
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Ok(true)) => tracing::info!(
                        generation = material.generation(),
                        identity = material.identity().as_ref().map(SpiffeId::as_str),
                        "TLS material reloaded"
                    ),
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => tracing::warn!(
                        %error,
                        "TLS material reload failed; keeping the current material"
                    ),
                    Err(error) => tracing::warn!(%error, "TLS material reload task failed"),
                }
            }
        });
        TlsWatcher { task }
    }

    /// How many swaps happened: 0 for the material as created, one more
    /// with each successful [`replace_pem`](Self::replace_pem) or
    /// [`reload`](Self::reload) that changed it.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.shared.current.load().number
    }

    /// The SPIFFE ID of the current leaf certificate (its only URI SAN),
    /// if it has one.
    #[must_use]
    pub fn identity(&self) -> Option<SpiffeId> {
        self.shared.current.load().identity.clone()
    }

    /// When the current leaf certificate expires (its `notAfter`), to
    /// export as a metric or to warn about a rotation that did not happen.
    /// `None` if the certificate's validity could not be read.
    #[must_use]
    pub fn not_after(&self) -> Option<SystemTime> {
        self.current().not_after
    }

    /// The current certificate chain, leaf first, DER.
    #[must_use]
    pub fn certificate_chain(&self) -> Vec<CertificateDer<'static>> {
        self.shared.current.load().certified_key.cert.clone()
    }

    /// The current trust bundle.
    #[must_use]
    pub fn trust_bundle(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.shared.current.load().roots)
    }

    /// A TLS listener configuration that presents the current certificate
    /// and verifies client certificates against the current bundle, at
    /// each handshake (expired certificates and those of other CAs fail).
    /// `auth` says whether a client must present one.
    ///
    /// The server sends no CA names in its certificate request (the bundle
    /// may change under it); clients then offer the certificate they have,
    /// as mesh workloads do.
    #[must_use]
    pub fn server_tls(&self, auth: ClientAuth) -> ServerTls {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            // aws-lc-rs supports both TLS 1.2 and 1.3, so this cannot fail.
            .expect("the aws-lc-rs provider supports the default protocol versions");
        let mut config = builder
            .with_client_cert_verifier(Arc::new(MaterialClientVerifier {
                material: self.clone(),
                mandatory: auth == ClientAuth::Required,
            }))
            .with_cert_resolver(Arc::new(MaterialCertificate(self.clone())));
        config.session_storage = Arc::new(MaterialServerSessions(self.clone()));
        ServerTls::from_config(config)
    }

    fn current(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.shared.current.load()
    }

    /// The client certificate resolver the proxy uses.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn client_certificate(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(MaterialCertificate(self.clone()))
    }

    /// The server certificate verifier (chain and name against the current
    /// bundle) the proxy uses without peer identities.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn server_verifier(&self) -> Arc<dyn ServerCertVerifier> {
        Arc::new(MaterialServerVerifier(self.clone()))
    }

    /// The client session store the proxy uses (per generation).
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn client_sessions(&self) -> Arc<dyn ClientSessionStore> {
        Arc::new(MaterialClientSessions(self.clone()))
    }

    /// The current roots, for the proxy's SPIFFE verifier.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.current().roots)
    }
}

/// Stops [`TlsMaterial::watch`]'s task when dropped.
#[derive(Debug)]
pub struct TlsWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Presents the current certificate, as a server and as a client.
#[derive(Debug)]
struct MaterialCertificate(TlsMaterial);

impl ResolvesServerCert for MaterialCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.current().certified_key))
    }
}

impl ResolvesClientCert for MaterialCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.current().certified_key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies client certificates against the current bundle.
#[derive(Debug)]
struct MaterialClientVerifier {
    material: TlsMaterial,
    mandatory: bool,
}

impl ClientCertVerifier for MaterialClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from one generation; an empty list asks
        // the client to send whatever certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.material
            .current()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.material
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.material
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.material
            .current()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// Verifies server certificates (chain and name) against the current
/// bundle.
#[derive(Debug)]
struct MaterialServerVerifier(TlsMaterial);

impl ServerCertVerifier for MaterialServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().server_verifier.supported_verify_schemes()
    }
}

/// The current generation's server session cache.
#[derive(Debug)]
struct MaterialServerSessions(TlsMaterial);

impl StoresServerSessions for MaterialServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.current().server_sessions.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().server_sessions.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().server_sessions.take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The current generation's client session cache.
#[derive(Debug)]
struct MaterialClientSessions(TlsMaterial);

impl ClientSessionStore for MaterialClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.0
            .current()
            .client_sessions
            .set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.0.current().client_sessions.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0
            .current()
            .client_sessions
            .set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.0.current().client_sessions.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.0
            .current()
            .client_sessions
            .remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0
            .current()
            .client_sessions
            .insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.0
            .current()
            .client_sessions
            .take_tls13_ticket(server_name)
    }
}

/// Accepts a server certificate by SPIFFE ID instead of by name: it must
/// chain to the trust anchors, be valid now, and carry exactly one URI SAN
/// that is one of the accepted identities.
#[derive(Debug)]
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) roots: PeerRoots,
    pub(crate) identities: Vec<IdentityPattern>,
    pub(crate) provider: Arc<CryptoProvider>,
}

/// Where a [`SpiffeServerVerifier`] finds its trust anchors.
#[derive(Debug)]
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
pub(crate) enum PeerRoots {
    /// The current bundle of rotating material.
    Material(TlsMaterial),
    /// A fixed store.
    Fixed(Arc<RootCertStore>),
}

/// An accepted peer identity: one SPIFFE ID, or every ID under a prefix
/// (`spiffe://td/ns/shop/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
pub(crate) enum IdentityPattern {
    Exact(SpiffeId),
    /// The prefix, ending in `/`.
    Under(String),
}

#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
impl IdentityPattern {
    /// `spiffe://td/ns/shop/sa/web`, or `spiffe://td/ns/shop/*`.
    pub(crate) fn parse(pattern: &str) -> Result<Self, TlsError> {
        let invalid = |error: crate::peer::SpiffeIdError| {
            TlsError::new(format!("peer identity {pattern:?}: {error}"))
        };
        if let Some(prefix) = pattern.strip_suffix("/*") {
            prefix.parse::<SpiffeId>().map_err(invalid)?;
            return Ok(Self::Under(format!("{prefix}/")));
        }
        pattern.parse().map(Self::Exact).map_err(invalid)
    }

    pub(crate) fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(exact) => exact == id,
            Self::Under(prefix) => id.as_str().starts_with(prefix.as_str()),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let roots = match &self.roots {
            PeerRoots::Material(material) => material.roots(),
            PeerRoots::Fixed(roots) => Arc::clone(roots),
        };
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let accepted = spiffe_id_of(end_entity)
            .is_some_and(|id| self.identities.iter().any(|pattern| pattern.matches(&id)));
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(UnexpectedIdentity(
                    end_entity_identity(end_entity),
                )))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a refused server identity is described in the error.
fn end_entity_identity(certificate: &CertificateDer<'_>) -> String {
    spiffe_id_of(certificate).map_or_else(
        || "no single SPIFFE ID".to_owned(),
        |id| id.as_str().to_owned(),
    )
}

/// A certificate's `notAfter`: `Certificate ::= SEQUENCE { tbsCertificate
/// SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity SEQUENCE { notBefore, notAfter }, … } … }` (RFC 5280).
fn not_after(certificate: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, certificate, _) = der_element(certificate.as_ref())?;
    let (_, tbs, _) = der_element(certificate)?;
    let (tag, _, mut rest) = der_element(tbs)?;
    if tag == 0xa0 {
        // The explicit version; the serial number follows.
        rest = der_element(rest)?.2;
    }
    let rest = der_element(rest)?.2; // signature algorithm
    let rest = der_element(rest)?.2; // issuer
    let (_, validity, _) = der_element(rest)?;
    let (_, _, validity) = der_element(validity)?; // notBefore
    let (tag, time, _) = der_element(validity)?;
    der_time(tag, time)
}

/// One DER element: its tag, its content, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0_usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`, tag 0x18), as RFC 5280 restricts them.
fn der_time(tag: u8, time: &[u8]) -> Option<SystemTime> {
    let digits = time.strip_suffix(b"Z")?;
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let text = std::str::from_utf8(digits.get(range)?).ok()?;
        text.bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let year = number(0..2)?;
            (if year >= 50 { 1900 + year } else { 2000 + year }, 2)
        }
        (0x18, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let month = number(rest..rest + 2)?;
    let day = number(rest + 2..rest + 4)?;
    let hour = number(rest + 4..rest + 6)?;
    let minute = number(rest + 6..rest + 8)?;
    let second = number(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // `days_from_civil`), for years from 1970 on.
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year / 400;
    let year_of_era = year % 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// A server certificate whose SPIFFE ID is not one of those accepted.
#[derive(Debug)]
struct UnexpectedIdentity(String);

impl fmt::Display for UnexpectedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's identity ({}) is not one of the expected peer identities",
            self.0
        )
    }
}

impl std::error::Error for UnexpectedIdentity {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_is_read_from_the_certificate() {
        for (year, month, day) in [(2049, 12, 31), (2050, 1, 1), (2031, 2, 28), (2024, 2, 29)] {
            let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, month, day);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let expected = SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(params.not_after.unix_timestamp()).unwrap());
            assert_eq!(
                not_after(cert.der()),
                Some(expected),
                "{year}-{month}-{day}"
            );
            let material = TlsMaterial::from_pem(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
                cert.pem().as_bytes(),
            )
            .unwrap();
            assert_eq!(material.not_after(), Some(expected));
        }
        assert_eq!(
            der_time(0x17, b"491231235959Z"),
            der_time(0x18, b"20491231235959Z")
        );
        assert!(der_time(0x17, b"701301000000Z").is_none());
        assert!(der_time(0x18, b"2049123123595Z").is_none());
        assert!(not_after(&CertificateDer::from(&b"\x30\x03\x30\x01"[..])).is_none());
        assert!(not_after(&CertificateDer::from(&b""[..])).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_watcher_ends_its_task() {
        let key = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let pem = key.cert.pem();
        let material = TlsMaterial::from_pem(
            pem.as_bytes(),
            key.signing_key.serialize_pem().as_bytes(),
            pem.as_bytes(),
        )
        .unwrap();
        let watcher = material.watch(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert_eq!(
            Arc::strong_count(&material.shared),
            2,
            "the task holds a clone"
        );
        drop(watcher);
        // The aborted task drops its clone when the runtime next polls it.
        for _ in 0..100 {
            if Arc::strong_count(&material.shared) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the watcher's task still holds the material");
    }

    #[test]
    fn identity_patterns() {
        let web: SpiffeId = "spiffe://td/ns/shop/sa/web".parse().unwrap();
        let exact = IdentityPattern::parse("spiffe://td/ns/shop/sa/web").unwrap();
        assert!(exact.matches(&web));
        assert!(!exact.matches(&"spiffe://td/ns/shop/sa/api".parse().unwrap()));
        let under = IdentityPattern::parse("spiffe://td/ns/shop/*").unwrap();
        assert!(under.matches(&web));
        assert!(!under.matches(&"spiffe://td/ns/shopping/sa/web".parse().unwrap()));
        assert!(!under.matches(&"spiffe://td/ns/shop".parse().unwrap()));
        assert!(IdentityPattern::parse("spiffe://td/ns/*/sa/web").is_err());
        assert!(IdentityPattern::parse("https://td/web").is_err());
        assert!(IdentityPattern::parse("spiffe://td/*").is_ok());
    }
}
