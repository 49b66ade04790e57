use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::template::{HeaderTemplate, Lookup, Var};

/// Header operations on one side (request or response), applied in the
/// order remove, rename, set, add — the order of the config's
/// `HeaderTransform`.
///
/// * **remove**: every value of the header goes (e.g. an `x-consumer-id` a
///   client must not be able to send);
/// * **rename** `from → to`: when `from` is present, all its values move to
///   `to`, replacing what `to` had; when it is absent nothing happens;
/// * **set**: the header gets exactly this value, replacing any;
/// * **add**: the value is appended, keeping existing ones.
///
/// Values are [`HeaderTemplate`]s.
///
/// ```
/// use http::HeaderName;
/// use meshgate::transform::HeaderOps;
///
/// let ops = HeaderOps::new()
///     .remove(HeaderName::from_static("x-consumer-id"))
///     .set(HeaderName::from_static("x-gateway"), "meshgate".parse().unwrap())
///     .add(HeaderName::from_static("x-trace"), "${request_id}".parse().unwrap());
/// assert!(!ops.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HeaderOps {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    set: Vec<(HeaderName, HeaderTemplate)>,
    add: Vec<(HeaderName, HeaderTemplate)>,
}

impl HeaderOps {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every value of `name`.
    pub fn remove(mut self, name: HeaderName) -> Self {
        self.remove.push(name);
        self
    }

    /// Moves the values of `from` to `to`, replacing `to`'s.
    pub fn rename(mut self, from: HeaderName, to: HeaderName) -> Self {
        self.rename.push((from, to));
        self
    }

    /// Sets `name` to `value`, replacing any values.
    pub fn set(mut self, name: HeaderName, value: HeaderTemplate) -> Self {
        self.set.push((name, value));
        self
    }

    /// Appends `value` to `name`.
    pub fn add(mut self, name: HeaderName, value: HeaderTemplate) -> Self {
        self.add.push((name, value));
        self
    }

    /// Whether there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// The operations of a config `HeaderTransform`; values are parsed as
    /// templates (a value that is not UTF-8 is taken literally).
    #[cfg(feature = "config")]
    pub fn from_config(
        config: &crate::config::HeaderTransform,
    ) -> Result<Self, super::TemplateError> {
        let template = |field: &str, name: &HeaderName, value: &HeaderValue| match value.to_str() {
            Ok(text) => HeaderTemplate::parse(text).map_err(|e| e.at(name.as_str()).at(field)),
            Err(_) => Ok(HeaderTemplate::literal(value.clone())),
        };
        let mut ops = Self::new();
        for name in &config.remove {
            ops = ops.remove(name.clone());
        }
        for (from, to) in &config.rename {
            ops = ops.rename(from.clone(), to.clone());
        }
        for (name, value) in &config.set {
            ops = ops.set(name.clone(), template("set", name, value)?);
        }
        for (name, value) in &config.add {
            ops = ops.add(name.clone(), template("add", name, value)?);
        }
        Ok(ops)
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.set
            .iter()
            .chain(&self.add)
            .flat_map(|(_, template)| template.vars())
    }

    /// The operations as one flat list for the request path.
    pub(crate) fn prepare(&self) -> PreparedOps {
        let value = |name: &HeaderName, template: &HeaderTemplate, add: bool| {
            let name = name.clone();
            match (template.fixed(), add) {
                (Some(value), false) => Op::Set(name, value.clone()),
                (Some(value), true) => Op::Add(name, value.clone()),
                (None, false) => Op::SetTemplate(name, template.clone()),
                (None, true) => Op::AddTemplate(name, template.clone()),
            }
        };
        let ops = self
            .remove
            .iter()
            .map(|name| Op::Remove(name.clone()))
            .chain(
                self.rename
                    .iter()
                    .map(|(from, to)| Op::Rename(from.clone(), to.clone())),
            )
            .chain(
                self.set
                    .iter()
                    .map(|(name, template)| value(name, template, false)),
            )
            .chain(
                self.add
                    .iter()
                    .map(|(name, template)| value(name, template, true)),
            )
            .collect();
        PreparedOps(ops)
    }
}

/// [`HeaderOps`] prepared once, when the layer is built, for the hot path
/// (requests and responses): one list in the order remove, rename, set, add, and fixed values
/// told apart from templates so applying one is a clone (a reference count
/// or a static pointer) and a single map insert.
#[derive(Debug, Default)]
pub(crate) struct PreparedOps(Box<[Op]>);

#[derive(Debug)]
enum Op {
    Remove(HeaderName),
    Rename(HeaderName, HeaderName),
    Set(HeaderName, HeaderValue),
    SetTemplate(HeaderName, HeaderTemplate),
    Add(HeaderName, HeaderValue),
    AddTemplate(HeaderName, HeaderTemplate),
}

impl PreparedOps {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap, vars: &dyn Lookup) {
        for op in &self.0 {
            match op {
                Op::Remove(name) => {
                    headers.remove(name);
                }
                Op::Rename(from, to) => rename(headers, from, to),
                Op::Set(name, value) => set(headers, name, Some(value.clone())),
                // A value that cannot be produced must not leave a stale
                // (possibly client-sent) one in place.
                Op::SetTemplate(name, template) => set(headers, name, template.render(vars)),
                Op::Add(name, value) => {
                    // Only a map already at `http`'s limit of 32 768 entries
                    // refuses; the value is then not added.
                    let _ = headers.try_append(name, value.clone());
                }
                Op::AddTemplate(name, template) => {
                    if let Some(value) = template.render(vars) {
                        let _ = headers.try_append(name, value);
                    }
                }
            }
        }
    }
}

/// `name` gets exactly `value`, or nothing when there is none (or the map is
/// at `http`'s size limit): never a value that was there before.
fn set(headers: &mut HeaderMap, name: &HeaderName, value: Option<HeaderValue>) {
    let written = value.is_some_and(|value| headers.try_insert(name, value).is_ok());
    if !written {
        headers.remove(name);
    }
}

/// Moves every value of `from` to `to`, replacing `to`'s, with as few map
/// operations as `http`'s API allows.
fn rename(headers: &mut HeaderMap, from: &HeaderName, to: &HeaderName) {
    // When no header of the map has a second value (`len` counts values,
    // `keys_len` names), `remove` returns all `from` had: one lookup to take
    // it, one to insert it, no entry and no scan of extra values.
    if headers.len() == headers.keys_len() {
        if let Some(value) = headers.remove(from) {
            set(headers, to, Some(value));
        }
        return;
    }
    let entry = match headers.try_entry(from) {
        Ok(Entry::Occupied(entry)) => entry,
        Ok(Entry::Vacant(_)) => return,
        // Only a map at `http`'s limit of 32 768 entries refuses: the
        // header is dropped rather than left under its old name.
        Err(_) => {
            headers.remove(from);
            headers.remove(to);
            return;
        }
    };
    let (_, mut values) = entry.remove_entry_mult();
    // The drain borrows the map; the values after the first (rare) are
    // collected before they are written. An empty `Vec` does not allocate.
    let first = values.next();
    let rest: Vec<HeaderValue> = values.collect();
    set(headers, to, first);
    for value in rest {
        let _ = headers.try_append(to, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::template::NoVars;

    fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(name(k), HeaderValue::from_static(v));
        }
        map
    }

    fn all(map: &HeaderMap, key: &str) -> Vec<String> {
        map.get_all(key)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn rename_takes_the_same_result_on_both_paths() {
        let ops = HeaderOps::new().rename(name("x-a"), name("x-b")).prepare();
        // One value each: `len == keys_len`, the remove-and-insert path.
        let mut single = map(&[("x-a", "1"), ("x-b", "old"), ("x-c", "c")]);
        assert_eq!(single.len(), single.keys_len());
        ops.apply(&mut single, &NoVars);
        assert_eq!(all(&single, "x-b"), ["1"]);
        assert!(single.get("x-a").is_none());
        assert_eq!(single.len(), 2);
        // Another header repeated: the entry path, same result.
        let mut repeated = map(&[("x-a", "1"), ("x-b", "old"), ("x-c", "c"), ("x-c", "d")]);
        ops.apply(&mut repeated, &NoVars);
        assert_eq!(all(&repeated, "x-b"), ["1"]);
        assert!(repeated.get("x-a").is_none());
        assert_eq!(all(&repeated, "x-c"), ["c", "d"]);
        // The source repeated: every value moves, in order.
        let mut source = map(&[("x-a", "1"), ("x-a", "2"), ("x-b", "old"), ("x-b", "old2")]);
        ops.apply(&mut source, &NoVars);
        assert_eq!(all(&source, "x-b"), ["1", "2"]);
        assert!(source.get("x-a").is_none());
        assert_eq!(source.len(), 2);
        // Absent source: nothing changes on either path.
        for pairs in [
            &[("x-b", "keep")][..],
            &[("x-b", "keep"), ("x-b", "too")][..],
        ] {
            let mut absent = map(pairs);
            let before = absent.clone();
            ops.apply(&mut absent, &NoVars);
            assert_eq!(absent, before);
        }
    }

    #[test]
    fn prepared_ops_keep_the_order_remove_rename_set_add() {
        let ops = HeaderOps::new()
            .add(name("x-t"), HeaderValue::from_static("added").into())
            .set(name("x-t"), HeaderValue::from_static("set").into())
            .rename(name("x-old"), name("x-t"))
            .remove(name("x-old"))
            .set(name("x-gone"), "${request_id}".parse().unwrap())
            .add(name("x-none"), "${route}".parse().unwrap())
            .prepare();
        let mut headers = map(&[("x-old", "1"), ("x-t", "client"), ("x-gone", "spoofed")]);
        ops.apply(&mut headers, &NoVars);
        assert!(headers.get("x-old").is_none());
        assert_eq!(all(&headers, "x-t"), ["set", "added"]);
        // A template without its value removes on set, adds nothing on add.
        assert!(headers.get("x-gone").is_none());
        assert!(headers.get("x-none").is_none());
    }
}
