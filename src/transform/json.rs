use serde_json::{Map, Value};

use super::template::{Lookup, Template, TemplateError, Var};

/// JSON field operations on one side's body, applied in the order remove,
/// rename, replace, add — Kong's `remove.json`, `rename.json`,
/// `replace.json`, `add.json`.
///
/// * **remove**: the field goes;
/// * **rename** `from → to`: when `from` is present its value moves to `to`,
///   replacing what `to` had;
/// * **replace**: the field gets this value **only when it is present**;
/// * **add**: the field gets this value **only when it is absent**.
///
/// Fields are named by dotted paths into nested objects (`user.password`):
/// a path that crosses a value that is not an object does nothing; `add`
/// and a rename's target create missing objects on the way. A key that
/// itself contains a dot cannot be named.
///
/// Values are JSON values; a string with `${...}` is a template (the same
/// variables as [`HeaderTemplate`](super::HeaderTemplate)) rendered to a
/// JSON string. When a variable is missing, `add` adds nothing and
/// `replace` removes the field, so a client-sent value never survives.
///
/// ```
/// use meshgate::transform::JsonOps;
/// use serde_json::json;
///
/// let ops = JsonOps::new()
///     .remove("password")
///     .rename("userName", "user.name")
///     .replace("role", json!("user"))
///     .unwrap()
///     .add("tenant", json!("${header.x-tenant}"))
///     .unwrap();
/// assert!(!ops.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct JsonOps {
    remove: Vec<FieldPath>,
    rename: Vec<(FieldPath, FieldPath)>,
    replace: Vec<(FieldPath, FieldValue)>,
    add: Vec<(FieldPath, FieldValue)>,
}

#[derive(Debug, Clone)]
struct FieldPath(Box<[String]>);

impl FieldPath {
    fn parse(path: &str) -> Self {
        Self(path.split('.').map(str::to_owned).collect())
    }

    /// The object holding the last segment, and that segment.
    fn parent<'a>(
        &'a self,
        root: &'a mut Map<String, Value>,
        create: bool,
    ) -> Option<(&'a mut Map<String, Value>, &'a str)> {
        let (last, within) = self.0.split_last()?;
        let mut map = root;
        for segment in within {
            if create && !map.contains_key(segment) {
                map.insert(segment.clone(), Value::Object(Map::new()));
            }
            map = map.get_mut(segment)?.as_object_mut()?;
        }
        Some((map, last))
    }
}

#[derive(Debug, Clone)]
enum FieldValue {
    Fixed(Value),
    Template(Template),
}

impl FieldValue {
    fn parse(value: Value) -> Result<Self, TemplateError> {
        if let Value::String(text) = &value
            && let Some(template) = Template::parse(text)?
        {
            return Ok(Self::Template(template));
        }
        Ok(Self::Fixed(value))
    }

    fn render(&self, vars: &dyn Lookup) -> Option<Value> {
        match self {
            Self::Fixed(value) => Some(value.clone()),
            Self::Template(template) => template.render(vars).map(Value::String),
        }
    }
}

impl JsonOps {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes the field at `path`.
    pub fn remove(mut self, path: &str) -> Self {
        self.remove.push(FieldPath::parse(path));
        self
    }

    /// Moves the field at `from` to `to`.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.rename
            .push((FieldPath::parse(from), FieldPath::parse(to)));
        self
    }

    /// Replaces the field at `path` with `value` when it is present.
    /// Errors when `value` is a string with a bad template.
    pub fn replace(mut self, path: &str, value: Value) -> Result<Self, TemplateError> {
        self.replace
            .push((FieldPath::parse(path), FieldValue::parse(value)?));
        Ok(self)
    }

    /// Adds the field at `path` with `value` when it is absent.
    /// Errors when `value` is a string with a bad template.
    pub fn add(mut self, path: &str, value: Value) -> Result<Self, TemplateError> {
        self.add
            .push((FieldPath::parse(path), FieldValue::parse(value)?));
        Ok(self)
    }

    /// Whether there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
    }

    /// The operations of a config `BodyTransform`.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::BodyTransform) -> Result<Self, TemplateError> {
        let mut ops = Self::new();
        for path in &config.remove {
            ops = ops.remove(path);
        }
        for (from, to) in &config.rename {
            ops = ops.rename(from, to);
        }
        for (path, value) in &config.replace {
            ops = ops
                .replace(path, value.to_json())
                .map_err(|e| e.at(path).at("replace"))?;
        }
        for (path, value) in &config.add {
            ops = ops
                .add(path, value.to_json())
                .map_err(|e| e.at(path).at("add"))?;
        }
        Ok(ops)
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.replace
            .iter()
            .chain(&self.add)
            .filter_map(|(_, value)| match value {
                FieldValue::Fixed(_) => None,
                FieldValue::Template(template) => Some(template.vars()),
            })
            .flatten()
    }

    pub(crate) fn apply(&self, root: &mut Map<String, Value>, vars: &dyn Lookup) {
        for path in &self.remove {
            if let Some((parent, key)) = path.parent(root, false) {
                parent.remove(key);
            }
        }
        for (from, to) in &self.rename {
            let Some(value) = from
                .parent(root, false)
                .and_then(|(parent, key)| parent.remove(key))
            else {
                continue;
            };
            match to.parent(root, true) {
                Some((parent, key)) => {
                    parent.insert(key.to_owned(), value);
                }
                // The target crosses a non-object: the field stays where it was.
                None => {
                    if let Some((parent, key)) = from.parent(root, true) {
                        parent.insert(key.to_owned(), value);
                    }
                }
            }
        }
        for (path, value) in &self.replace {
            let Some((parent, key)) = path.parent(root, false) else {
                continue;
            };
            if !parent.contains_key(key) {
                continue;
            }
            match value.render(vars) {
                Some(value) => {
                    parent.insert(key.to_owned(), value);
                }
                None => {
                    parent.remove(key);
                }
            }
        }
        for (path, value) in &self.add {
            let Some((parent, key)) = path.parent(root, true) else {
                continue;
            };
            if parent.contains_key(key) {
                continue;
            }
            if let Some(value) = value.render(vars) {
                parent.insert(key.to_owned(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::transform::template::NoVars;

    fn run(ops: &JsonOps, value: Value) -> Value {
        let Value::Object(mut map) = value else {
            panic!("not an object")
        };
        ops.apply(&mut map, &NoVars);
        Value::Object(map)
    }

    #[test]
    fn operations_in_order_with_dotted_paths() {
        let ops = JsonOps::new()
            .remove("password")
            .remove("user.ssn")
            .remove("list.x")
            .rename("userName", "user.name")
            .rename("absent", "other")
            .replace("role", json!("user"))
            .unwrap()
            .replace("missing", json!(1))
            .unwrap()
            .add("meta.version", json!(2))
            .unwrap()
            .add("role", json!("admin"))
            .unwrap();
        let out = run(
            &ops,
            json!({
                "password": "p", "userName": "ann", "role": "admin",
                "user": {"ssn": "1", "id": 7}, "list": [1]
            }),
        );
        assert_eq!(
            out,
            json!({
                "user": {"id": 7, "name": "ann"}, "role": "user",
                "meta": {"version": 2}, "list": [1]
            })
        );
    }

    #[test]
    fn missing_template_values() {
        let ops = JsonOps::new()
            .replace("owner", json!("${claim.sub}"))
            .unwrap()
            .add("tenant", json!("${header.x-tenant}"))
            .unwrap();
        assert_eq!(ops.vars().count(), 2);
        let out = run(&ops, json!({"owner": "forged", "x": 1}));
        assert_eq!(out, json!({"x": 1}));
        assert!(JsonOps::new().add("a", json!("${nope}")).is_err());
    }

    #[test]
    fn rename_into_a_non_object_keeps_the_field() {
        let ops = JsonOps::new().rename("a", "b.c");
        assert_eq!(run(&ops, json!({"a": 1, "b": 2})), json!({"a": 1, "b": 2}));
    }
}
