//! One token against one key: the header read once, the signature checked
//! with `jsonwebtoken`'s crypto (aws-lc-rs), then the payload decoded and
//! parsed once into the claims map that the checks read.
//!
//! `jsonwebtoken::decode` parses the header twice, and the payload twice
//! (once into the caller's type, once into its own validation struct);
//! this does each once. The checks are `jsonwebtoken`'s `Validation` as
//! the layer configures it — `exp` required and checked, `nbf` checked,
//! `iss` and `aud` required and checked when set, one leeway — and a
//! differential test holds them to `jsonwebtoken::decode`'s verdicts. Two
//! differences, both stricter: an `iss` must be a string (RFC 7519 §4.1.1;
//! `jsonwebtoken` also takes an array), and a header naming `crit`
//! extensions is refused (RFC 7515 §4.1.11: none is understood here).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::key::JwtKey;

/// Why a token is refused; static, so it can never hold the token.
pub(crate) type Refused = &'static str;

pub(crate) const MALFORMED: Refused = "the token is malformed or its algorithm is not supported";
pub(crate) const WRONG_ALGORITHM: Refused = "the token's algorithm is not accepted for its key";
const BAD_SIGNATURE: Refused = "the token's signature is not valid";
const CRITICAL: Refused = "the token's header names critical extensions";
const NO_EXP: Refused = "the token has no exp claim";
const NO_ISS: Refused = "the token has no iss claim";
const NO_AUD: Refused = "the token has no aud claim";
const WRONG_TYPE: Refused = "a claim of the token has the wrong type";
const EXPIRED: Refused = "the token has expired";
const NOT_YET: Refused = "the token is not valid yet";
const WRONG_ISS: Refused = "the token's issuer is not accepted";
const WRONG_AUD: Refused = "the token's audience is not accepted";

/// The three segments of a compact JWS. No `Debug`: it would print the
/// token.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'t> {
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
    /// `header.payload`, what the signature covers.
    message: &'t str,
}

impl<'t> Parts<'t> {
    /// Exactly three dot-separated segments, or `None`.
    pub(crate) fn split(token: &'t str) -> Option<Self> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        Some(Parts {
            header,
            payload,
            signature,
            message,
        })
    }
}

#[derive(serde::Deserialize)]
struct RawHeader<'b> {
    #[serde(borrow)]
    alg: Cow<'b, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'b, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The header fields a key is chosen by.
#[derive(Debug)]
pub(crate) struct TokenHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

/// Decodes base64url (no padding) into `stack` when it fits, else onto the
/// heap (bounded by the token size limit), and hands the bytes to `f`.
fn with_decoded<R>(segment: &str, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let mut stack = [0u8; 1024];
    match URL_SAFE_NO_PAD.decode_slice(segment, &mut stack) {
        Ok(len) => Some(f(&stack[..len])),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            let heap = URL_SAFE_NO_PAD.decode(segment).ok()?;
            Some(f(&heap))
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => None,
    }
}

/// The token's `alg` and `kid`; refused when malformed, when `alg` is not
/// one this crate knows (`none` among them), or with `crit`.
pub(crate) fn header(parts: &Parts<'_>) -> Result<TokenHeader, Refused> {
    with_decoded(parts.header, |bytes| {
        let raw: RawHeader<'_> = serde_json::from_slice(bytes).map_err(|_| MALFORMED)?;
        if raw.crit.is_some() {
            return Err(CRITICAL);
        }
        let alg = raw.alg.parse::<Algorithm>().map_err(|_| MALFORMED)?;
        Ok(TokenHeader {
            alg,
            kid: raw.kid.map(Cow::into_owned),
        })
    })
    .unwrap_or(Err(MALFORMED))
}

/// What the claims must satisfy, for one issuer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimRules {
    /// Required `iss`.
    pub(crate) issuer: Option<String>,
    /// Accepted `aud` values; `aud` is required when not empty.
    pub(crate) audiences: Vec<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub(crate) leeway: u64,
}

/// Checks the signature with `key` (whose algorithm must be the header's),
/// then the claims; returns them.
pub(crate) fn verify(
    parts: &Parts<'_>,
    alg: Algorithm,
    key: &JwtKey,
    rules: &ClaimRules,
    now: u64,
) -> Result<Map<String, Value>, Refused> {
    if alg != key.algorithm {
        return Err(WRONG_ALGORITHM);
    }
    match jsonwebtoken::crypto::verify(
        parts.signature,
        parts.message.as_bytes(),
        &key.key,
        key.algorithm,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(BAD_SIGNATURE),
        // Not base64, or a key that does not fit the algorithm.
        Err(_) => return Err(MALFORMED),
    }
    let claims: Map<String, Value> =
        with_decoded(parts.payload, |bytes| serde_json::from_slice(bytes).ok())
            .flatten()
            .ok_or(MALFORMED)?;
    check(&claims, rules, now)?;
    Ok(claims)
}

/// A NumericDate as `jsonwebtoken` reads it: a non-negative integer, or a
/// finite non-negative float, rounded.
fn numeric_date(value: &Value) -> Option<u64> {
    let Value::Number(n) = value else { return None };
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            // Checked finite and in range just above.
            .map(|f| f.round() as u64)
    })
}

fn present(claims: &Map<String, Value>, name: &str) -> bool {
    claims.get(name).is_some_and(|v| !v.is_null())
}

/// The claim checks, in `jsonwebtoken`'s order: required claims present,
/// `exp`/`nbf` well-formed, not expired, already valid, then `iss`, `aud`.
pub(crate) fn check(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now: u64,
) -> Result<(), Refused> {
    let exp = claims.get("exp").and_then(numeric_date).ok_or(NO_EXP)?;
    if rules.issuer.is_some() && !present(claims, "iss") {
        return Err(NO_ISS);
    }
    if !rules.audiences.is_empty() && !present(claims, "aud") {
        return Err(NO_AUD);
    }
    let nbf = match claims.get("nbf") {
        None => None,
        // `null` too: `jsonwebtoken` refuses it as malformed.
        Some(value) => Some(numeric_date(value).ok_or(WRONG_TYPE)?),
    };
    if exp < now.saturating_sub(rules.leeway) {
        return Err(EXPIRED);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(rules.leeway)) {
        return Err(NOT_YET);
    }
    if let Some(iss) = &rules.issuer
        && !matches!(claims.get("iss"), Some(Value::String(s)) if s == iss)
    {
        return Err(WRONG_ISS);
    }
    if !rules.audiences.is_empty() {
        let accepted = |s: &str| rules.audiences.iter().any(|a| a == s);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(items)) => {
                items.iter().all(Value::is_string)
                    && items.iter().filter_map(Value::as_str).any(accepted)
            }
            _ => false,
        };
        if !ok {
            return Err(WRONG_AUD);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"differential-secret-0123456789abcdef";

    /// Every combination of claim shapes and issuer rules gets the same
    /// verdict here as from `jsonwebtoken::decode` with the `Validation`
    /// the layer used to build, except the one documented difference (an
    /// `iss` array is refused here).
    #[test]
    fn verdicts_match_jsonwebtoken_decode() {
        let now = jsonwebtoken::get_current_timestamp();
        let exps = [
            None,
            Some(Value::Null),
            Some(json!(now + 600)),
            Some(json!(now - 10)),
            Some(json!(now - 100)),
            Some(json!((now + 600) as f64 + 0.4)),
            Some(json!((now - 100) as f64)),
            Some(json!(1e30)),
            Some(json!(-5)),
            Some(json!("9999999999")),
            Some(json!(true)),
        ];
        let nbfs = [
            None,
            Some(Value::Null),
            Some(json!(now - 10)),
            Some(json!(now + 10)),
            Some(json!(now + 100)),
            Some(json!((now + 100) as f64)),
            Some(json!("0")),
            Some(json!(-1)),
        ];
        let isss = [
            None,
            Some(Value::Null),
            Some(json!("good")),
            Some(json!("bad")),
            Some(json!(5)),
            Some(json!(["good"])),
        ];
        let auds = [
            None,
            Some(Value::Null),
            Some(json!("orders")),
            Some(json!("other")),
            Some(json!(["x", "orders"])),
            Some(json!(["x"])),
            Some(json!([])),
            Some(json!(["orders", 5])),
            Some(json!(7)),
        ];
        let rules = [
            (None, vec![]),
            (Some("good"), vec![]),
            (None, vec!["orders", "billing"]),
            (Some("good"), vec!["orders"]),
        ];
        let encoding = EncodingKey::from_secret(SECRET);
        let key = JwtKey::hmac(Algorithm::HS256, SECRET).unwrap();
        let decoding = DecodingKey::from_secret(SECRET);
        let (mut compared, mut accepted) = (0, 0);
        for exp in &exps {
            for nbf in &nbfs {
                for iss in &isss {
                    for aud in &auds {
                        let mut claims = Map::new();
                        for (name, value) in
                            [("exp", exp), ("nbf", nbf), ("iss", iss), ("aud", aud)]
                        {
                            if let Some(value) = value {
                                claims.insert(name.to_owned(), value.clone());
                            }
                        }
                        let token = jsonwebtoken::encode(
                            &Header::new(Algorithm::HS256),
                            &claims,
                            &encoding,
                        )
                        .unwrap();
                        let parts = Parts::split(&token).unwrap();
                        for (issuer, audiences) in &rules {
                            let ours = verify(
                                &parts,
                                Algorithm::HS256,
                                &key,
                                &ClaimRules {
                                    issuer: issuer.map(str::to_owned),
                                    audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
                                    leeway: 30,
                                },
                                now,
                            );
                            let mut validation = Validation::new(Algorithm::HS256);
                            let mut required = vec!["exp"];
                            validation.validate_nbf = true;
                            validation.leeway = 30;
                            if let Some(issuer) = issuer {
                                validation.set_issuer(&[issuer]);
                                required.push("iss");
                            }
                            if audiences.is_empty() {
                                validation.validate_aud = false;
                            } else {
                                validation.set_audience(audiences);
                                required.push("aud");
                            }
                            validation.set_required_spec_claims(&required);
                            let theirs = jsonwebtoken::decode::<Map<String, Value>>(
                                &token,
                                &decoding,
                                &validation,
                            );
                            let iss_array =
                                issuer.is_some() && matches!(iss, Some(Value::Array(_)));
                            if iss_array {
                                assert!(ours.is_err(), "an iss array is refused: {claims:?}");
                            } else {
                                assert_eq!(
                                    ours.is_ok(),
                                    theirs.is_ok(),
                                    "claims {claims:?}, issuer {issuer:?}, audiences {audiences:?}: ours {ours:?}, jsonwebtoken {theirs:?}"
                                );
                            }
                            compared += 1;
                            accepted += usize::from(ours.is_ok());
                        }
                    }
                }
            }
        }
        assert_eq!(
            compared,
            exps.len() * nbfs.len() * isss.len() * auds.len() * rules.len()
        );
        // Both verdicts occur, many times: the comparison discriminates.
        assert!(
            accepted > 200 && compared - accepted > 200,
            "{accepted} of {compared}"
        );
    }

    #[test]
    fn headers_and_segments() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let token = |header: &str| format!("{}.{}.sig", b64(header), b64("{}"));
        for (header, expected) in [
            (
                r#"{"alg":"HS256","kid":"k1"}"#,
                Ok((Algorithm::HS256, Some("k1".to_owned()))),
            ),
            (r#"{"alg":"ES384"}"#, Ok((Algorithm::ES384, None))),
            (r#"{"alg":"none"}"#, Err(MALFORMED)),
            (r#"{"alg":"HS256","crit":["exp"]}"#, Err(CRITICAL)),
            (r#"{"kid":"k1"}"#, Err(MALFORMED)),
            (r#"{"alg":"HS256","kid":7}"#, Err(MALFORMED)),
            ("not json", Err(MALFORMED)),
        ] {
            let token = token(header);
            let got = header_of(&token);
            assert_eq!(got, expected, "{header}");
        }
        assert!(Parts::split("a.b").is_none());
        assert!(Parts::split("a.b.c.d").is_none());
        assert!(Parts::split("a.b.c").is_some());
        // A long header is decoded on the heap.
        let long = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(2000));
        assert_eq!(
            header_of(&token(&long)).unwrap().1.map(|k| k.len()),
            Some(2000)
        );
    }

    fn header_of(token: &str) -> Result<(Algorithm, Option<String>), Refused> {
        let parts = Parts::split(token).ok_or(MALFORMED)?;
        header(&parts).map(|h| (h.alg, h.kid))
    }
}
