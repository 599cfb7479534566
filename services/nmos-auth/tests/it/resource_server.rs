//! The resource-server crate against the real server: the example Registration API accepts
//! and refuses real tokens as IS-10 says, follows key rotation, and rides out an outage.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http;
use nmos_auth_resource_server::{KeyCache, ResourceServer, ServerLocation, Settings};
use serde_json::json;

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests};

#[allow(dead_code)] // its main() is for `cargo run --example`
#[path = "../../../../crates/resource-server/examples/registration_api.rs"]
mod registration_api;

backend_tests!(an_nmos_api_checks_real_tokens, rotation_is_followed_and_an_outage_ridden_out);

fn resource_server(app: &TestApp, host: &str) -> ResourceServer {
    let cache = KeyCache::new(ServerLocation::Issuer(app.issuer()), reqwest::Client::new())
        .with_timing(Duration::from_secs(3600), Duration::from_millis(500));
    ResourceServer::with_cache(Arc::new(cache), Settings::new(host))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// A token of a new machine client with `scope`, after an operator set its policy (the
/// `set-client-policy` arguments after its id), if any.
async fn token_for(app: &TestApp, scope: &str, policy: Option<&[&str]>) -> String {
    let (id, secret) = app.machine_client(scope).await;
    if let Some(policy) = policy {
        app.admin_command(&[&["set-client-policy", &id][..], policy].concat());
    }
    let r = app.token(&id, &secret, &[("grant_type", "client_credentials"), ("scope", scope)]).await;
    r.expect_json(200).await["access_token"].as_str().unwrap().to_owned()
}

async fn an_nmos_api_checks_real_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rs = resource_server(&app, "registry.example.com");
    let api = serve(registration_api::router(rs.clone())).await;
    let resource = format!("{api}/x-nmos/registration/v1.3/resource");
    let node = json!({"type": "node", "data": {"id": "3b8be755-08ff-452b-b217-c9151eb21193", "label": "node"}});
    let http = reqwest::Client::new();

    // A Node's token (x-nmos-registration read and write "*") may register and read back.
    let writer = token_for(&app, "registration", None).await;
    let r = http.post(&resource).bearer_auth(&writer).json(&node).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = http.get(format!("{resource}/nodes/3b8be755-08ff-452b-b217-c9151eb21193")).bearer_auth(&writer).send();
    assert_eq!(r.await.unwrap().expect_json(200).await["label"], "node");

    // Read-only: 403 insufficient_scope on POST, reads fine.
    let reader = token_for(&app, "registration", Some(&["--scope", "registration", "--read", "registration=*"])).await;
    let r = http.post(&resource).bearer_auth(&reader).json(&node).send().await.unwrap();
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"insufficient_scope\""));
    let body = r.expect_json(403).await;
    assert_eq!(body["code"], 403);
    let r = http.get(format!("{resource}/nodes/3b8be755-08ff-452b-b217-c9151eb21193")).bearer_auth(&reader).send();
    assert_eq!(r.await.unwrap().status(), 200);

    // A token for another API.
    let events = token_for(&app, "events", None).await;
    let r = http.post(&resource).bearer_auth(&events).json(&node).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Paths are normalised before matching: single/../bulk is not single/*.
    let policy = ["--scope", "connection", "--read", "connection=*", "--write", "connection=single/*"];
    let connection = token_for(&app, "connection", Some(&policy)).await;
    let bearer = format!("Bearer {connection}");
    let check = |method: http::Method, path: &'static str| {
        let (rs, bearer) = (rs.clone(), bearer.clone());
        async move { rs.check(&method, path, Some(&bearer), None).await.map(|_| ()).map_err(|d| d.status) }
    };
    assert_eq!(check(http::Method::PATCH, "/x-nmos/connection/v1.1/single/senders/x/staged").await, Ok(()));
    assert_eq!(check(http::Method::POST, "/x-nmos/connection/v1.1/single/../bulk/senders").await, Err(403));
    assert_eq!(check(http::Method::POST, "/x-nmos/connection/v1.1/bulk/senders").await, Err(403));

    // No token, a mangled one, one for another host.
    let r = http.get(&resource).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["www-authenticate"].to_str().unwrap()),
        (401, "Bearer realm=\"nmos\"")
    );
    let mangled = format!("{}x", &writer[..writer.len() - 1]);
    let r = http.get(&resource).bearer_auth(mangled).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let elsewhere = resource_server(&app, "registry.other.org");
    let bearer = format!("Bearer {writer}");
    let denied = elsewhere.check(&http::Method::GET, "/x-nmos/registration/v1.3/", Some(&bearer), None).await;
    // IS-10 §1.16: a valid token for other hosts is 403 insufficient_scope, as nmos-testing expects.
    assert_eq!(denied.unwrap_err().status, 403, "the token's aud does not cover that host");
}

async fn rotation_is_followed_and_an_outage_ridden_out(backend: Backend) {
    // The lead must outlast the second keys replica's re-read (every second) on the split
    // deployment, whose gateway publishes that replica's set: a key is published some time
    // between lead - 1 and lead seconds before it signs (the schedule counts whole seconds).
    let app = TestApp::spawn_with(backend, |c| {
        c.key_rotation_period = 4;
        c.key_publish_lead = 3;
        c.key_retire_grace = 1;
        c.access_token_lifetime = 30;
    })
    .await;
    let rs = resource_server(&app, "registry.example.com");
    let (id, secret) = app.machine_client("registration").await;
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];
    let started = Instant::now();
    let (mut kids, mut rejected, mut last) = (std::collections::BTreeSet::new(), Vec::new(), String::new());
    while started.elapsed() < Duration::from_secs(9) {
        let r = app.token(&id, &secret, &form).await;
        let token = r.expect_json(200).await["access_token"].as_str().unwrap().to_owned();
        kids.insert(jsonwebtoken::decode_header(&token).unwrap().kid.unwrap());
        let bearer = format!("Bearer {token}");
        if let Err(denied) = rs.check(&http::Method::GET, "/x-nmos/registration/v1.3/", Some(&bearer), None).await {
            rejected.push(denied.reason);
        }
        last = token;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kids.len() >= 2, "the server rotated its key: {kids:?}");
    assert!(rejected.is_empty(), "valid tokens rejected: {rejected:?}");

    // The server goes away: valid tokens keep passing on the cached keys.
    let TestApp { running, .. } = app;
    match running {
        crate::harness::Running::InProcess(server) => server.shutdown().await.unwrap(),
        crate::harness::Running::Split(deployment) => drop(deployment),
    }
    let bearer = format!("Bearer {last}");
    assert!(rs.check(&http::Method::GET, "/x-nmos/registration/v1.3/", Some(&bearer), None).await.is_ok());
}
