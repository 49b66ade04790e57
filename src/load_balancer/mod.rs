//! Work in progress: `load_balancer` lands with its issue.
