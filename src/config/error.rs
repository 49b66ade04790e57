//! What is wrong with a config file, field by field.

use std::fmt;

/// One problem in a config file: the path of the field and what is wrong.
///
/// Displayed as `path: message (line L, column C)`, e.g.
/// `routes[2].upstream: unknown upstream "pay" (line 27, column 15)`; the
/// position is left out when it is not known (an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
    position: Option<(u64, u64)>,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            position: None,
        }
    }

    pub(crate) fn at(mut self, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self
    }

    /// The path of the field, like `routes[2].upstream`; empty for a
    /// problem with the file as a whole (unreadable, not YAML).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Line and column (1-based) in the file, when known.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.position
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some((line, column)) = self.position {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, section by section.
///
/// `Display` writes one problem per line; that is what `gateway --check`
/// prints. A file that is not valid YAML, or whose shape does not fit the
/// model (an unknown field, a value of the wrong type, a malformed duration),
/// stops at its first such problem; a file that parses is validated as a
/// whole and every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }

    /// Gives each problem without a position the line and column of its
    /// field (or of the nearest enclosing one the file has) in `yaml`.
    pub(crate) fn located(mut self, yaml: &str) -> Self {
        if let Some(doc) = super::locate::Document::parse(yaml) {
            for error in &mut self.0 {
                if error.position.is_none() {
                    error.position = doc.locate(&error.path);
                }
            }
        }
        self
    }

    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for an error returned by a loader; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems during validation.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}
