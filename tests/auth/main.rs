//! Behaviour of the `auth` layers through their public API.

mod api_key;
mod authz;
mod jwks;
mod jwt;
