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

    pub(crate) fn apply(&self, headers: &mut HeaderMap, vars: &dyn Lookup) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (from, to) in &self.rename {
            let Entry::Occupied(mut entry) = headers.entry(from) else {
                continue;
            };
            // The common case, one value, moves it without allocating.
            if entry.iter_mut().nth(1).is_none() {
                let value = entry.remove();
                headers.insert(to, value);
                continue;
            }
            let (_, values) = entry.remove_entry_mult();
            let values: Vec<HeaderValue> = values.collect();
            let mut values = values.into_iter();
            if let Some(first) = values.next() {
                headers.insert(to, first);
            }
            for value in values {
                headers.append(to, value);
            }
        }
        for (name, template) in &self.set {
            match template.render(vars) {
                Some(value) => {
                    headers.insert(name, value);
                }
                // A value that cannot be produced must not leave a stale
                // (possibly client-sent) one in place.
                None => {
                    headers.remove(name);
                }
            }
        }
        for (name, template) in &self.add {
            if let Some(value) = template.render(vars) {
                headers.append(name, value);
            }
        }
    }
}
