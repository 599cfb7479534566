//! A small IS-04-style Registration API protected by IS-10 tokens:
//!
//!   NMOS_AUTH_ISSUER=http://127.0.0.1:4999/x-nmos/auth/v1.0 API_HOST=registry.example.com \
//!     cargo run -p nmos-auth-resource-server --example registration_api
//!
//! Without NMOS_AUTH_ISSUER it finds the server by DNS-SD (https servers only), unicast in
//! DNS_SD_DOMAIN from DNS_SERVER when they are set.
//!
//! `POST /x-nmos/registration/v1.3/resource` registers `{"type": ..., "data": {"id": ...}}`
//! (needs `x-nmos-registration` write on `resource`); `GET
//! /x-nmos/registration/v1.3/resource/{type}s/{id}` reads one back (read); `DELETE` removes it.
//! The handler sees who is calling in the validated claims.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use nmos_auth_resource_server::{Claims, DnsSd, RequireTokenLayer, ResourceServer, ServerLocation, Settings};
use serde_json::{Value, json};

type Store = Arc<Mutex<HashMap<(String, String), Value>>>;

/// The Registration API routes, behind the token check.
pub fn router(resource_server: ResourceServer) -> Router {
    let store: Store = Arc::default();
    Router::new()
        .route("/x-nmos/registration/v1.3/resource", post(register))
        .route("/x-nmos/registration/v1.3/resource/{kind}/{id}", get(read).delete(remove))
        .route("/x-nmos/registration/v1.3/", get(|| async { Json(json!(["resource/", "health/"])) }))
        .with_state(store)
        .layer(RequireTokenLayer::new(resource_server))
}

async fn register(
    State(store): State<Store>,
    Extension(claims): Extension<Claims>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let (Some(kind), Some(id)) = (body["type"].as_str(), body["data"]["id"].as_str()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 400, "error": "type and data.id are required", "debug": null})),
        );
    };
    tracing::info!(client = claims.0["client_id"].as_str().unwrap_or_default(), kind, id, "registered");
    store.lock().unwrap_or_else(|p| p.into_inner()).insert((format!("{kind}s"), id.to_owned()), body["data"].clone());
    (StatusCode::CREATED, Json(body["data"].clone()))
}

async fn read(State(store): State<Store>, Path((kind, id)): Path<(String, String)>) -> (StatusCode, Json<Value>) {
    match store.lock().unwrap_or_else(|p| p.into_inner()).get(&(kind, id)) {
        Some(resource) => (StatusCode::OK, Json(resource.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({"code": 404, "error": "no such resource", "debug": null}))),
    }
}

async fn remove(State(store): State<Store>, Path((kind, id)): Path<(String, String)>) -> StatusCode {
    match store.lock().unwrap_or_else(|p| p.into_inner()).remove(&(kind, id)) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[tokio::main]
async fn main() {
    let issuer = std::env::var("NMOS_AUTH_ISSUER").ok();
    let host = std::env::var("API_HOST").unwrap_or_else(|_| "registry.example.com".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8010".into());
    // The issuer from configuration, or (IS-10's way) by DNS-SD.
    // DNS-SD: unicast in DNS_SD_DOMAIN (else the system's search domain), asking DNS_SERVER
    // (address:port; else the system's resolver), then mDNS.
    let dns_sd = || DnsSd {
        domain: std::env::var("DNS_SD_DOMAIN").ok(),
        dns_server: std::env::var("DNS_SERVER").ok().map(|s| s.parse().expect("DNS_SERVER is address:port")),
        ..DnsSd::default()
    };
    let location = issuer.map_or_else(|| ServerLocation::DnsSd(dns_sd()), ServerLocation::Issuer);
    let resource_server = ResourceServer::new(location, Settings::new(host));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("binding LISTEN");
    println!("Registration API on http://{listen}/x-nmos/registration/v1.3/");
    axum::serve(listener, router(resource_server)).await.expect("serving");
}
