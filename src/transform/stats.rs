use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every clone of a transform layer (behind an `Arc`
/// created in the layer).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    invalid_values: AtomicU64,
    bodies_transformed: AtomicU64,
    bodies_too_large: AtomicU64,
    bodies_not_json: AtomicU64,
}

/// What a transform layer did, since it was built: a snapshot of counters
/// shared by all its clones.
///
/// With the `metrics` feature the body counters are also reported through
/// the `metrics` facade as `meshgate_transform_bodies_total` with a
/// `result` label: `transformed`, `too_large` (over the size cap, passed
/// untouched) or `not_json` (not a JSON object, passed untouched).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransformStats {
    /// Templated values dropped because the result was not a valid header
    /// value (for example a CR or LF from a query parameter).
    pub invalid_values: u64,
    /// Bodies whose JSON fields were changed.
    pub bodies_transformed: u64,
    /// Bodies passed untouched because they were over the size cap.
    pub bodies_too_large: u64,
    /// Bodies passed untouched because they were not a JSON object
    /// (malformed, or another JSON value).
    pub bodies_not_json: u64,
}

impl Counters {
    pub(crate) fn invalid_value(&self) {
        self.invalid_values.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn body(&self, outcome: BodyOutcome) {
        let (counter, label) = match outcome {
            BodyOutcome::Transformed => (&self.bodies_transformed, "transformed"),
            BodyOutcome::TooLarge => (&self.bodies_too_large, "too_large"),
            BodyOutcome::NotJson => (&self.bodies_not_json, "not_json"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("meshgate_transform_bodies_total", "result" => label).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = label;
    }

    pub(crate) fn snapshot(&self) -> TransformStats {
        TransformStats {
            invalid_values: self.invalid_values.load(Ordering::Relaxed),
            bodies_transformed: self.bodies_transformed.load(Ordering::Relaxed),
            bodies_too_large: self.bodies_too_large.load(Ordering::Relaxed),
            bodies_not_json: self.bodies_not_json.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyOutcome {
    Transformed,
    TooLarge,
    NotJson,
}
