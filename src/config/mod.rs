//! Work in progress: `config` lands with its issue.
