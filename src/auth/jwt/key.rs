//! Verification keys, each bound to one algorithm.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::auth::ConfigError;

/// A verification key bound to the one algorithm it verifies.
///
/// A token is checked against a key only when the token's `alg` equals the
/// key's algorithm: the token never chooses the key type, so an `HS256`
/// token is never checked against an RSA public key (the classic
/// "public key as HMAC secret" confusion) and `alg: none` has no key at all.
///
/// ```
/// use meshgate::auth::jwt::{Algorithm, JwtKey};
///
/// let key = JwtKey::hmac(Algorithm::HS256, b"a-secret-of-at-least-32-bytes!!!").unwrap().with_kid("k1");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert!(JwtKey::hmac(Algorithm::RS256, b"a-secret-of-at-least-32-bytes!!!").is_err());
/// assert!(JwtKey::hmac(Algorithm::HS256, b"short").is_err());
/// ```
#[derive(Clone)]
pub struct JwtKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Shortest HMAC secret accepted: the hash size (RFC 7518 §3.2).
fn min_secret_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "this algorithm",
    }
}

impl JwtKey {
    /// An HMAC secret for `HS256`, `HS384` or `HS512`. Fails for another
    /// algorithm, or a secret shorter than the hash (32, 48, 64 bytes).
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        if algorithm.family() != AlgorithmFamily::Hmac {
            return Err(ConfigError::new(format!(
                "a secret can only verify HS256/384/512, not {}",
                name(algorithm)
            )));
        }
        if secret.len() < min_secret_len(algorithm) {
            return Err(ConfigError::new(format!(
                "an {} secret must be at least {} bytes",
                name(algorithm),
                min_secret_len(algorithm)
            )));
        }
        Ok(JwtKey {
            kid: None,
            algorithm,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC
    /// KEY`) for an RS, PS, ES or EdDSA algorithm. Fails for an HS
    /// algorithm or a key that does not parse as that family's key.
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let key = match algorithm.family() {
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::new(format!(
                    "{} needs a secret, not a PEM public key",
                    name(algorithm)
                )));
            }
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| ConfigError::new(format!("not a {} PEM public key: {e}", name(algorithm))))?;
        Ok(JwtKey {
            kid: None,
            algorithm,
            key,
        })
    }

    /// A key from a JWK (RFC 7517). The algorithm is the JWK's `alg`; when
    /// absent it follows from the key: `EC` P-256 → ES256, P-384 → ES384,
    /// `OKP` Ed25519 → EdDSA, `RSA` → RS256. An `oct` (secret) JWK needs an
    /// explicit HS `alg`. Fails for encryption keys (`use: enc`), an `alg`
    /// that does not fit the key type, or a curve not supported.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return Err(ConfigError::new("the JWK is not a signature key"));
        }
        let algorithm = match jwk.common.key_algorithm {
            Some(alg) => from_key_algorithm(alg)?,
            None => match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => return Err(ConfigError::new("unsupported EC curve")),
                },
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => {
                    return Err(ConfigError::new(
                        "the JWK has no alg and its type needs one",
                    ));
                }
            },
        };
        // The curve must fit the algorithm (a P-384 key never verifies
        // ES256 and the reverse).
        if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm {
            let fits = matches!(
                (algorithm, &ec.curve),
                (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
            );
            if !fits {
                return Err(ConfigError::new("the JWK's curve does not fit its alg"));
            }
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| ConfigError::new(format!("unusable JWK: {e}")))?;
        if key.family() != algorithm.family() {
            return Err(ConfigError::new(format!(
                "the JWK's key type cannot verify {}",
                name(algorithm)
            )));
        }
        Ok(JwtKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        })
    }

    /// Sets the key id matched against a token's `kid`. Default: none (the
    /// key matches tokens without a `kid`, or every token when it is the
    /// issuer's only key).
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The only algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn from_key_algorithm(alg: KeyAlgorithm) -> Result<Algorithm, ConfigError> {
    Ok(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => {
            return Err(ConfigError::new(
                "the JWK's alg is not a signature algorithm",
            ));
        }
    })
}

/// Picks the key for a token: keys whose `kid` equals the token's; else
/// the only key when it has no `kid`. `Err(true)` when keys were found for
/// the `kid` but none for the token's algorithm.
pub(crate) fn select<'k>(
    keys: &'k [JwtKey],
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<&'k JwtKey, bool> {
    let mut kid_matched = false;
    for key in keys {
        if key.kid.as_deref() == kid {
            kid_matched = true;
            if key.algorithm == algorithm {
                return Ok(key);
            }
        }
    }
    if !kid_matched
        && let [only] = keys
        && only.kid.is_none()
    {
        return if only.algorithm == algorithm {
            Ok(only)
        } else {
            Err(true)
        };
    }
    Err(kid_matched)
}

#[cfg(feature = "config")]
impl JwtKey {
    /// The key of a config file's static key entry.
    pub fn from_config(key: &crate::config::JwtKey) -> Result<Self, ConfigError> {
        let algorithm = from_config_algorithm(key.algorithm);
        let mut out = match &key.material {
            crate::config::KeyMaterial::Secret(secret) => {
                JwtKey::hmac(algorithm, secret.expose().as_bytes())?
            }
            crate::config::KeyMaterial::Pem(pem) => JwtKey::from_pem(algorithm, pem.as_bytes())?,
        };
        out.kid = key.kid.clone();
        Ok(out)
    }
}

/// The `jsonwebtoken` algorithm of a config algorithm.
#[cfg(feature = "config")]
pub fn from_config_algorithm(alg: crate::config::JwtAlgorithm) -> Algorithm {
    use crate::config::JwtAlgorithm as C;
    match alg {
        C::HS256 => Algorithm::HS256,
        C::HS384 => Algorithm::HS384,
        C::HS512 => Algorithm::HS512,
        C::RS256 => Algorithm::RS256,
        C::RS384 => Algorithm::RS384,
        C::RS512 => Algorithm::RS512,
        C::PS256 => Algorithm::PS256,
        C::PS384 => Algorithm::PS384,
        C::PS512 => Algorithm::PS512,
        C::ES256 => Algorithm::ES256,
        C::ES384 => Algorithm::ES384,
        C::EdDSA => Algorithm::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(kid: Option<&str>, alg: Algorithm) -> JwtKey {
        let mut key = JwtKey::hmac(alg, &[7u8; 64]).unwrap();
        key.kid = kid.map(str::to_owned);
        key
    }

    #[test]
    fn selection_is_by_kid_then_algorithm() {
        let keys = [
            hs(Some("a"), Algorithm::HS256),
            hs(Some("b"), Algorithm::HS512),
        ];
        assert_eq!(
            select(&keys, Some("b"), Algorithm::HS512).unwrap().kid(),
            Some("b")
        );
        assert_eq!(select(&keys, Some("b"), Algorithm::HS256).err(), Some(true));
        assert_eq!(
            select(&keys, Some("c"), Algorithm::HS256).err(),
            Some(false)
        );
        assert_eq!(select(&keys, None, Algorithm::HS256).err(), Some(false));
        let only = [hs(None, Algorithm::HS256)];
        assert!(select(&only, Some("x"), Algorithm::HS256).is_ok());
        assert!(select(&only, None, Algorithm::HS256).is_ok());
        assert_eq!(select(&only, None, Algorithm::HS384).err(), Some(true));
    }

    #[test]
    fn keys_refuse_the_wrong_family() {
        assert!(JwtKey::from_pem(Algorithm::HS256, b"-----BEGIN PUBLIC KEY-----").is_err());
        assert!(JwtKey::from_pem(Algorithm::RS256, b"not a pem").is_err());
        assert!(JwtKey::hmac(Algorithm::HS512, &[1u8; 63]).is_err());
        assert!(JwtKey::hmac(Algorithm::HS512, &[1u8; 64]).is_ok());
        let oct: Jwk = serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap();
        assert!(JwtKey::from_jwk(&oct).is_err());
        let rsa_as_hs: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","alg":"HS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#,
        )
        .unwrap();
        assert!(JwtKey::from_jwk(&rsa_as_hs).is_err());
        let enc: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","use":"enc","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#,
        )
        .unwrap();
        assert!(JwtKey::from_jwk(&enc).is_err());
    }
}
