//! The operator's console in a real browser (headless Chromium), on every deployment: the
//! overview, every client searched and filtered, a client's activity, disabling (no tokens, its
//! refresh tokens revoked for good), enabling, a new secret shown once, a policy, deleting a
//! client and removing a signing key after a confirmation that says what it breaks, rotating
//! keys, and the audit trail with who did what, as a page and as CSV. Forms without their CSRF token, people who are not administrators and bad
//! input change nothing. Screenshots go to target/tmp/screenshots/<backend>/console-*.png.
use std::path::PathBuf;

use nmos_auth_core::{Access, NmosApi};
use serde_json::json;

use crate::authorization_code::{
    REDIRECT, VERIFIER, authorize_url, decide, query, sign_in_and_open, sign_in_as_and_open,
};
use crate::browser::Browser;
use crate::harness::{Backend, ExpectJson, TestApp, assert_oauth_error, backend_tests};
use crate::webdriver::Chrome;

backend_tests!(administrators_run_the_plant_from_the_console);

const CHIEF: &str = "chief";
const CHIEF_PASSWORD: &str = "the chief's long password";
const CLIENT_CREDENTIALS: [(&str, &str); 1] = [("grant_type", "client_credentials")];

async fn sign_in(chrome: &Chrome, username: &str, password: &str) {
    chrome.type_into("input[name=username]", username).await;
    chrome.type_into("input[name=password]", password).await;
    chrome.click("button[type=submit]").await;
}

/// The events on the audit page: (event, by, client, user) of each row (a client's whole id).
async fn audit_rows(chrome: &Chrome) -> Vec<(String, String, String, String)> {
    let rows = chrome
        .script(
            "return [...document.querySelectorAll('#events tbody tr')].map(r => \
             [...r.querySelectorAll('td')].map(td => (td.querySelector('a[title]') || {}).title || td.textContent));",
        )
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let cell = |i: usize| r[i].as_str().unwrap().to_owned();
            (cell(1), cell(2), cell(3), cell(4))
        })
        .collect()
}

async fn administrators_run_the_plant_from_the_console(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let identity = &app.server.identity;
    identity.create_user(CHIEF, CHIEF_PASSWORD, true, &[], "operator:test").await.unwrap();
    let alice_rights = [(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)];
    identity.create_user("alice", "alice's long password", false, &alice_rights, "operator:test").await.unwrap();

    // A Node, a second Node, and a controller holding a person's refresh token.
    let (node, node_secret) = app.machine_client("registration").await;
    let second = app
        .register(json!({"client_name": "Studio B node", "grant_types": ["client_credentials"],
                          "response_types": ["none"], "scope": "registration"}))
        .await;
    let (second, second_secret) =
        (second["client_id"].as_str().unwrap().to_owned(), second["client_secret"].as_str().unwrap().to_owned());
    let controller = app
        .register(json!({"client_name": "Studio Controller", "redirect_uris": [REDIRECT],
                          "grant_types": ["authorization_code", "refresh_token"], "scope": "registration query node"}))
        .await;
    let (ctl, ctl_secret) = (
        controller["client_id"].as_str().unwrap().to_owned(),
        controller["client_secret"].as_str().unwrap().to_owned(),
    );
    for _ in 0..2 {
        app.token(&node, &node_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;
    }
    let mut alice = Browser::new();
    let consent = sign_in_and_open(&app, &mut alice, &authorize_url(&app, &ctl, &[])).await;
    let code = query(&decide(&app, &mut alice, &consent, "approve").await, "code").unwrap();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let tokens = app.token(&ctl, &ctl_secret, &exchange).await.expect_json(200).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())];

    // Someone mistypes alice's password once.
    let mut mistyped = Browser::new();
    let form = mistyped.get(&app.auth_url("signin")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let fields = [
        ("csrf".to_owned(), form.field("csrf")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "not alice's password".to_owned()),
    ];
    let refused = mistyped.post(&app.auth_url("signin"), &fields).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    let shots =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots").join(format!("{backend:?}").to_lowercase());
    let chrome = Chrome::start(shots).await;

    // The overview: the counts that matter, every service reachable.
    chrome.goto(&app.auth_url("admin")).await;
    chrome.wait_for_title("Sign in · nmos-auth").await;
    sign_in(&chrome, CHIEF, CHIEF_PASSWORD).await;
    chrome.wait_for_title("Overview · nmos-auth").await;
    assert_eq!(chrome.text("#clients-approved").await, "3");
    assert_eq!(chrome.text("#clients-pending").await, "0");
    assert_eq!(chrome.text("#tokens-last-hour").await, "3", "two client_credentials tokens and one from a code");
    assert!(!chrome.text("#next-rotation").await.is_empty());
    assert_eq!(chrome.text("#sign-in-failures").await, "1");
    assert_eq!(chrome.text("#lock-outs").await, "0");
    // The gateway checks its peers each second: the last to start is seen up within one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while chrome.source().await.contains(">down<") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        chrome.goto(&app.auth_url("admin")).await;
    }
    let overview = chrome.source().await;
    assert!(!overview.contains("<script"), "the console needs no JavaScript");
    assert!(!overview.contains(">down<"), "every service answers: {overview}");
    assert!(overview.contains(r#"href="/x-nmos/auth/v1.0/admin">Console</a>"#), "in the navigation");
    chrome.screenshot("console-overview").await;

    // Every client, filtered by kind in the registry.
    chrome.click("nav.tabs a[href$='admin/clients']").await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    assert_eq!(chrome.text("#summary").await, "Clients 1–3 of 3");
    chrome.script("document.querySelector('select[name=kind]').value = 'machine';").await;
    chrome.click("form.filters button[type=submit]").await;
    chrome.wait_for_text("Clients 1–2 of 2").await;
    let list = chrome.source().await;
    assert!(list.contains(&node) && list.contains(&second) && !list.contains(&ctl), "{list}");
    chrome.screenshot("console-clients").await;

    // A Node's page: when it last got a token, and how many in the hour.
    chrome.click(&format!("tr[data-client='{node}'] a")).await;
    chrome.wait_for_text("in the last hour").await;
    let seen = chrome.text("#last-token").await;
    assert!(seen.ends_with("2 in the last hour"), "{seen}");
    chrome.screenshot("console-client").await;

    // Disabled, it gets no tokens; enabled, it does again.
    chrome.click("button[value=disable]").await;
    chrome.wait_for_text("Disabled: the client gets no tokens").await;
    chrome.screenshot("console-client-disabled").await;
    let refused = app.token(&node, &node_secret, &CLIENT_CREDENTIALS).await.expect_json(401).await;
    assert_eq!(refused["error"], "invalid_client");
    assert!(refused["error_description"].as_str().unwrap().contains("disabled"), "{refused}");
    chrome.click("button[value=enable]").await;
    chrome.wait_for_text("Enabled: the client gets tokens again").await;
    app.token(&node, &node_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;

    // Disabling the controller revokes alice's refresh token for good: enabled again, it stays
    // revoked.
    chrome.goto(&app.auth_url(&format!("admin/clients/{ctl}"))).await;
    chrome.wait_for_text("registered itself with an initial access token").await;
    chrome.click("button[value=disable]").await;
    chrome.wait_for_text("Disabled: the client gets no tokens").await;
    assert_oauth_error(app.token(&ctl, &ctl_secret, &refresh).await, 401, "invalid_client").await;
    chrome.click("button[value=enable]").await;
    chrome.wait_for_text("Enabled: the client gets tokens again").await;
    assert_oauth_error(app.token(&ctl, &ctl_secret, &refresh).await, 400, "invalid_grant").await;

    // A new secret, shown once: the old one stops working at once.
    chrome.goto(&app.auth_url(&format!("admin/clients/{second}"))).await;
    chrome.click("button[value=rotate-secret]").await;
    chrome.wait_for_title("New client secret · nmos-auth").await;
    let new_secret = chrome.text("code.secret").await;
    assert!(new_secret.len() >= 32 && new_secret != second_secret);
    chrome.screenshot("console-secret-rotated").await;
    assert_oauth_error(app.token(&second, &second_secret, &CLIENT_CREDENTIALS).await, 401, "invalid_client").await;
    app.token(&second, &new_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;
    chrome.goto(&app.auth_url(&format!("admin/clients/{second}"))).await;
    chrome.wait_for_text("Rotate secret").await;
    assert!(!chrome.source().await.contains(&new_secret), "shown only once");

    // A policy: the Node's tokens may write only its own health paths.
    chrome.click("details summary").await;
    chrome
        .script(
            "document.querySelector('input[name=scope][value=registration]').checked = true; \
             document.querySelector('input[name=write_registration]').value = 'health/nodes/*';",
        )
        .await;
    chrome.screenshot("console-policy").await;
    chrome.click("button[value=policy]").await;
    chrome.wait_for_text("The policy is saved").await;
    let tokens = app.token(&second, &new_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;
    let claims = app.verified_claims(&tokens).await;
    assert_eq!(claims["x-nmos-registration"]["write"], json!(["health/nodes/*"]), "{claims}");

    // Deleting a client: first a page that says what it breaks, then its credentials stop.
    chrome.goto(&app.auth_url(&format!("admin/clients/{ctl}"))).await;
    chrome.click("button[value=confirm-delete]").await;
    chrome.wait_for_title("Delete a client? · nmos-auth").await;
    assert!(chrome.text(".alert").await.contains("cannot be undone"));
    assert!(chrome.source().await.contains("Studio Controller"), "names the client");
    chrome.screenshot("console-client-delete").await;
    assert_oauth_error(app.token(&ctl, &ctl_secret, &CLIENT_CREDENTIALS).await, 400, "unauthorized_client").await;
    chrome.click("button[value=delete]").await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    assert_eq!(chrome.text("#summary").await, "Clients 1–2 of 2");
    assert_oauth_error(app.token(&ctl, &ctl_secret, &CLIENT_CREDENTIALS).await, 401, "invalid_client").await;

    // Signing keys: rotate now, then remove the planned key after a confirmation that says
    // what it breaks.
    chrome.click("nav.tabs a[href$='admin/keys']").await;
    chrome.wait_for_title("Signing keys · nmos-auth").await;
    chrome.click("button[value=rotate]").await;
    chrome.wait_for_text(">next<").await;
    chrome.screenshot("console-keys").await;
    let next = chrome
        .script("return [...document.querySelectorAll('tr[data-kid]')].find(r => r.textContent.includes('next')).dataset.kid;")
        .await;
    let next = next.as_str().unwrap().to_owned();
    assert!(app.jwks().await["keys"].as_array().unwrap().iter().any(|k| k["kid"] == next), "published at once");
    chrome.click(&format!("tr[data-kid='{next}'] button[value=confirm-remove]")).await;
    chrome.wait_for_title("Remove a signing key? · nmos-auth").await;
    assert!(chrome.text(".alert").await.contains("does not sign yet"));
    chrome.screenshot("console-key-remove").await;
    chrome.click("button[value=remove]").await;
    chrome.wait_for_title("Signing keys · nmos-auth").await;
    assert_eq!(chrome.text(&format!("tr[data-kid='{next}'] td:nth-child(2)")).await, "removed");
    assert!(!app.jwks().await["keys"].as_array().unwrap().iter().any(|k| k["kid"] == next), "out of the JWKS");

    // The audit trail: who did what, and the tokens per client.
    chrome.click("nav.tabs a[href$='admin/audit']").await;
    chrome.wait_for_title("Audit · nmos-auth").await;
    let rows = audit_rows(&chrome).await;
    let by = |event: &str, client: &str| rows.iter().any(|(e, b, c, _)| e == event && b == CHIEF && c == client);
    for (event, client) in [
        ("client_disabled", node.as_str()),
        ("client_enabled", node.as_str()),
        ("client_disabled", ctl.as_str()),
        ("client_tokens_revoked", ctl.as_str()),
        ("client_secret_rotated", second.as_str()),
        ("client_policy_set", second.as_str()),
        ("client_deleted", ctl.as_str()),
        ("signing_key_rotated", ""),
        ("signing_key_removed", ""),
    ] {
        assert!(by(event, client), "{event} by {CHIEF} for {client:?} in {rows:?}");
    }
    assert!(rows.iter().any(|(e, _, c, _)| e == "client_registered" && c == &node), "{rows:?}");
    assert!(rows.iter().any(|(e, b, _, u)| e == "password_accepted" && b == "alice" && u == "alice"), "{rows:?}");
    assert!(rows.iter().any(|(e, b, _, u)| e == "password_rejected" && b.is_empty() && u == "alice"), "{rows:?}");
    assert!(rows.iter().any(|(e, b, _, u)| e == "user_created" && b == "operator:test" && u == "alice"), "{rows:?}");
    chrome.screenshot("console-audit").await;
    chrome.goto(&app.auth_url(&format!("admin/audit?client={node}"))).await;
    chrome.wait_for_title("Audit · nmos-auth").await;
    assert!(chrome.text("#tokens-issued").await.starts_with("3 tokens"), "two, then one after enabling");
    assert!(audit_rows(&chrome).await.iter().all(|(_, _, c, _)| c == &node), "only the Node's events");

    // As CSV, for a spreadsheet.
    let mut chief = Browser::new();
    let page = sign_in_as_and_open(&app, &mut chief, &app.auth_url("admin/audit"), CHIEF, CHIEF_PASSWORD).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csv = chief.get(&app.auth_url(&format!("admin/audit.csv?part=events&client={node}"))).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.content_type.starts_with("text/csv"), "{}", csv.content_type);
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(csv.body.starts_with("time,event,by,client_id,username,address,detail,service\r\n"), "{}", csv.body);
    assert!(csv.body.lines().any(|l| l.contains(&format!(",client_disabled,{CHIEF},{node},"))), "{}", csv.body);
    let csv = chief.get(&app.auth_url(&format!("admin/audit.csv?part=tokens&client={node}"))).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "client_id,subject,grant_type,tokens,first,last");
    assert!(lines[1].starts_with(&format!("{node},{node},client_credentials,3,")), "{}", csv.body);

    // A form without its CSRF token changes nothing.
    let forged = [("action".to_owned(), "disable".to_owned())];
    let page = chief.post(&app.auth_url(&format!("admin/clients/{node}")), &forged).await;
    assert_eq!(page.status, 403, "{}", page.body);
    app.token(&node, &node_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;

    // Nobody else uses the console, nor changes anything through it.
    let page = alice.get(&app.auth_url("admin")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let home = alice.get(&app.auth_url("home")).await;
    assert_eq!(home.status, 200, "{}", home.body);
    let attempt = [("csrf".to_owned(), home.field("csrf")), ("action".to_owned(), "disable".to_owned())];
    let page = alice.post(&app.auth_url(&format!("admin/clients/{node}")), &attempt).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let page = alice.post(&app.auth_url("admin/keys"), &[attempt[0].clone(), ("action".into(), "rotate".into())]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    app.token(&node, &node_secret, &CLIENT_CREDENTIALS).await.expect_json(200).await;

    // Bad input: a page that says what is wrong, never a 500.
    for (path, status) in [
        ("admin/clients?kind=robot", 400),
        ("admin/clients?page=0", 400),
        ("admin/audit?since=yesterday", 400),
        ("admin/audit?since=2026-12-01T10:00&until=2026-12-01T09:00", 400),
        ("admin/audit.csv?part=everything", 400),
        ("admin/clients/no-such-client-000000000", 404),
    ] {
        let page = chief.get(&app.auth_url(path)).await;
        assert_eq!(page.status.as_u16(), status, "{path}: {}", page.body);
        assert!(page.content_type.starts_with("text/html") && page.body.contains(r#"class="alert""#), "{path}");
    }
    let csrf = chief.get(&app.auth_url("admin/keys")).await.field("csrf");
    let unknown = [
        ("csrf".to_owned(), csrf),
        ("action".to_owned(), "remove".to_owned()),
        ("kid".to_owned(), "no-such-key".to_owned()),
    ];
    let page = chief.post(&app.auth_url("admin/keys"), &unknown).await;
    assert_eq!(page.status, 404, "{}", page.body);
}

/// The overview once `seen` holds of it (the gateway's view of its peers is at most a second old).
async fn overview_until(app: &TestApp, browser: &mut Browser, seen: impl Fn(&str) -> bool) -> crate::browser::Page {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let page = browser.get(&app.auth_url("admin")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if seen(&page.body) || std::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// With a service down, the console shows what the others know and says which one is down;
/// a page that needs it is the 503 page (health never cascades into a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_it_can_while_a_service_is_down() {
    let mut app = TestApp::spawn(Backend::Split).await;
    app.server.identity.create_user(CHIEF, CHIEF_PASSWORD, true, &[], "operator:test").await.unwrap();
    let (node, _) = app.machine_client("registration").await;
    let mut chief = Browser::new();
    let page = sign_in_as_and_open(&app, &mut chief, &app.auth_url("admin"), CHIEF, CHIEF_PASSWORD).await;
    assert_eq!(page.status, 200, "{}", page.body);
    // The gateway checks its peers each second: the last to start is seen up within one.
    let page = overview_until(&app, &mut chief, |body| !body.contains(">down<")).await;
    assert!(!page.body.contains(">down<"), "every service answers: {}", page.body);

    app.deployment().kill("token-issuer");
    let page =
        overview_until(&app, &mut chief, |body| body.contains("token-issuer <span class=\"tag off\">down")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("The audit log cannot be read now"), "{}", page.body);
    assert!(page.body.contains(r#"<li data-service="token-issuer">token-issuer <span class="tag off">down</span>"#));
    assert!(page.body.contains(r#"<dd id="clients-approved">1</dd>"#), "the registry still answers: {}", page.body);
    let page = chief.get(&app.auth_url("admin/clients")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&node) && page.body.contains("the token service is unavailable"), "{}", page.body);
    let page = chief.get(&app.auth_url("admin/audit")).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("Temporarily unavailable"), "{}", page.body);
}
