//! Line and column of a field path (`routes[2].upstream`) in the YAML text,
//! for problems found after parsing. Built only when there are problems.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The document as a tree of located nodes, without the values.
#[derive(Debug)]
pub(crate) struct Document(Node);

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl Document {
    /// Reads the document; `None` when it cannot be read (then problems
    /// simply have no position).
    pub(crate) fn parse(yaml: &str) -> Option<Self> {
        serde_saphyr::from_str::<Node>(yaml).ok().map(Document)
    }

    /// Line and column of the value at `path`, or of its nearest ancestor
    /// that is in the file (a defaulted field is not).
    pub(crate) fn locate(&self, path: &str) -> Option<(u64, u64)> {
        let mut node = &self.0;
        let mut found = None;
        for segment in segments(path)? {
            let next = match (node, segment) {
                (Node::Map(entries), Segment::Key(key)) => {
                    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
                }
                (Node::Seq(items), Segment::Index(i)) => items.get(i),
                _ => None,
            };
            let Some(next) = next else { break };
            let at = next.referenced;
            if at.line() > 0 {
                found = Some((at.line(), at.column()));
            }
            node = &next.value;
        }
        found
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a[0].b.c[1]` → `a`, `0`, `b`, `c`, `1`.
fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            out.push(Segment::Index(after[..close].parse().ok()?));
            rest = &after[close + 1..];
        }
    }
    Some(out)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(KeyText(key)) = map.next_key::<KeyText>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text, whatever scalar it is.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl Visitor<'_> for V {
            type Value = KeyText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }

        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_positions() {
        let yaml = "\
routes:
  - name: a
    upstream: pay
  - name: b
    split:
      backends: [{ upstream: x }]
rate_limit_tiers:
  free: []
";
        let doc = Document::parse(yaml).unwrap();
        assert_eq!(doc.locate("routes[0].upstream"), Some((3, 15)));
        assert_eq!(
            doc.locate("routes[1].split.backends[0].upstream"),
            Some((6, 30))
        );
        assert_eq!(doc.locate("routes[1]"), Some((4, 5)));
        // A field the file does not have: its nearest ancestor.
        assert_eq!(doc.locate("routes[1].timeout"), Some((4, 5)));
        assert_eq!(doc.locate("rate_limit_tiers.free"), Some((8, 9)));
        assert_eq!(doc.locate("nothing"), None);
        assert_eq!(
            segments("a[0][1].b"),
            Some(vec![
                Segment::Key("a"),
                Segment::Index(0),
                Segment::Index(1),
                Segment::Key("b")
            ])
        );
    }
}
