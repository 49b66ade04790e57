//! Work in progress: `routing` lands with its issue.
