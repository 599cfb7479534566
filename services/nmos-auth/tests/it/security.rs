//! Security hardening (issue #14): what an attacker from outside could do to the logs, the
//! sessions, the sign-in, the redirects, the pages and the introspection endpoint.
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{Backend, ExpectJson, TempDir, TestApp, backend_tests, server_certificate};

/// A client name, registered without an account in `open` mode, that tries to write a line of
/// its own into the log, to move the cursor of whoever reads it, and to cut the line short.
const FORGED_NAME: &str = "Node\n2026-11-30T00:00:00.000000Z  INFO audit: user signed in \
                           event=\"user_signed_in\" username=forged-admin\r\u{1b}[2J\u{1b}[31mred\0end";

/// Text logs escape outside values (quoted, control characters escaped: CWE-117); JSON logs
/// carry them as JSON strings. Both on the split deployment's real processes and log files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_values_cannot_forge_log_lines() {
    for format in ["text", "json"] {
        let app = TestApp::spawn_split_with_env(&[("NMOS_AUTH_LOG_FORMAT", format)]).await;
        let registered = app
            .register(json!({
                "client_name": FORGED_NAME, "grant_types": ["client_credentials"],
                "response_types": ["none"], "scope": "registration",
            }))
            .await;
        assert_eq!(registered["client_name"], FORGED_NAME, "the name is kept as registered");
        let logs = app.deployment_logs();
        for raw in ['\r', '\u{1b}', '\0'] {
            assert!(!logs.contains(raw), "{format}: a raw {raw:?} reached the log:\n{logs}");
        }
        let lines = logs.lines().filter(|l| !l.is_empty() && !l.starts_with("--- "));
        match format {
            "text" => {
                let forged: Vec<_> = lines
                    .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()) || l.starts_with("2026-11-30T00:00:00"))
                    .collect();
                assert!(forged.is_empty(), "lines that are not the server's own: {forged:#?}");
                let line = logs.lines().find(|l| l.contains("event=client_registered")).expect("the audit line");
                // The whole name is one quoted value, each unsafe character escaped.
                let escaped: String = FORGED_NAME
                    .chars()
                    .flat_map(|c| {
                        let plain = c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ';
                        if plain { c.to_string() } else { c.escape_default().to_string() }.chars().collect::<Vec<_>>()
                    })
                    .collect();
                assert!(line.contains(&format!(" detail=\"name \\\"{escaped}\\\", ")), "{line}\nwanted {escaped}");
            }
            _ => {
                let entries: Vec<Value> = lines
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
                    .collect();
                let audit = entries
                    .iter()
                    .find(|e| e["fields"]["event"] == "client_registered")
                    .unwrap_or_else(|| panic!("no audit entry in {entries:#?}"));
                let detail = audit["fields"]["detail"].as_str().unwrap();
                assert!(detail.starts_with(&format!("name \"{FORGED_NAME}\", ")), "the value as it came: {audit}");
                assert!(!entries.iter().any(|e| e["fields"]["username"] == "forged-admin"), "{entries:#?}");
            }
        }
    }
}

/// Pages load styles and scripts from this origin only, nothing inline (CSP); no answer is
/// sniffed or leaks its URL in a Referer; pages and answers that show a secret are not cached;
/// HSTS only over https (tls.rs checks it there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_answers_carry_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app.http.get(app.auth_url("signin")).send().await.unwrap();
    let (headers, body) = answered(page, 200).await;
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(policy.split("; ").any(|d| d == directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{policy}");
    for inline in ["<style", "<script", " style=", " onclick=", " onsubmit="] {
        assert!(!body.contains(inline), "inline {inline} on the page, which the policy would block:\n{body}");
    }
    assert!(body.contains(r#"<link rel="stylesheet" href="/x-nmos/auth/v1.0/style.css">"#), "{body}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store", "a page may show a CSRF token or a secret");
    assert!(!headers.contains_key("strict-transport-security"), "no HSTS over plain http");

    let (headers, css) = answered(app.http.get(app.auth_url("style.css")).send().await.unwrap(), 200).await;
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(css.contains(":root"));

    let metadata = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    let (headers, _) = answered(metadata, 200).await;
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let token = app.initial_access_token().await;
    let registered = app
        .http
        .post(app.auth_url("register"))
        .bearer_auth(token)
        .json(&json!({"client_name": "Node", "grant_types": ["client_credentials"], "scope": "registration"}))
        .send()
        .await
        .unwrap();
    let (headers, _) = answered(registered, 201).await;
    assert_eq!(headers["cache-control"], "no-store", "the answer holds the client secret");
}

/// A response's headers and body, once its status is the expected one (the body shown if not).
async fn answered(response: reqwest::Response, status: u16) -> (reqwest::header::HeaderMap, String) {
    let (got, headers) = (response.status(), response.headers().clone());
    let body = response.text().await.unwrap();
    assert_eq!(got.as_u16(), status, "{body}");
    (headers, body)
}

/// RFC 9207: the metadata says so (every authorization response carrying `iss`, success and
/// error, is checked in authorization_code.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_says_authorization_responses_name_the_issuer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let metadata = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    let metadata = metadata.expect_json(200).await;
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true, "{metadata}");
}

/// RFC 9700 and RFC 8252: redirect URIs without user information; on a server that uses TLS,
/// https only, except a loopback address for a native app; plain-http device callbacks (what
/// nmos-cpp registers when unsecured) only on a server that runs without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uris_follow_the_security_bcp() {
    let certs = TempDir::new("tls");
    let (cert, key) = server_certificate(certs.path(), "localhost", "DNS:localhost,IP:127.0.0.1");
    let tls = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap())
        .build()
        .unwrap();
    let plain = TestApp::spawn(Backend::Sqlite).await;
    let device_callback = "http://192.168.1.20:18086/x-authorization/callback";
    for (uri, over_https, over_http) in [
        ("https://ctl.example.com/cb", true, true),
        ("http://127.0.0.1:24980/cb", true, true),
        ("http://[::1]:24980/cb", true, true),
        (device_callback, false, true),
        ("http://evil.example/cb", false, true),
        ("http://127.0.0.1:24980@evil.example/cb", false, false),
        ("https://user:secret@ctl.example.com/cb", false, false),
        ("https://ctl.example.com/cb#fragment", false, false),
    ] {
        for (app, client, allowed) in [(&tls, &https, over_https), (&plain, &plain.http, over_http)] {
            let answer = client
                .post(app.auth_url("register"))
                .bearer_auth(app.initial_access_token().await)
                .json(&json!({"client_name": "App", "redirect_uris": [uri], "token_endpoint_auth_method": "none"}))
                .send()
                .await
                .unwrap();
            if allowed {
                let body = answer.expect_json(201).await;
                assert_eq!(body["redirect_uris"], json!([uri]));
            } else {
                let body = answer.expect_json(400).await;
                assert_eq!(body["error"], "invalid_redirect_uri", "{uri} on {}: {body}", app.base);
            }
        }
    }
}

/// A new browser, signed in as `username`.
async fn signed_in(app: &TestApp, username: &str, password: &str) -> Browser {
    let mut browser = Browser::new();
    let signed_in = sign_in(app, &mut browser, username, password).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    browser
}

/// Fills in and posts the sign-in form.
async fn sign_in(app: &TestApp, browser: &mut Browser, username: &str, password: &str) -> crate::browser::Page {
    let form = browser.get(&app.auth_url("signin")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let fields = [("csrf", form.field("csrf").as_str()), ("username", username), ("password", password)]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
    browser.post(&app.auth_url("signin"), &fields).await
}

/// Whether the browser's session still opens `home` (or is sent to sign in).
async fn opens_home(app: &TestApp, browser: &mut Browser) -> bool {
    let page = browser.get(&app.auth_url("home")).await;
    match page.status.as_u16() {
        200 => true,
        302 if page.location.as_deref().is_some_and(|l| l.contains("/signin?next=")) => false,
        _ => panic!("home answered {} {:?}: {}", page.status, page.location, page.body),
    }
}

backend_tests!(sessions_end_on_the_server);

/// Signing out ends the session on the server (a copied cookie opens nothing afterwards), and so
/// does signing in again in the same browser; a password change, disabling the user and "sign out everywhere" (page and CLI) end all of the
/// user's sessions. The split deployment shows it across processes: the sessions live in the
/// identity service, not in one gateway.
async fn sessions_end_on_the_server(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let identity = &app.server.identity;
    identity.create_user("alice", "alice's long password", false, &[], "operator:test").await.unwrap();
    identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();

    // Sign-out: a copy of the cookie taken before it opens nothing afterwards.
    let mut alice = signed_in(&app, "alice", "alice's long password").await;
    let mut copied = alice.clone();
    assert!(opens_home(&app, &mut copied).await);
    let home = alice.get(&app.auth_url("home")).await;
    let signout = alice.post(&app.auth_url("signout"), &[("csrf".to_owned(), home.field("csrf"))]).await;
    assert_eq!(signout.status, 302, "{}", signout.body);
    assert!(!opens_home(&app, &mut copied).await, "the session ended on the server, not only in one browser");

    // Signing in again in the same browser (as someone else, say) ends the session it had.
    let mut shared = signed_in(&app, "alice", "alice's long password").await;
    let mut copied = shared.clone();
    let page = sign_in(&app, &mut shared, "root", "root's long password").await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(opens_home(&app, &mut shared).await, "root's session");
    assert!(!opens_home(&app, &mut copied).await, "alice's session ended with root's sign-in");

    // A password change ends every session of the user.
    let (mut first, mut second) = (
        signed_in(&app, "alice", "alice's long password").await,
        signed_in(&app, "alice", "alice's long password").await,
    );
    let mut root = signed_in(&app, "root", "root's long password").await;
    identity.set_password("alice", "alice's new long password", None, "operator:test").await.unwrap();
    assert!(!opens_home(&app, &mut first).await && !opens_home(&app, &mut second).await);
    assert!(opens_home(&app, &mut root).await, "other users' sessions go on");

    // Disabling the user ends them too, and enabling again does not bring them back.
    let mut alice = signed_in(&app, "alice", "alice's new long password").await;
    identity.set_disabled("alice", true, "operator:test").await.unwrap();
    identity.set_disabled("alice", false, "operator:test").await.unwrap();
    assert!(!opens_home(&app, &mut alice).await);

    // An administrator signs a user out everywhere on the users page ...
    let mut alice = signed_in(&app, "alice", "alice's new long password").await;
    let users = root.get(&app.auth_url("users")).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("Sign out everywhere"), "{}", users.body);
    let fields = [("csrf", users.field("csrf")), ("username", "alice".into()), ("action", "signout".into())]
        .map(|(n, v)| (n.to_owned(), v));
    let done = root.post(&app.auth_url("users/change"), &fields).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(!opens_home(&app, &mut alice).await);
    assert!(opens_home(&app, &mut root).await);

    // ... and an operator from the shell.
    let _alice = signed_in(&app, "alice", "alice's new long password").await;
    let out = app.admin_command(&["sign-out", "alice"]);
    assert!(out.contains("alice: 1 session(s) ended"), "{out}");
}

/// A stranger at another address failing the administrator's password is slowed down, and
/// cannot lock the administrator out at theirs (OWASP: lockout must not become a denial of
/// service). The lock is logged for operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_lock_the_owner_out() {
    let app = TestApp::spawn_split_with_env(&[]).await;
    app.server.identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();
    let mut stranger = Browser::from_address([127, 0, 0, 66].into());
    for _ in 0..5 {
        let page = sign_in(&app, &mut stranger, "root", "a guess at the password").await;
        assert_eq!(page.status, 401, "{}", page.body);
    }
    let page = sign_in(&app, &mut stranger, "root", "root's long password").await;
    assert_eq!(page.status, 429, "the guesser is locked out, even with the right password: {}", page.body);
    assert!(page.body.contains("Too many failed sign-ins"), "{}", page.body);
    let mut owner = Browser::from_address([127, 0, 0, 10].into());
    let page = sign_in(&app, &mut owner, "root", "root's long password").await;
    assert_eq!(page.status, 302, "the owner at their own address signs in: {}", page.body);
    let logs = app.deployment_logs();
    let locked = logs.lines().find(|l| l.contains("event=sign_in_locked")).expect("the lock is logged");
    assert!(locked.contains("limit=username_at_address") && locked.contains("client_address=127.0.0.66"), "{locked}");
}

/// Behind a reverse proxy (an Ingress) every request comes from the proxy's address. With the
/// proxy in `trusted_proxies`, the sign-in limits count the address it forwards for, so a
/// guesser behind it locks only themselves out; a forged `X-Forwarded-For` from anyone else is
/// ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_limits_count_each_client() {
    let app = TestApp::spawn_split_with_env(&[("NMOS_AUTH_TRUSTED_PROXIES", "127.0.0.9/32")]).await;
    app.server.identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();
    let proxy = || Browser::from_address([127, 0, 0, 9].into());
    let mut guesser = proxy().forwarded_for("203.0.113.66");
    for _ in 0..5 {
        let page = sign_in(&app, &mut guesser, "root", "a guess at the password").await;
        assert_eq!(page.status, 401, "{}", page.body);
    }
    let page = sign_in(&app, &mut guesser, "root", "root's long password").await;
    assert_eq!(page.status, 429, "the guesser is locked out: {}", page.body);
    // Someone not trusted claims, in the header, to be the owner's address: that counts for
    // nothing, and their failures lock their own address.
    let mut forger = Browser::from_address([127, 0, 0, 66].into()).forwarded_for("203.0.113.10");
    for _ in 0..5 {
        let page = sign_in(&app, &mut forger, "root", "another guess").await;
        assert_eq!(page.status, 401, "{}", page.body);
    }
    let mut owner = proxy().forwarded_for("198.51.100.1, 203.0.113.10");
    let page = sign_in(&app, &mut owner, "root", "root's long password").await;
    assert_eq!(page.status, 302, "the owner, through the same proxy, signs in: {}", page.body);
    let logs = app.deployment_logs();
    let signed_in = logs.lines().find(|l| l.contains("event=signed_in")).expect("the sign-in is logged");
    assert!(signed_in.contains("client_address=203.0.113.10"), "{signed_in}");
}
