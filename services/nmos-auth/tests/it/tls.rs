//! With a certificate configured the gateway serves HTTPS and says https everywhere.

use serde_json::{Value, json};

use crate::harness::{Backend, ExpectJson, TempDir, TestApp, backend_tests, server_certificate};

backend_tests!(serves_https_with_a_certificate);

async fn serves_https_with_a_certificate(backend: Backend) {
    let certs = TempDir::new("tls");
    let (cert, key) = server_certificate(certs.path(), "localhost", "DNS:localhost,IP:127.0.0.1");

    let app = TestApp::spawn_with(backend, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap())
        .build()
        .unwrap();

    let metadata =
        https.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().expect_json(200).await;
    let issuer = metadata["issuer"].as_str().unwrap();
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let page = https.get(app.auth_url("signin")).send().await.unwrap();
    let hsts = page.headers().get("strict-transport-security").cloned();
    let (status, body) = (page.status(), page.text().await.unwrap());
    assert_eq!(status, 200, "{body}");
    assert_eq!(hsts.as_ref().map(|h| h.to_str().unwrap()), Some("max-age=31536000"), "HSTS over https (RFC 6797)");
    for endpoint in ["token_endpoint", "jwks_uri", "registration_endpoint", "authorization_endpoint"] {
        assert!(metadata[endpoint].as_str().unwrap().starts_with("https://"), "{endpoint}");
    }

    let token = app.initial_access_token().await;
    let client: Value = https
        .post(metadata["registration_endpoint"].as_str().unwrap())
        .bearer_auth(token)
        .json(&json!({"client_name": "TLS Node", "grant_types": ["client_credentials"], "scope": "registration"}))
        .send()
        .await
        .unwrap()
        .expect_json(201)
        .await;
    let r = https
        .post(metadata["token_endpoint"].as_str().unwrap())
        .basic_auth(client["client_id"].as_str().unwrap(), client["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let claims = crate::harness::pyjwt_verify(
        r.expect_json(200).await["access_token"].as_str().unwrap(),
        &https.get(metadata["jwks_uri"].as_str().unwrap()).send().await.unwrap().expect_json(200).await,
        issuer,
        "*.example.com",
    );
    assert_eq!(claims["claims"]["iss"], issuer);

    // Plain HTTP on the TLS port gets no answer in plain HTTP.
    let plain = app.http.get(app.url("/").replace("https://", "http://")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}
