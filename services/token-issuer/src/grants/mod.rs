//! One module per OAuth grant.
pub mod client_credentials;
