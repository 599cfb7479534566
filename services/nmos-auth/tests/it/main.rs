//! Integration tests: each starts a real server on a free port: `nmos-auth serve` on SQLite and
//! on Postgres, and (for the HTTP flows) the split deployment, one process per service.
mod browser;
mod deployment;
mod harness;

mod authorization_code;
mod check;
mod cli;
mod concurrency;
mod console;
mod console_store;
mod discovery;
mod grpc;
mod http_surface;
mod keys;
mod legacy;
mod m2m;
mod metrics;
mod outages;
mod private_key_jwt;
mod registration;
mod resource_server;
mod restart;
mod security;
mod split;
mod tls;
mod token_errors;
mod web_ui;
mod webdriver;
