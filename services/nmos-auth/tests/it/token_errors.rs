//! Token endpoint errors: each with the RFC 6749 status and code, never a 500.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::harness::{Backend, TestApp, assert_oauth_error, backend_tests};

backend_tests!(client_authentication_failures, request_failures, grant_and_scope_failures);

const CC: [(&str, &str); 2] = [("grant_type", "client_credentials"), ("scope", "registration")];

async fn client_authentication_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration").await;
    let url = app.auth_url("token");

    // Wrong secret, unknown client: 401 invalid_client with a Basic challenge.
    for (user, password) in [(id.as_str(), "wrong"), ("unknown-client-id-0000000", secret.as_str()), (id.as_str(), "")]
    {
        let headers = assert_oauth_error(app.token(user, password, &CC).await, 401, "invalid_client").await;
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(headers["cache-control"], "no-store");
    }

    // No Authorization header and no client_id.
    let r = app.http.post(&url).form(&CC).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    // Garbled Authorization headers.
    let garbled = [
        "Basic".to_owned(),
        "Basic !!!not-base64".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon-here")),
        format!("Basic {}", STANDARD.encode([0xffu8, 0xfe, b':', b'x'])),
        "Digest username=x".to_owned(),
        "Bearer some-token".to_owned(),
    ];
    for value in garbled {
        let r = app.http.post(&url).header("authorization", &value).form(&CC).send().await.unwrap();
        let headers = assert_oauth_error(r, 401, "invalid_client").await;
        assert!(headers.contains_key("www-authenticate"), "{value}");
    }

    // Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1): encoded works too.
    let encoded = STANDARD.encode(format!("{id}:{}", secret.replace('-', "%2D")));
    let r = app.http.post(&url).header("authorization", format!("Basic {encoded}")).form(&CC).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A client authenticates the way it registered: a client_secret_basic client may not
    // put its secret in the body ...
    let post = |id: &str, secret: &str| {
        app.http
            .post(&url)
            .form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
            .send()
    };
    assert_oauth_error(post(&id, &secret).await.unwrap(), 401, "invalid_client").await;
    // ... and a client_secret_post client must.
    let body = app
        .register(json!({"client_name": "Post Node", "grant_types": ["client_credentials"], "scope": "registration",
                          "token_endpoint_auth_method": "client_secret_post"}))
        .await;
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_post");
    let (post_id, post_secret) = (body["client_id"].as_str().unwrap(), body["client_secret"].as_str().unwrap());
    assert_eq!(post(post_id, post_secret).await.unwrap().status(), 200);
    assert_oauth_error(post(post_id, "wrong").await.unwrap(), 401, "invalid_client").await;
    assert_oauth_error(app.token(post_id, post_secret, &CC).await, 401, "invalid_client").await;
    // Two methods at once is a malformed request.
    let r = app
        .http
        .post(&url)
        .basic_auth(post_id, Some(post_secret))
        .form(&[("grant_type", "client_credentials"), ("client_id", post_id), ("client_secret", post_secret)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
}

async fn request_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration").await;
    let url = app.auth_url("token");
    let post = |body: Vec<u8>, content_type: &str| {
        app.http.post(&url).basic_auth(&id, Some(&secret)).header("content-type", content_type).body(body).send()
    };
    let form = "application/x-www-form-urlencoded";

    // Missing grant_type, repeated parameter, JSON instead of a form.
    assert_oauth_error(post(b"scope=registration".to_vec(), form).await.unwrap(), 400, "invalid_request").await;
    let repeated = b"grant_type=client_credentials&grant_type=client_credentials".to_vec();
    assert_oauth_error(post(repeated, form).await.unwrap(), 400, "invalid_request").await;
    let as_json = json!({"grant_type": "client_credentials"}).to_string().into_bytes();
    assert_oauth_error(post(as_json, "application/json").await.unwrap(), 400, "invalid_request").await;

    // Non-UTF-8 bytes, raw and percent-encoded.
    assert_oauth_error(
        post(b"grant_type=client_credentials&scope=\xff\xfe".to_vec(), form).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_oauth_error(
        post(b"grant_type=client_credentials&scope=%FF".to_vec(), form).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;

    // A body over the limit: 413 in the RFC 6749 error shape.
    let oversized = format!("grant_type=client_credentials&pad={}", "a".repeat(app.config.max_body_bytes + 1));
    let r = post(oversized.into_bytes(), form).await.unwrap();
    assert_oauth_error(r, 413, "invalid_request").await;

    // GET is not a token request.
    let r = app.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

async fn grant_and_scope_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration events").await;

    // Unsupported grants, including the ones IS-10 forbids.
    for grant in ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", "bogus"] {
        let r = app.token(&id, &secret, &[("grant_type", grant), ("scope", "registration")]).await;
        assert_oauth_error(r, 400, "unsupported_grant_type").await;
    }

    // A scope outside the client_credentials allow-list, an unknown scope, and a scope the
    // client is not registered for.
    let wide = app.machine_client("registration query").await;
    let r = app.token(&wide.0, &wide.1, &[("grant_type", "client_credentials"), ("scope", "query")]).await;
    assert_oauth_error(r, 400, "invalid_scope").await;
    let r = app.token(&id, &secret, &[("grant_type", "client_credentials"), ("scope", "registration bogus")]).await;
    assert_oauth_error(r, 400, "invalid_scope").await;
    let narrow = app.machine_client("registration").await;
    let r = app.token(&narrow.0, &narrow.1, &[("grant_type", "client_credentials"), ("scope", "events")]).await;
    assert_oauth_error(r, 400, "invalid_scope").await;

    // A client registered only for other grants may not use client_credentials.
    let code_client = app
        .register(json!({"client_name": "Controller", "redirect_uris": ["https://ctl.example.com/cb"],
                          "grant_types": ["authorization_code", "refresh_token"]}))
        .await;
    let r = app
        .token(
            code_client["client_id"].as_str().unwrap(),
            code_client["client_secret"].as_str().unwrap(),
            &[("grant_type", "client_credentials"), ("scope", "registration")],
        )
        .await;
    assert_oauth_error(r, 400, "unauthorized_client").await;

    // A public client asking for client_credentials.
    let public = app
        .register(json!({"client_name": "Browser controller", "redirect_uris": ["https://ctl.example.com/cb"],
                          "token_endpoint_auth_method": "none"}))
        .await;
    assert!(public.get("client_secret").is_none(), "public clients get no secret");
    let public_id = public["client_id"].as_str().unwrap();
    let r = app
        .http
        .post(app.auth_url("token"))
        .form(&[("grant_type", "client_credentials"), ("scope", "registration"), ("client_id", public_id)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "unauthorized_client").await;
    // ... and credentials are never accepted for a public client.
    let r = app.token(public_id, "", &CC).await;
    assert_oauth_error(r, 401, "invalid_client").await;
}
