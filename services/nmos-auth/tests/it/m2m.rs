//! The machine-to-machine path an NMOS Node takes: metadata, registration, token, JWKS.
use serde_json::{Value, json};

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests, pyjwt_verify};

backend_tests!(
    node_registers_and_gets_a_verifiable_token,
    requested_scope_is_narrowed_to_what_was_asked,
    per_client_policy_shapes_the_next_token,
    an_administrators_token_is_apart_from_nmos_tokens
);

async fn node_registers_and_gets_a_verifiable_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // RFC 8414 metadata, at the bare well-known path and with the issuer path appended.
    let bare: Value = app.get_json(&app.url("/.well-known/oauth-authorization-server")).await;
    let suffixed =
        app.http.get(app.url("/.well-known/oauth-authorization-server/x-nmos/auth/v1.0")).send().await.unwrap();
    assert_eq!(suffixed.headers()["content-type"], "application/json");
    let suffixed = suffixed.expect_json(200).await;
    assert_eq!(bare, suffixed);
    let issuer = bare["issuer"].as_str().unwrap().to_owned();
    assert_eq!(issuer, app.url("/x-nmos/auth/v1.0"));
    // The seven fields the IS-10 auth_metadata.json schema requires.
    for field in nmos_auth_check::REQUIRED_METADATA {
        assert!(bare.get(field).is_some(), "metadata lacks {field}");
    }
    assert!(bare["response_types_supported"].as_array().unwrap().contains(&json!("code")));
    assert!(bare["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")));
    assert!(bare["scopes_supported"].as_array().unwrap().contains(&json!("registration")));
    assert!(bare.get("key_ops").is_none());

    // RFC 7591 registration with an initial access token, as nmos-cpp sends it.
    let registration_endpoint = bare["registration_endpoint"].as_str().unwrap();
    let token = app.initial_access_token().await;
    let response = app
        .http
        .post(registration_endpoint)
        .bearer_auth(&token)
        .json(&json!({
            "client_name": "ACME Node 1234", "grant_types": ["client_credentials"], "response_types": ["none"],
            "scope": "registration", "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let client = response.expect_json(201).await;
    let client_id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    assert!(client_id.len() >= 20);
    assert!(secret.len() >= 43, "at least 256 bits");
    assert_eq!(client["client_secret_expires_at"], 0);
    assert_eq!(client["client_name"], "ACME Node 1234");
    assert_eq!(client["grant_types"], json!(["client_credentials"]));
    assert_eq!(client["response_types"], json!(["none"]));
    assert_eq!(client["scope"], "registration");
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_basic");
    assert!(client["client_id_issued_at"].is_i64());

    // client_credentials at the advertised token endpoint.
    let response = app
        .http
        .post(bare["token_endpoint"].as_str().unwrap())
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "registration")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let tokens = response.expect_json(200).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], json!(60), "an integer, the configured lifetime");
    assert_eq!(tokens["scope"], "registration");
    assert!(tokens.get("refresh_token").is_none(), "no refresh token for client_credentials");

    // Verify with PyJWT against the served JWKS, then check every claim (is-10.md §1.12).
    let jwks = app.get_json(bare["jwks_uri"].as_str().unwrap()).await;
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        (key["kty"].as_str(), key["use"].as_str(), key["alg"].as_str()),
        (Some("RSA"), Some("sig"), Some("RS512"))
    );
    assert!(key.get("key_ops").is_none());
    let access_token = tokens["access_token"].as_str().unwrap();
    let verified = pyjwt_verify(access_token, &jwks, &issuer, "*.example.com");
    let header = &verified["header"];
    assert_eq!(header["alg"], "RS512");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], key["kid"]);
    let claims = &verified["claims"];
    assert_eq!(claims["iss"], issuer.as_str(), "iss is byte-identical to the metadata issuer");
    assert_eq!(claims["sub"], client_id);
    assert_eq!(claims["aud"], json!(["*.example.com", "https://*.local"]), "aud is a JSON array");
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["scope"], tokens["scope"], "the token's scope equals the response's");
    let iat = claims["iat"].as_i64().unwrap();
    let now = nmos_auth_core::now_unix();
    assert!((now - 60..=now + 1).contains(&iat));
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 60);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    assert_eq!(claims["x-nmos-registration"], json!({"read": ["*"], "write": ["*"]}));
    let private: Vec<&String> = claims.as_object().unwrap().keys().filter(|k| k.starts_with("x-nmos-")).collect();
    assert_eq!(private, vec!["x-nmos-registration"], "one claim per granted API, none empty");

    // The issuance is in the audit log, without secrets.
    let audit = app.server.token_issuer.recent_audit(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].client_id.as_str(), audit[0].grant_type.as_str()), (client_id, "client_credentials"));
    assert_eq!(audit[0].jti, claims["jti"].as_str().unwrap());
}

async fn requested_scope_is_narrowed_to_what_was_asked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration events").await;

    let both = app.token(&id, &secret, &[("grant_type", "client_credentials")]).await.expect_json(200).await;
    assert_eq!(both["scope"], "registration events", "no scope asked: the registered scope within the allow-list");
    let claims = app.verified_claims(&both).await;
    assert!(claims.get("x-nmos-registration").is_some() && claims.get("x-nmos-events").is_some());

    let one = app
        .token(&id, &secret, &[("grant_type", "client_credentials"), ("scope", "events")])
        .await
        .expect_json(200)
        .await;
    assert_eq!(one["scope"], "events");
    let claims = app.verified_claims(&one).await;
    assert_eq!(claims["scope"], "events");
    assert!(claims.get("x-nmos-registration").is_none());
}

/// An administrator's policy for one machine client (the `set-client-policy` command) changes
/// its next token: scopes beyond the allow-list, path lists, audience.
async fn per_client_policy_shapes_the_next_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = app.machine_client("registration connection").await;
    let ask = |scope: &'static str| {
        let (id, secret) = (id.clone(), secret.clone());
        let app = &app;
        async move { app.token(&id, &secret, &[("grant_type", "client_credentials"), ("scope", scope)]).await }
    };
    crate::harness::assert_oauth_error(ask("connection").await, 400, "invalid_scope").await;

    let admin = |args: &[&str]| app.admin_command(args);
    admin(&[
        "set-client-policy",
        &id,
        "--scope",
        "registration connection",
        "--read",
        "connection=*",
        "--write",
        "connection=single/senders/*",
        "--audience",
        "*.studio-a.example",
    ]);
    // Through the running registry: the next token follows the policy.
    let tokens = ask("registration connection").await.expect_json(200).await;
    assert_eq!(tokens["scope"], "registration connection");
    let verified =
        pyjwt_verify(tokens["access_token"].as_str().unwrap(), &app.jwks().await, &app.issuer(), "*.studio-a.example");
    let claims = &verified["claims"];
    assert_eq!(claims["aud"], json!(["*.studio-a.example"]));
    assert_eq!(claims["x-nmos-connection"], json!({"read": ["*"], "write": ["single/senders/*"]}));
    assert_eq!(
        claims["x-nmos-registration"],
        json!({"read": ["*"], "write": ["*"]}),
        "APIs without paths: full access"
    );

    admin(&["set-client-policy", &id, "--clear"]);
    crate::harness::assert_oauth_error(ask("connection").await, 400, "invalid_scope").await;
    let tokens = ask("registration").await.expect_json(200).await;
    let claims = app.verified_claims(&tokens).await;
    assert_eq!(claims["aud"], json!(["*.example.com", "https://*.local"]), "the server's audience again");
}

/// An administrator's token (scope `nmos-auth:admin`, for the services' gRPC APIs) goes only to
/// a machine client whose policy allows it, only when asked for on its own, and carries this
/// server's host as its audience and no NMOS claims (so NMOS APIs, which check both, refuse it;
/// the split tests show the services refusing NMOS tokens). Making a client an administrator's
/// retires its RFC 7592 registration access token: it is managed by administrators from then on.
async fn an_administrators_token_is_apart_from_nmos_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let registered = app
        .register(json!({
            "client_name": "Operator's tool", "grant_types": ["client_credentials"],
            "response_types": ["none"], "scope": "registration",
        }))
        .await;
    let id = registered["client_id"].as_str().unwrap().to_owned();
    let secret = registered["client_secret"].as_str().unwrap().to_owned();
    let configuration = registered["registration_client_uri"].as_str().unwrap().to_owned();
    let registration_token = registered["registration_access_token"].as_str().unwrap().to_owned();
    let read = app.http.get(&configuration).bearer_auth(&registration_token).send().await.unwrap();
    let read = read.expect_json(200).await; // the client may read its registration ...
    let secret = read["client_secret"].as_str().map_or(secret, str::to_owned);
    let ask = |scope: &'static str| {
        let (id, secret) = (id.clone(), secret.clone());
        let app = &app;
        async move { app.token(&id, &secret, &[("grant_type", "client_credentials"), ("scope", scope)]).await }
    };
    crate::harness::assert_oauth_error(ask("nmos-auth:admin").await, 400, "invalid_scope").await;

    app.admin_command(&["set-client-policy", &id, "--admin"]);
    crate::harness::assert_oauth_error(ask("nmos-auth:admin registration").await, 400, "invalid_scope").await;
    let tokens = ask("nmos-auth:admin").await.expect_json(200).await;
    assert_eq!(tokens["scope"], "nmos-auth:admin");
    assert!(tokens.get("refresh_token").is_none());
    let host = reqwest::Url::parse(&app.issuer()).unwrap().host_str().unwrap().to_owned();
    let verified = pyjwt_verify(tokens["access_token"].as_str().unwrap(), &app.jwks().await, &app.issuer(), &host);
    let claims = &verified["claims"];
    assert_eq!(claims["aud"], json!([host]));
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    let claim_names: Vec<&String> = claims.as_object().unwrap().keys().collect();
    assert!(claim_names.iter().all(|name| !name.starts_with("x-nmos-")), "{claim_names:?}");
    // Its policy names no NMOS scope: this client is an administrator's tool and nothing else.
    crate::harness::assert_oauth_error(ask("registration").await, 400, "invalid_scope").await;
    let read = app.http.get(&configuration).bearer_auth(&registration_token).send().await.unwrap();
    assert_eq!(read.status(), 401, "... but not once it is an administrator's");
}
