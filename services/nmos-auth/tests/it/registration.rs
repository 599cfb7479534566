//! RFC 7591 registration: authorization by initial access token, open registration, errors.
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, assert_oauth_error, backend_tests};

backend_tests!(
    registration_needs_a_valid_initial_access_token,
    bad_metadata_is_rejected,
    open_registration_is_only_for_code_clients
);

fn machine() -> Value {
    json!({"client_name": "Node", "grant_types": ["client_credentials"], "response_types": ["none"], "scope": "registration"})
}

async fn registration_needs_a_valid_initial_access_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.auth_url("register");

    // No token: 401, a JSON body, and a Bearer challenge without an error code (RFC 6750 §3.1).
    let r = app.http.post(&url).json(&machine()).send().await.unwrap();
    let headers = assert_oauth_error(r, 401, "invalid_token").await;
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"nmos-auth\"");

    // A wrong token, a Basic header, an expired token.
    let r = app.http.post(&url).bearer_auth("not-a-real-token").json(&machine()).send().await.unwrap();
    let headers = assert_oauth_error(r, 401, "invalid_token").await;
    assert!(headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let r = app.http.post(&url).basic_auth("a", Some("b")).json(&machine()).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
    let (expired, _) = app.server.clients.create_initial_access_token(1, "short").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = app.http.post(&url).bearer_auth(&expired).json(&machine()).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;

    // A valid token works, more than once (one token per fleet of Nodes), and a form body too.
    let token = app.initial_access_token().await;
    for _ in 0..2 {
        let r = app.http.post(&url).bearer_auth(&token).json(&machine()).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .form(&[
            ("client_name", "Form Node"),
            ("grant_types", "client_credentials"),
            ("response_types", "none"),
            ("scope", "registration events"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "registration events");
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
}

async fn bad_metadata_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.auth_url("register");
    let token = app.initial_access_token().await;
    let send = |body: Vec<u8>, content_type: &'static str| {
        app.http.post(&url).bearer_auth(&token).header("content-type", content_type).body(body).send()
    };
    let json_type = "application/json";

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "invalid_client_metadata"),
        (b"[1, 2]".to_vec(), "invalid_client_metadata"),
        (b"{\"client_name\": \"\xff\xfe\"}".to_vec(), "invalid_client_metadata"),
        (json!({"grant_types": ["password"]}).to_string().into_bytes(), "invalid_client_metadata"),
        (
            json!({"grant_types": ["implicit"], "response_types": ["token"]}).to_string().into_bytes(),
            "invalid_client_metadata",
        ),
        (json!({"grant_types": "client_credentials"}).to_string().into_bytes(), "invalid_client_metadata"),
        (
            json!({"grant_types": ["client_credentials"], "scope": "nonsense"}).to_string().into_bytes(),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
                .to_string()
                .into_bytes(),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_jwt"})
                .to_string()
                .into_bytes(),
            "invalid_client_metadata",
        ),
        (json!({"grant_types": ["authorization_code"]}).to_string().into_bytes(), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["not a uri"]}).to_string().into_bytes(), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://c.example.com/cb#frag"]}).to_string().into_bytes(), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["javascript:alert(1)"]}).to_string().into_bytes(), "invalid_redirect_uri"),
    ];
    for (body, code) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let r = send(body, json_type).await.unwrap();
        assert_eq!(r.status(), 400, "{shown}");
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["error"], code, "{shown}");
    }

    // Wrong media type, and a body over the limit (413, still JSON).
    assert_oauth_error(
        send(machine().to_string().into_bytes(), "text/plain").await.unwrap(),
        400,
        "invalid_client_metadata",
    )
    .await;
    let big = json!({"client_name": "x".repeat(app.config.max_body_bytes)}).to_string().into_bytes();
    assert_oauth_error(send(big, json_type).await.unwrap(), 413, "invalid_client_metadata").await;
}

async fn open_registration_is_only_for_code_clients(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.open_registration = true).await;
    let url = app.auth_url("register");
    let code = json!({"client_name": "Controller", "redirect_uris": ["http://127.0.0.1:8080/x-authorization/callback"],
                      "grant_types": ["authorization_code", "refresh_token"]});
    let r = app.http.post(&url).json(&code).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["redirect_uris"], json!(["http://127.0.0.1:8080/x-authorization/callback"]));

    // Never for client_credentials, whatever the switch says.
    let r = app.http.post(&url).json(&machine()).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
    let mixed = json!({"client_name": "Both", "redirect_uris": ["https://c.example.com/cb"],
                       "grant_types": ["authorization_code", "client_credentials"]});
    let r = app.http.post(&url).json(&mixed).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;

    // With the switch off (the default), code clients need a token too.
    let closed = TestApp::spawn(backend).await;
    let r = closed.http.post(closed.auth_url("register")).json(&code).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
}
