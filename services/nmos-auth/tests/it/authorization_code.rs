//! People: sign-in, consent, the authorization code grant with PKCE, refresh rotation and
//! revocation, driven through the pages as a browser would.
use base64::Engine;
use nmos_auth_core::{Access, NmosApi};
use reqwest::Url;
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::harness::{Backend, ExpectJson, TestApp, assert_oauth_error, backend_tests, run_python};

backend_tests!(
    authlib_client_does_code_pkce_refresh_and_revocation,
    nmos_cpp_authorization_request_survives_sign_in,
    code_flow_with_pkce_and_refresh,
    code_and_refresh_failures,
    consent_refusals_and_untrusted_requests,
    revocation
);

pub(crate) const REDIRECT: &str = "https://ctl.example.com/cb";
// RFC 7636 Appendix B.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Controller {
    id: String,
    secret: String,
}

/// A server with user alice (registration write, query read) and a confidential controller.
async fn setup(backend: Backend) -> (TestApp, Controller) {
    let app = TestApp::spawn(backend).await;
    app.server
        .identity
        .create_user(
            "alice",
            "alice's long password",
            false,
            &[(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)],
            "operator:test",
        )
        .await
        .unwrap();
    let body = app
        .register(json!({"client_name": "Studio Controller", "redirect_uris": [REDIRECT],
                          "grant_types": ["authorization_code", "refresh_token"], "scope": "registration query node"}))
        .await;
    let controller = Controller {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    };
    (app, controller)
}

/// Registers a code client for `REDIRECT` on the pages, as the browser's user: the page that
/// shows it.
async fn register_on_pages(app: &TestApp, browser: &mut Browser, name: &str) -> Page {
    let form = browser.get(&app.auth_url("register-client")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let fields = [
        ("csrf".to_owned(), form.field("csrf")),
        ("client_name".to_owned(), name.to_owned()),
        ("redirect_uris".to_owned(), REDIRECT.to_owned()),
    ];
    let registered = browser.post(&app.auth_url("register-client"), &fields).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    registered
}

pub(crate) fn authorize_url(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "registration query node"),
        ("state", "opaque-state-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    Url::parse_with_params(&app.auth_url("authorize"), &params).unwrap().to_string()
}

/// Opens `url` as a signed-out browser: sign-in page, sign in as alice, back to `url`.
pub(crate) async fn sign_in_and_open(app: &TestApp, browser: &mut Browser, url: &str) -> Page {
    sign_in_as_and_open(app, browser, url, "alice", "alice's long password").await
}

/// Opens `url` as a signed-out browser: sign-in page, sign in as `username`, back to `url`.
pub(crate) async fn sign_in_as_and_open(
    app: &TestApp,
    browser: &mut Browser,
    url: &str,
    username: &str,
    password: &str,
) -> Page {
    let first = browser.get(url).await;
    assert_eq!(first.status, 302, "signed out: sent to sign in");
    let signin_url = app.url(first.location.as_deref().unwrap());
    assert!(signin_url.contains("/signin?next="));
    let form = browser.get(&signin_url).await;
    assert_eq!(form.status, 200);
    assert!(form.content_type.starts_with("text/html"));
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("next".to_owned(), form.field("next")),
        ("username".to_owned(), username.to_owned()),
        ("password".to_owned(), password.to_owned()),
    ];
    let signed_in = browser.post(&app.auth_url("signin"), &fields).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    browser.get(&app.url(signed_in.location.as_deref().unwrap())).await
}

/// Submits the consent form with `decision`; returns the redirect target.
pub(crate) async fn decide(app: &TestApp, browser: &mut Browser, consent: &Page, decision: &str) -> Url {
    let mut fields = consent.hidden_fields();
    fields.push(("decision".to_owned(), decision.to_owned()));
    let answer = browser.post(&app.auth_url("authorize"), &fields).await;
    assert_eq!(answer.status, 302, "{}", answer.body);
    Url::parse(answer.location.as_deref().unwrap()).unwrap()
}

pub(crate) fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// A fresh code for alice and the controller (signing in first).
async fn code(app: &TestApp, controller: &Controller) -> String {
    let mut browser = Browser::new();
    let consent = sign_in_and_open(app, &mut browser, &authorize_url(app, &controller.id, &[])).await;
    let back = decide(app, &mut browser, &consent, "approve").await;
    query(&back, "code").unwrap()
}

async fn exchange(app: &TestApp, c: &Controller, code: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    for (name, value) in extra {
        form.retain(|(n, _)| n != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    app.token(&c.id, &c.secret, &form).await
}

async fn refresh(app: &TestApp, c: &Controller, token: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    app.token(&c.id, &c.secret, &form).await
}

/// nmos-cpp (authorization_code mode) sends its `redirect_uri` unencoded in the query, as RFC
/// 3986 §3.4 allows: the request must come back whole after signing in, through consent to
/// the callback, and the code must exchange.
async fn nmos_cpp_authorization_request_survives_sign_in(backend: Backend) {
    let (app, _) = setup(backend).await;
    let callback = "http://127.0.0.1:18086/x-authorization/callback";
    let body = app
        .register(json!({"client_name": "nmos-cpp node", "redirect_uris": [callback],
                          "grant_types": ["authorization_code", "refresh_token"], "scope": "registration"}))
        .await;
    let (id, secret) = (body["client_id"].as_str().unwrap(), body["client_secret"].as_str().unwrap());
    let path_and_query = format!(
        "/x-nmos/auth/v1.0/authorize?response_type=code&client_id={id}&redirect_uri={callback}\
         &scope=registration&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    let mut browser = Browser::new();
    let first = browser.get(&app.url(&path_and_query)).await;
    assert_eq!(first.status, 302, "signed out: sent to sign in: {}", first.body);
    let form = browser.get(&app.url(first.location.as_deref().unwrap())).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.field("next"), path_and_query, "the sign-in form keeps the whole request");
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("next".to_owned(), form.field("next")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "alice's long password".to_owned()),
    ];
    let signed_in = browser.post(&app.auth_url("signin"), &fields).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some(path_and_query.as_str()), "back to the request, not home");
    let consent = browser.get(&app.url(&path_and_query)).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Approve access") && consent.body.contains("nmos-cpp node"), "{}", consent.body);
    let back = decide(&app, &mut browser, &consent, "approve").await;
    assert_eq!(format!("{}://{}{}", back.scheme(), back.authority(), back.path()), callback);
    assert_eq!(query(&back, "state").as_deref(), Some("xyz"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &query(&back, "code").unwrap()),
        ("redirect_uri", callback),
        ("code_verifier", VERIFIER),
    ];
    let tokens = app.token(id, secret, &form).await.expect_json(200).await;
    assert_eq!(tokens["scope"], "registration");
    assert_eq!(app.verified_claims(&tokens).await["sub"], "alice");
}

async fn code_flow_with_pkce_and_refresh(backend: Backend) {
    let (app, controller) = setup(backend).await;
    let mut browser = Browser::new();
    let consent = sign_in_and_open(&app, &mut browser, &authorize_url(&app, &controller.id, &[])).await;
    assert_eq!(consent.status, 200);
    assert!(consent.body.contains("Studio Controller"));
    assert!(consent.body.contains("read and write"), "registration: the user's write right");
    assert!(consent.body.contains("no rights to: node"), "node is withheld");
    assert!(
        consent
            .body
            .contains("you are sent to <strong>ctl.example.com</strong>: <code>https://ctl.example.com/cb</code>"),
        "where the person goes: {}",
        consent.body
    );
    assert!(!consent.field("csrf").is_empty());

    let back = decide(&app, &mut browser, &consent, "approve").await;
    assert_eq!(format!("{}://{}{}", back.scheme(), back.host_str().unwrap(), back.path()), REDIRECT);
    assert_eq!(query(&back, "state").as_deref(), Some("opaque-state-1"));
    assert_eq!(query(&back, "iss"), Some(app.issuer()), "RFC 9207: the answer names its issuer");
    let code = query(&back, "code").unwrap();

    let response = exchange(&app, &controller, &code, &[]).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens = response.expect_json(200).await;
    assert_eq!(tokens["scope"], "registration query", "the user's rights narrow the requested scope");
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh_token.len() >= 40);
    let claims = app.verified_claims(&tokens).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], controller.id.as_str());
    assert_eq!(claims["scope"], tokens["scope"]);
    assert_eq!(claims["x-nmos-registration"], json!({"read": ["*"], "write": ["*"]}));
    assert_eq!(claims["x-nmos-query"], json!({"read": ["*"]}));
    assert!(claims.get("x-nmos-node").is_none());

    // Refresh without scope keeps the approved scope; the token rotates.
    let refreshed = refresh(&app, &controller, &refresh_token, None).await.expect_json(200).await;
    assert_eq!(refreshed["scope"], "registration query");
    let second = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, refresh_token);

    // Narrowing is allowed; the user's rights are read again at every refresh.
    app.server.identity.set_rights("alice", &[(NmosApi::Query, Access::None)], "operator:test").await.unwrap();
    let narrowed = refresh(&app, &controller, &second, Some("registration")).await.expect_json(200).await;
    assert_eq!(narrowed["scope"], "registration");
    let third = narrowed["refresh_token"].as_str().unwrap().to_owned();
    let after_change = refresh(&app, &controller, &third, None).await.expect_json(200).await;
    assert_eq!(after_change["scope"], "registration", "query was taken away from alice");
    assert!(app.verified_claims(&after_change).await.get("x-nmos-query").is_none());

    // The audit log names the user.
    let audit = app.server.token_issuer.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|e| e.grant_type == "authorization_code" && e.subject == "alice"));
}

async fn code_and_refresh_failures(backend: Backend) {
    let (app, controller) = setup(backend).await;
    let other = {
        let body = app
            .register(
                json!({"client_name": "Other", "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"]}),
            )
            .await;
        Controller {
            id: body["client_id"].as_str().unwrap().to_owned(),
            secret: body["client_secret"].as_str().unwrap().to_owned(),
        }
    };

    // Wrong verifier, missing verifier, redirect_uri mismatch, code of another client: each
    // spends the code (it is single use), so each gets a fresh one.
    let c = code(&app, &controller).await;
    assert_oauth_error(
        exchange(&app, &controller, &c, &[("code_verifier", &"x".repeat(43))]).await,
        400,
        "invalid_grant",
    )
    .await;
    let c = code(&app, &controller).await;
    assert_oauth_error(exchange(&app, &controller, &c, &[("code_verifier", "")]).await, 400, "invalid_request").await;
    let c = code(&app, &controller).await;
    assert_oauth_error(
        exchange(&app, &controller, &c, &[("redirect_uri", "https://ctl.example.com/other")]).await,
        400,
        "invalid_grant",
    )
    .await;
    let c = code(&app, &controller).await;
    assert_oauth_error(exchange(&app, &other, &c, &[]).await, 400, "invalid_grant").await;
    assert_oauth_error(exchange(&app, &controller, "no-such-code", &[]).await, 400, "invalid_grant").await;

    // A replayed code is refused and revokes what was issued from it.
    let c = code(&app, &controller).await;
    let first = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let issued_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    assert_oauth_error(exchange(&app, &controller, &c, &[]).await, 400, "invalid_grant").await;
    assert_oauth_error(refresh(&app, &controller, &issued_refresh, None).await, 400, "invalid_grant").await;
    let introspected: Value = app
        .http
        .post(app.auth_url("introspect"))
        .basic_auth(&controller.id, Some(&controller.secret))
        .form(&[("token", first["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected, json!({"active": false}), "the access token from a replayed code is revoked too");

    // Widening on refresh, an unknown scope, another client's refresh token.
    let c = code(&app, &controller).await;
    let tokens = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_oauth_error(refresh(&app, &controller, &rt, Some("registration query node")).await, 400, "invalid_scope")
        .await;
    assert_oauth_error(refresh(&app, &controller, &rt, Some("bogus")).await, 400, "invalid_scope").await;
    assert_oauth_error(refresh(&app, &other, &rt, None).await, 400, "invalid_grant").await;

    // A client registered for codes only gets no refresh token, and may not use one.
    let code_only = app
        .register(
            json!({"client_name": "Code only", "redirect_uris": [REDIRECT], "grant_types": ["authorization_code"]}),
        )
        .await;
    let code_only = Controller {
        id: code_only["client_id"].as_str().unwrap().to_owned(),
        secret: code_only["client_secret"].as_str().unwrap().to_owned(),
    };
    let mut browser = Browser::new();
    let consent =
        sign_in_and_open(&app, &mut browser, &authorize_url(&app, &code_only.id, &[("scope", "registration")])).await;
    let back = decide(&app, &mut browser, &consent, "approve").await;
    let tokens = exchange(&app, &code_only, &query(&back, "code").unwrap(), &[]).await.expect_json(200).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert_oauth_error(refresh(&app, &code_only, &rt, None).await, 400, "unauthorized_client").await;

    // Reuse of a rotated refresh token kills the whole family.
    let rotated = refresh(&app, &controller, &rt, None).await.expect_json(200).await;
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_oauth_error(refresh(&app, &controller, &rt, None).await, 400, "invalid_grant").await;
    assert_oauth_error(refresh(&app, &controller, &newest, None).await, 400, "invalid_grant").await;

    // A user whose every right was withdrawn gets nothing from a refresh (not a token with an
    // empty scope), nor from a code approved before the change.
    let c = code(&app, &controller).await;
    let tokens = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let pending_code = code(&app, &controller).await;
    let none = [(NmosApi::Registration, Access::None), (NmosApi::Query, Access::None)];
    app.server.identity.set_rights("alice", &none, "operator:test").await.unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_oauth_error(refresh(&app, &controller, rt, None).await, 400, "invalid_grant").await;
    assert_oauth_error(exchange(&app, &controller, &pending_code, &[]).await, 400, "invalid_grant").await;
    let rights = [(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)];
    app.server.identity.set_rights("alice", &rights, "operator:test").await.unwrap();

    // A disabled user's refresh token stops working.
    let c = code(&app, &controller).await;
    let tokens = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    app.server.identity.set_disabled("alice", true, "operator:test").await.unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_oauth_error(refresh(&app, &controller, rt, None).await, 400, "invalid_grant").await;
    app.server.identity.set_disabled("alice", false, "operator:test").await.unwrap();
    assert_oauth_error(refresh(&app, &controller, rt, None).await, 400, "invalid_grant").await;
}

async fn consent_refusals_and_untrusted_requests(backend: Backend) {
    let (app, controller) = setup(backend).await;
    let mut browser = Browser::new();

    // Deny: back to the client with access_denied and the state.
    let consent = sign_in_and_open(&app, &mut browser, &authorize_url(&app, &controller.id, &[])).await;
    let back = decide(&app, &mut browser, &consent, "deny").await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("opaque-state-1"));
    assert_eq!(query(&back, "iss"), Some(app.issuer()), "RFC 9207: errors name the issuer too");
    assert!(query(&back, "code").is_none());

    // A "decision" smuggled into the authorization request cannot outvote the user's click.
    let smuggled = browser.get(&authorize_url(&app, &controller.id, &[("decision", "approve")])).await;
    assert_eq!(smuggled.status, 200);
    assert!(smuggled.hidden_fields().iter().all(|(n, _)| n != "decision"));
    let back = decide(&app, &mut browser, &smuggled, "deny").await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    let mut twice = consent.hidden_fields();
    twice.push(("decision".into(), "approve".into()));
    twice.push(("decision".into(), "deny".into()));
    assert_eq!(browser.post(&app.auth_url("authorize"), &twice).await.status, 400);
    // The pages cannot be framed by another site (clickjacking).
    let framed = browser.get(&authorize_url(&app, &controller.id, &[])).await;
    assert_eq!(framed.status, 200);
    assert_eq!(framed.headers["x-frame-options"], "DENY");
    assert!(framed.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    // A consent form without its CSRF token is refused.
    let mut forged = consent.hidden_fields();
    forged.retain(|(n, _)| n != "csrf");
    forged.push(("decision".into(), "approve".into()));
    let refused = browser.post(&app.auth_url("authorize"), &forged).await;
    assert_eq!(refused.status, 403);
    assert!(refused.location.is_none());
    // ... and so is one from a browser with no session at all.
    let refused = Browser::new().post(&app.auth_url("authorize"), &consent.hidden_fields()).await;
    assert_eq!(refused.status, 401);

    // An unknown client or an unregistered redirect URI: an error page, never a redirect.
    for url in [
        authorize_url(&app, "no-such-client-0000000000", &[]),
        authorize_url(&app, &controller.id, &[("redirect_uri", "https://evil.example.com/cb")]),
    ] {
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.location.is_none());
        assert!(page.content_type.starts_with("text/html"));
    }

    // Other errors go back to the client, in the RFC 6749 §4.1.2.1 shape.
    for (extra, error) in [
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "bogus")], "invalid_scope"),
        (vec![("code_challenge_method", "S512")], "invalid_request"),
        (vec![("code_challenge", "too-short")], "invalid_request"),
    ] {
        let page = browser.get(&authorize_url(&app, &controller.id, &extra)).await;
        assert_eq!(page.status, 302, "{extra:?}");
        let back = Url::parse(page.location.as_deref().unwrap()).unwrap();
        assert_eq!(query(&back, "error").as_deref(), Some(error), "{extra:?}");
        assert_eq!(query(&back, "state").as_deref(), Some("opaque-state-1"));
        assert_eq!(query(&back, "iss"), Some(app.issuer()), "RFC 9207, errors too: {extra:?}");
    }
    // Even before anyone signs in: this client was registered with an initial access token.
    let bad = authorize_url(&app, &controller.id, &[("response_type", "token")]);
    let stranger = Browser::new().get(&bad).await;
    assert_eq!(stranger.status, 302, "{}", stranger.body);
    assert!(stranger.location.as_deref().unwrap().starts_with(REDIRECT), "{:?}", stranger.location);
    // But a client that someone registered on the pages, with a redirect URI of their choosing,
    // is sent its error only once someone has signed in (RFC 9700 §4.11.2: no open redirector).
    let registered = register_on_pages(&app, &mut browser, "Alice's own app").await;
    let users_app =
        registered.body.split("<dt>Client ID</dt><dd><code>").nth(1).and_then(|rest| rest.split('<').next());
    let users_app = users_app.unwrap_or_else(|| panic!("no client ID: {}", registered.body)).to_owned();
    let bad = authorize_url(&app, &users_app, &[("response_type", "token")]);
    let stranger = Browser::new().get(&bad).await;
    assert_eq!(stranger.status, 302, "{}", stranger.body);
    let to = stranger.location.as_deref().unwrap();
    assert!(to.starts_with("/x-nmos/auth/v1.0/signin?next="), "to the sign-in page, not to the client: {to}");
    let page = browser.get(&bad).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let back = Url::parse(page.location.as_deref().unwrap()).unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("unsupported_response_type"), "{back}");

    // A public client must use PKCE.
    let public = app
        .register(
            json!({"client_name": "Browser app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        )
        .await;
    let public_id = public["client_id"].as_str().unwrap();
    let page =
        browser.get(&authorize_url(&app, public_id, &[("code_challenge", ""), ("code_challenge_method", "")])).await;
    let back = Url::parse(page.location.as_deref().unwrap()).unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
    // With PKCE it works, and it exchanges the code with no secret, but only with the verifier.
    let consent = browser.get(&authorize_url(&app, public_id, &[])).await;
    let back = decide(&app, &mut browser, &consent, "approve").await;
    let c = query(&back, "code").unwrap();
    let r = app
        .http
        .post(app.auth_url("token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", REDIRECT),
            ("client_id", public_id),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    let consent = browser.get(&authorize_url(&app, public_id, &[])).await;
    let back = decide(&app, &mut browser, &consent, "approve").await;
    let c = query(&back, "code").unwrap();
    let response = app
        .http
        .post(app.auth_url("token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", public_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Wrong password: one message whether or not the user exists.
    let mut fresh = Browser::new();
    let form = fresh.get(&app.auth_url("signin")).await;
    let mut bodies = Vec::new();
    for user in ["alice", "nobody"] {
        let fields = vec![
            ("csrf".to_owned(), form.field("csrf")),
            ("username".to_owned(), user.to_owned()),
            ("password".to_owned(), "wrong password".to_owned()),
        ];
        let page = fresh.post(&app.auth_url("signin"), &fields).await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong username or password."));
        bodies.push(page.body.replace(&page.field("csrf"), ""));
    }
    assert_eq!(bodies[0], bodies[1]);
    // Five wrong passwords lock the username out, even for the right password, for a while.
    for _ in 0..5 {
        let fields = vec![
            ("csrf".to_owned(), form.field("csrf")),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), "wrong password".to_owned()),
        ];
        fresh.post(&app.auth_url("signin"), &fields).await;
    }
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "alice's long password".to_owned()),
    ];
    let locked = fresh.post(&app.auth_url("signin"), &fields).await;
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed sign-ins"));

    // Sign-in without the CSRF token is refused.
    let page = fresh
        .post(
            &app.auth_url("signin"),
            &[("username".into(), "alice".into()), ("password".into(), "alice's long password".into())],
        )
        .await;
    assert_eq!(page.status, 403);
}

async fn revocation(backend: Backend) {
    let (app, controller) = setup(backend).await;
    let c = code(&app, &controller).await;
    let tokens = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let at = tokens["access_token"].as_str().unwrap();
    let url = app.auth_url("revoke");
    let introspect = |token: &str, user: &str, secret: Option<&str>| {
        app.http.post(app.auth_url("introspect")).basic_auth(user, secret).form(&[("token", token)]).send()
    };
    let revoke = |form: Vec<(&'static str, String)>| {
        app.http.post(&url).basic_auth(&controller.id, Some(&controller.secret)).form(&form).send()
    };

    // Introspection (RFC 7662): a current access token is active, with its claims.
    let r = introspect(at, &controller.id, Some(&controller.secret)).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let answer = r.expect_json(200).await;
    assert_eq!(answer["active"], true);
    assert_eq!((answer["sub"].as_str(), answer["client_id"].as_str()), (Some("alice"), Some(controller.id.as_str())));
    assert_eq!(answer["scope"], tokens["scope"]);
    for garbage in ["garbage", "a.b.c"] {
        let answer =
            introspect(garbage, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
        assert_eq!(answer, json!({"active": false}), "{garbage}");
    }
    assert_oauth_error(introspect(at, &controller.id, Some("wrong")).await.unwrap(), 401, "invalid_client").await;
    let forged = {
        let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory","exp":9999999999}"#);
        parts.join(".")
    };
    let answer = introspect(&forged, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!(answer["active"], false, "a forged payload does not verify");

    // A refresh token is active for its own client only.
    let answer = introspect(rt, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!((answer["active"].as_bool(), answer["token_type"].as_str()), (Some(true), Some("refresh_token")));
    let node = app.machine_client("registration").await;
    let answer = introspect(rt, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}));
    // Another client learns nothing of a person's access token (username, scopes) ...
    let answer = introspect(at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "introspection is no oracle for others' tokens");
    // ... unless an administrator lets it introspect, as a resource server does.
    let node = app.introspector().await;
    let answer = introspect(at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["username"], "alice", "{answer}");
    let answer = introspect(rt, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "refresh tokens stay their own client's");

    // A deleted client's access tokens are no longer active (whoever asks).
    let gone = app.machine_client("registration").await;
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];
    let gone_token = app.token(&gone.0, &gone.1, &form).await.expect_json(200).await;
    let gone_at = gone_token["access_token"].as_str().unwrap();
    let answer = introspect(gone_at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer["active"], true, "{answer}");
    let operator =
        nmos_auth_client_registry::WebUser { username: "operator".into(), admin: true, account_created_at: 0 };
    assert!(app.server.clients.delete(&gone.0, &operator).await.unwrap());
    let answer = introspect(gone_at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "the client was deleted");
    // ... and so are a deleted user's.
    app.server
        .identity
        .create_user("bob", "bob's long password", false, &[(NmosApi::Query, Access::Read)], "operator:test")
        .await
        .unwrap();
    let mut browser = Browser::new();
    let for_bob = authorize_url(&app, &controller.id, &[("scope", "query")]);
    let consent = sign_in_as_and_open(&app, &mut browser, &for_bob, "bob", "bob's long password").await;
    let back = decide(&app, &mut browser, &consent, "approve").await;
    let bobs = exchange(&app, &controller, &query(&back, "code").unwrap(), &[]).await.expect_json(200).await;
    let bobs_at = bobs["access_token"].as_str().unwrap();
    let answer = introspect(bobs_at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer["active"], true, "{answer}");
    let bobs_rt = bobs["refresh_token"].as_str().unwrap();
    let mut again = Browser::new();
    let consent = sign_in_as_and_open(&app, &mut again, &for_bob, "bob", "bob's long password").await;
    let unused_code = query(&decide(&app, &mut again, &consent, "approve").await, "code").unwrap();
    register_on_pages(&app, &mut again, "The first bob's controller").await;
    let home = again.get(&app.auth_url("home")).await;
    assert!(home.body.contains("The first bob&#39;s controller"), "{}", home.body);
    app.server.identity.delete_user("bob", "operator:test").await.unwrap();
    let answer = introspect(bobs_at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "the user was deleted");
    // A new account given the deleted one's name (a second later: accounts are dated to the
    // second) inherits none of what the old one granted: its access tokens, its refresh tokens,
    // a code not yet exchanged.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.server
        .identity
        .create_user("bob", "the new bob's password", false, &[(NmosApi::Query, Access::Read)], "operator:test")
        .await
        .unwrap();
    let answer = introspect(bobs_at, &node.0, Some(&node.1)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "the old account's access token");
    let answer = introspect(bobs_rt, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "the old account's refresh token");
    assert_oauth_error(refresh(&app, &controller, bobs_rt, None).await, 400, "invalid_grant").await;
    assert_oauth_error(exchange(&app, &controller, &unused_code, &[]).await, 400, "invalid_grant").await;
    // The new account's own grants work at once.
    let mut new_bob = Browser::new();
    let consent = sign_in_as_and_open(&app, &mut new_bob, &for_bob, "bob", "the new bob's password").await;
    // Nor are the old account's clients the new one's.
    let home = new_bob.get(&app.auth_url("home")).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("You have not registered any clients"), "{}", home.body);
    // The console says whose each is: the old account's, deleted, and the new one's.
    register_on_pages(&app, &mut new_bob, "The second bob's controller").await;
    app.server.identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();
    let mut root = Browser::new();
    let console = app.auth_url("admin/clients");
    let list = sign_in_as_and_open(&app, &mut root, &console, "root", "root's long password").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let row = |name: &str| {
        let row = list.body.split("<tr").find(|row| row.contains(name));
        row.unwrap_or_else(|| panic!("no row for {name}: {}", list.body)).to_owned()
    };
    let old_row = row("The first bob&#39;s controller");
    assert!(old_row.contains(r#"<td>bob <span class="tag off">account deleted</span></td>"#), "{old_row}");
    let new_row = row("The second bob&#39;s controller");
    assert!(new_row.contains("<td>bob</td>"), "{new_row}");
    let back = decide(&app, &mut new_bob, &consent, "approve").await;
    let news = exchange(&app, &controller, &query(&back, "code").unwrap(), &[]).await.expect_json(200).await;
    let answer = introspect(news["access_token"].as_str().unwrap(), &node.0, Some(&node.1)).await.unwrap();
    assert_eq!(answer.expect_json(200).await["active"], true);
    refresh(&app, &controller, news["refresh_token"].as_str().unwrap(), None).await.expect_json(200).await;

    // Revocation needs client authentication and a token.
    let r = app.http.post(&url).form(&[("token", rt)]).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    let r = app.http.post(&url).basic_auth(&controller.id, Some("wrong")).form(&[("token", rt)]).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    assert_oauth_error(revoke(vec![("x", "y".into())]).await.unwrap(), 400, "invalid_request").await;

    // Unknown tokens: 200, nothing happens.
    assert_eq!(revoke(vec![("token", "nope".into())]).await.unwrap().status(), 200);

    // Revoking the refresh token (with the RAML's parameter name) ends the family, and the
    // access tokens issued within it.
    let r = revoke(vec![("access_token", rt.into()), ("token_type_hint", "refresh_token".into())]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_oauth_error(refresh(&app, &controller, rt, None).await, 400, "invalid_grant").await;
    let answer = introspect(at, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}));

    // A forged JWT carrying someone else's jti revokes nothing: only tokens this server signed count.
    let c = code(&app, &controller).await;
    let victim = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let victim_at = victim["access_token"].as_str().unwrap();
    let victim_claims = app.verified_claims(&victim).await;
    let forged = format!(
        "{}.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS512","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"jti": victim_claims["jti"], "exp": 9999999999i64, "client_id": node.0}).to_string()),
        "c2lnbmF0dXJl"
    );
    let r = app
        .http
        .post(&url)
        .basic_auth(&node.0, Some(&node.1))
        .form(&[("token", forged.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = introspect(victim_at, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!(answer["active"], true, "the victim's token is untouched");

    // An access token can be revoked on its own (its jti is remembered until it expires).
    let c = code(&app, &controller).await;
    let fresh = exchange(&app, &controller, &c, &[]).await.expect_json(200).await;
    let fresh_at = fresh["access_token"].as_str().unwrap();
    let r = revoke(vec![("token", fresh_at.into()), ("token_type_hint", "access_token".into())]).await.unwrap();
    assert_eq!(r.status(), 200);
    let answer = introspect(fresh_at, &controller.id, Some(&controller.secret)).await.unwrap().expect_json(200).await;
    assert_eq!(answer, json!({"active": false}), "revoked");
    let r = refresh(&app, &controller, fresh["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200, "revoking an access token leaves its refresh token alone");
}

/// Authlib (Python), an OAuth client we did not write: it builds the authorization request
/// with PKCE, exchanges the code, refreshes and revokes.
async fn authlib_client_does_code_pkce_refresh_and_revocation(backend: Backend) {
    const START: &str = r#"
import json, sys
from authlib.integrations.requests_client import OAuth2Session
d = json.load(sys.stdin)
s = OAuth2Session(d["client_id"], d["client_secret"], scope="registration query", redirect_uri=d["redirect_uri"],
                  code_challenge_method="S256")
url, state = s.create_authorization_url(d["authorization_endpoint"], code_verifier=d["verifier"])
print(json.dumps({"url": url, "state": state}))
"#;
    const FINISH: &str = r#"
import json, sys
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError
d = json.load(sys.stdin)
s = OAuth2Session(d["client_id"], d["client_secret"], scope="registration query", redirect_uri=d["redirect_uri"],
                  code_challenge_method="S256", state=d["state"])
token = s.fetch_token(d["token_endpoint"], authorization_response=d["callback"], code_verifier=d["verifier"])
refreshed = s.refresh_token(d["token_endpoint"], refresh_token=token["refresh_token"])
revoked = s.revoke_token(d["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
try:
    s.refresh_token(d["token_endpoint"], refresh_token=refreshed["refresh_token"])
    after = None
except OAuthError as e:
    after = e.error
print(json.dumps({"token": dict(token), "refreshed": dict(refreshed), "revoke_status": revoked.status_code,
                  "refresh_after_revocation": after}))
"#;
    let (app, controller) = setup(backend).await;
    let metadata = app.get_json(&app.url("/.well-known/oauth-authorization-server")).await;
    let verifier = nmos_auth_core::secret::random_token::<48>();
    let mut input = json!({
        "client_id": controller.id, "client_secret": controller.secret, "redirect_uri": REDIRECT,
        "verifier": verifier, "authorization_endpoint": metadata["authorization_endpoint"],
        "token_endpoint": metadata["token_endpoint"], "revocation_endpoint": metadata["revocation_endpoint"],
    });
    // Authlib refuses plain http unless told this is a test.
    let env = [("AUTHLIB_INSECURE_TRANSPORT", "1")];
    let started = run_python(START, &input, &env);
    let mut browser = Browser::new();
    let consent = sign_in_and_open(&app, &mut browser, started["url"].as_str().unwrap()).await;
    let callback = decide(&app, &mut browser, &consent, "approve").await;
    input["state"] = started["state"].clone();
    input["callback"] = json!(callback.as_str());
    let done = run_python(FINISH, &input, &env);

    assert_eq!(done["token"]["scope"], "registration query");
    assert!(done["token"]["refresh_token"].as_str().unwrap().len() >= 40);
    let claims = app.verified_claims(&done["refreshed"]).await;
    assert_eq!(claims["sub"], "alice");
    assert_ne!(done["refreshed"]["refresh_token"], done["token"]["refresh_token"], "rotated");
    assert_eq!(done["revoke_status"], 200);
    assert_eq!(done["refresh_after_revocation"], "invalid_grant");
}
