//! Retry building blocks: jittered backoff and a retry budget.
//!
//! * [`Backoff`] — exponential backoff with full jitter (the default),
//!   decorrelated jitter, or none, so that clients that failed together do
//!   not retry together.
//! * [`RetryBudget`] — a cap, shared by every clone of a service, on how
//!   much retries may add to the recent request rate.
//!
//! The `RetryLayer` that combines them with retry conditions, idempotency
//! rules, `Retry-After`, per-try timeouts and body replay is not written
//! yet.

mod backoff;
mod budget;

pub use backoff::{Backoff, Delays, Jitter};
pub use budget::RetryBudget;
