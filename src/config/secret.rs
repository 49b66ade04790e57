//! Secrets, `${VAR}` expansion and API-key digests.

use std::fmt;

use sha2::{Digest, Sha256};

/// A secret value (an HMAC key, a Redis URL with a password): its `Debug`
/// and `Display` print `***`, so a logged config never shows it.
///
/// Secrets come only from a loaded [`Config`](super::Config), with any
/// `${VAR}` reference already replaced by the variable's value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call it only where the value is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The SHA-256 digest of an API key. The plain key is never kept.
///
/// `Debug` prints `sha256:***`: a digest is not the key, but it is what an
/// attacker would try to match offline, so it stays out of logs too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyDigest([u8; 32]);

impl ApiKeyDigest {
    /// The digest of a plain key.
    pub fn of_key(key: &str) -> Self {
        ApiKeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// A digest from its 64 hexadecimal digits (either case).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(ApiKeyDigest(out))
    }

    /// The 32 digest bytes (compare them in constant time).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:***")
    }
}

/// Where `${VAR}` references are looked up: the process environment, or a
/// function given to the loader (tests, or the example gateway filling in
/// the addresses of its demo upstreams).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a `${VAR}` expansion failed. Never holds the value being expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    NotSet(String),
    BadName,
    Unterminated,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::NotSet(name) => write!(f, "environment variable {name} is not set"),
            ExpandError::BadName => f.write_str(
                "invalid environment variable reference (use ${NAME}, NAME of letters, digits and _)",
            ),
            ExpandError::Unterminated => {
                f.write_str("unterminated ${ in value (write $$ for a literal $)")
            }
        }
    }
}

/// Replaces every `${NAME}` in `template` by the variable's value; `$$` is a
/// literal `$`, and a `$` followed by anything else is kept as it is.
pub(crate) fn expand(template: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = after.strip_prefix('{') {
            let end = after.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &after[..end];
            let valid = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(ExpandError::BadName);
            }
            let value = env(name).ok_or_else(|| ExpandError::NotSet(name.to_owned()))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `value` contains a `${` reference (so its text may be a secret
/// from the environment and must not be echoed in errors).
pub(crate) fn has_reference(value: &str) -> bool {
    value.contains("${")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "PASS" => Some("s3cr$t".into()),
            _ => None,
        }
    }

    #[test]
    fn expands() {
        assert_eq!(
            expand("redis://:${PASS}@${HOST}:6379", &env).unwrap(),
            "redis://:s3cr$t@db.internal:6379"
        );
        assert_eq!(expand("a$$b$c", &env).unwrap(), "a$b$c");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::NotSet("NOPE".into()))
        );
        assert_eq!(expand("${HOST", &env), Err(ExpandError::Unterminated));
        assert_eq!(expand("${1X}", &env), Err(ExpandError::BadName));
        assert_eq!(expand("${}", &env), Err(ExpandError::BadName));
    }

    #[test]
    fn digests() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            ApiKeyDigest::of_key("abc"),
            ApiKeyDigest::from_hex(hex).unwrap()
        );
        assert_eq!(
            ApiKeyDigest::from_hex(&hex.to_uppercase()),
            ApiKeyDigest::from_hex(hex)
        );
        assert!(ApiKeyDigest::from_hex(&hex[1..]).is_none());
        assert!(ApiKeyDigest::from_hex(&hex.replace('a', "g")).is_none());
        assert_eq!(format!("{:?}", ApiKeyDigest::of_key("abc")), "sha256:***");
        assert_eq!(
            format!("{:?} {}", Secret::new("x"), Secret::new("x")),
            "*** ***"
        );
    }
}
