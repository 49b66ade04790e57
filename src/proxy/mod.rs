//! Work in progress: `proxy` lands with its issue.
