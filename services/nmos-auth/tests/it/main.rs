//! Integration tests: each starts a real server (gateway + every service over loopback gRPC)
//! on a free port, on SQLite and on Postgres.
mod browser;
mod harness;

mod authorization_code;
mod cli;
mod discovery;
mod grpc;
mod http_surface;
mod legacy;
mod m2m;
mod private_key_jwt;
mod registration;
mod restart;
mod tls;
mod token_errors;
mod web_ui;
mod webdriver;
