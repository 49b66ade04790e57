//! `deserialize_with` helpers for HTTP types that have no serde support.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

fn parse_header_name<E: de::Error>(v: &str) -> Result<HeaderName, E> {
    HeaderName::from_bytes(v.as_bytes())
        .map_err(|_| E::custom(format!("invalid header name {v:?}")))
}

/// A header name (any case; stored lower-case).
pub(crate) fn header_name<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderName, D::Error> {
    struct V;

    impl Visitor<'_> for V {
        type Value = HeaderName;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a header name")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderName, E> {
            parse_header_name(v)
        }
    }

    d.deserialize_str(V)
}

/// A list of header names.
pub(crate) fn header_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HeaderName>, D::Error> {
    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Vec<HeaderName>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of header names")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.push(parse_header_name(&name)?);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(V)
}

/// A list of header names that may be left out (`None`, with
/// `#[serde(default)]`).
pub(crate) fn opt_header_names<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<HeaderName>>, D::Error> {
    header_names(d).map(Some)
}

/// A map of header name to header value, in file order.
pub(crate) fn header_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(HeaderName, HeaderValue)>, D::Error> {
    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Vec<(HeaderName, HeaderValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of header names to values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                let name = parse_header_name(&name)?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| de::Error::custom(format!("invalid value for header {name}")))?;
                out.push((name, value));
            }
            Ok(out)
        }
    }

    d.deserialize_map(V)
}

/// A map of header name to header name (renames).
pub(crate) fn header_renames<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(HeaderName, HeaderName)>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    map.iter()
        .map(|(from, to)| Ok((parse_header_name(from)?, parse_header_name(to)?)))
        .collect()
}

/// A list of HTTP methods, upper-case tokens (`GET`, `POST`, …).
pub(crate) fn methods<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<http::Method>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names.iter().map(|name| parse_method(name)).collect()
}

pub(crate) fn parse_method<E: de::Error>(name: &str) -> Result<http::Method, E> {
    let upper = name.to_ascii_uppercase();
    if upper != name {
        return Err(E::custom(format!(
            "method {name:?} must be upper-case ({upper:?})"
        )));
    }
    http::Method::from_bytes(name.as_bytes())
        .map_err(|_| E::custom(format!("invalid HTTP method {name:?}")))
}
