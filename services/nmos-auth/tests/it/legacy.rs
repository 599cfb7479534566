//! The seed's legacy grants and routes: off by default (IS-10 forbids implicit and discourages
//! password), and working as the seed's README shows once switched on.
use std::process::Command;

use reqwest::Url;
use serde_json::{Value, json};

use crate::authorization_code::{decide, query, sign_in_and_open};
use crate::browser::{Browser, Page};
use crate::harness::{Backend, ExpectJson, TestApp, assert_oauth_error, backend_tests};

backend_tests!(legacy_grants_are_off_by_default, seed_readme_works_with_legacy_grants_switched_on);

async fn legacy_grants_are_off_by_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let metadata = app.get_json(&app.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(metadata["grant_types_supported"], json!(["authorization_code", "refresh_token", "client_credentials"]));
    assert_eq!(metadata["response_types_supported"], json!(["code"]));

    let (id, secret) = app.machine_client("registration").await;
    let r = app.token(&id, &secret, &[("grant_type", "password"), ("username", "a"), ("password", "b")]).await;
    assert_oauth_error(r, 400, "unsupported_grant_type").await;

    let token = app.initial_access_token().await;
    for grant in ["password", "implicit"] {
        let body = json!({"grant_types": [grant], "redirect_uris": ["https://c.example.com/cb"]});
        let r = app.http.post(app.auth_url("register")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_oauth_error(r, 400, "invalid_client_metadata").await;
    }

    // response_type=token goes back to the client as unsupported_response_type.
    let client = app.register(json!({"client_name": "c", "redirect_uris": ["https://c.example.com/cb"]})).await;
    let url = Url::parse_with_params(
        &app.auth_url("authorize"),
        &[("response_type", "token"), ("client_id", client["client_id"].as_str().unwrap()), ("state", "st")],
    )
    .unwrap();
    // Before anyone signs in (the request cannot succeed).
    let page = Browser::new().get(url.as_str()).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let back = Url::parse(page.location.as_deref().unwrap()).unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("unsupported_response_type"));
}

/// The `<code>` that follows `label` on a page.
fn code_after(page: &Page, label: &str) -> String {
    let rest = page.body.split(label).nth(1).unwrap_or_else(|| panic!("{label} not on the page: {}", page.body));
    let start = rest.find('>').map(|i| &rest[i..]).and_then(|r| r.split("<code").nth(1)).unwrap();
    start.split_once('>').unwrap().1.split("</code>").next().unwrap().to_owned()
}

async fn seed_readme_works_with_legacy_grants_switched_on(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.legacy_password_grant = true;
        c.legacy_implicit_grant = true;
    })
    .await;
    let metadata = app.get_json(&app.url("/.well-known/oauth-authorization-server")).await;
    assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!("password")));
    assert!(metadata["response_types_supported"].as_array().unwrap().contains(&json!("token")));

    // The seed README: sign up at /signup, create a client at /create_client ...
    let mut browser = Browser::new();
    let form = browser.get(&app.url("/signup")).await;
    assert_eq!(form.status, 200);
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "alice's long password".to_owned()),
        ("setup_code".to_owned(), app.setup_code().await),
    ];
    assert_eq!(browser.post(&app.auth_url("signup"), &fields).await.status, 302);
    let form = browser.get(&app.url("/create_client")).await;
    assert!(form.body.contains("Password (legacy)"));
    let fields: Vec<(String, String)> = [
        ("csrf", form.field("csrf").as_str()),
        ("client_name", "Seed client"),
        ("redirect_uris", "https://seed.example.com/cb"),
        ("grant_types", "password"),
        ("grant_types", "implicit"),
        ("grant_types", "refresh_token"),
        ("scope", "registration"),
        ("scope", "query"),
        ("token_endpoint_auth_method", "client_secret_basic"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let created = browser.post(&app.url("/create_client"), &fields).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let client_id = code_after(&created, "Client ID");
    let client_secret = code_after(&created, "Client secret");

    // ... then its curl, as printed (with this server's address and alice's real password).
    let out = Command::new("curl")
        .args(["-s", "-u", &format!("{client_id}:{client_secret}"), "-XPOST", &app.url("/oauth/token")])
        .args(["-F", "grant_type=password", "-F", "username=alice", "-F", "password=alice's long password"])
        .args(["-F", "scope=profile"])
        .output()
        .expect("curl");
    let tokens: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 40);
    assert_eq!(tokens["scope"], "registration query", "\"profile\" names no NMOS API and is ignored");
    let claims = app.verified_claims(&tokens).await;
    assert_eq!(claims["sub"], "alice");

    // One answer for every failure.
    for (user, password) in [("alice", "wrong password"), ("nobody", "wrong password")] {
        let form = [("grant_type", "password"), ("username", user), ("password", password)];
        let body = app.token(&client_id, &client_secret, &form).await.expect_json(400).await;
        assert_eq!(body, json!({"error": "invalid_grant", "error_description": "wrong username or password"}),);
    }

    // The implicit grant: the token comes back in the fragment, with the state.
    let authorize = Url::parse_with_params(
        &app.url("/oauth/authorize"),
        &[("response_type", "token"), ("client_id", client_id.as_str()), ("scope", "query"), ("state", "st-9")],
    )
    .unwrap();
    let mut fresh = Browser::new();
    let consent = sign_in_and_open(&app, &mut fresh, authorize.as_str()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let back = decide(&app, &mut fresh, &consent, "approve").await;
    assert!(back.query().is_none());
    let fragment = Url::parse(&format!("http://fragment.invalid/?{}", back.fragment().unwrap())).unwrap();
    let get = |name: &str| query(&fragment, name);
    assert_eq!(get("state").as_deref(), Some("st-9"));
    assert_eq!(get("token_type").as_deref(), Some("Bearer"));
    assert_eq!(get("scope").as_deref(), Some("query"));
    let claims = app.verified_claims(&json!({"access_token": get("access_token").unwrap()})).await;
    assert_eq!(claims["x-nmos-query"], json!({"read": ["*"], "write": ["*"]}));
}
