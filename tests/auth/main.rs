//! Behaviour of the `auth` layers through their public API.

mod any;
mod api_key;
mod authz;
#[cfg(feature = "config")]
mod config;
mod jwks;
mod jwt;
