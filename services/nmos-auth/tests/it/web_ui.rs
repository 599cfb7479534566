//! The pages in a real browser (headless Chromium): sign up, register a client, users, sign
//! out and in, the authorization code flow with PKCE to a redirect target this test runs,
//! deny, an error page, a form whose CSRF token was removed, and deleting a client after a
//! confirmation (one's own only). Every page is saved as a screenshot under
//! target/tmp/screenshots/<backend>/.
use std::path::PathBuf;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests};
use crate::webdriver::Chrome;

backend_tests!(people_use_the_pages_in_a_browser);

/// A stand-in for an NMOS controller's redirect endpoint: answers every request with a page.
async fn callback_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "<!doctype html><title>Controller</title><h1>Controller received the callback</h1>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{}/cb", addr.port())
}

fn query(url: &str, name: &str) -> Option<String> {
    Url::parse(url).unwrap().query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

async fn sign_in(chrome: &Chrome, username: &str, password: &str) {
    chrome.type_into("input[name=username]", username).await;
    chrome.type_into("input[name=password]", password).await;
    chrome.click("button[type=submit]").await;
}

async fn people_use_the_pages_in_a_browser(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shots =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots").join(format!("{backend:?}").to_lowercase());
    let chrome = Chrome::start(shots).await;
    let callback = callback_server().await;

    // Sign up on a new server: the first account is the administrator, with the setup code
    // the server logged (whoever reaches the page first without it is refused).
    chrome.goto(&app.auth_url("signup")).await;
    chrome.wait_for_title("Sign up · nmos-auth").await;
    let background = chrome.script("return getComputedStyle(document.body).backgroundColor;").await;
    assert_eq!(background, "rgb(245, 247, 250)", "the stylesheet loads under the pages' CSP");
    chrome.screenshot("signup").await;
    sign_in(&chrome, "operator", "operator's password").await;
    chrome.wait_for_text("This server has no administrator yet").await;
    chrome.screenshot("signup-without-setup-code").await;
    let code = if backend == Backend::Split { app.printed_setup_code() } else { app.setup_code().await };
    chrome.type_into("input[name=setup_code]", &code).await;
    sign_in(&chrome, "operator", "operator's password").await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    assert!(chrome.url().await.ends_with("/x-nmos/auth/v1.0/home"));
    assert!(chrome.source().await.contains("You have not registered any clients"));
    chrome.screenshot("home-empty").await;

    // Register a public client for a browser-based controller.
    chrome.click("nav a[href$='register-client']").await;
    chrome.screenshot("register-client").await;
    chrome.type_into("input[name=client_name]", "Studio A controller").await;
    chrome.type_into("textarea[name=redirect_uris]", &callback).await;
    chrome.script("document.querySelector('select[name=token_endpoint_auth_method]').value = 'none';").await;
    chrome.click("form[action$='register-client'] button[type=submit]").await;
    chrome.wait_for_title("Client registered · nmos-auth").await;
    chrome.screenshot("client-registered").await;
    let client_id = chrome.text("dd code").await;
    assert!(client_id.len() >= 20);
    chrome.goto(&app.auth_url("home")).await;
    assert!(chrome.source().await.contains(&client_id));
    chrome.screenshot("home").await;

    // The users page: the administrator gives a new user read access to the Query API.
    chrome.click("nav a[href$='users']").await;
    chrome.type_into("form[action$='users/add'] input[name=username]", "viewer").await;
    chrome.type_into("form[action$='users/add'] input[name=password]", "viewer's password").await;
    chrome
        .script("document.querySelector('form[action$=\"users/add\"] select[name=right_query]').value = 'read';")
        .await;
    chrome.click("form[action$='users/add'] button[type=submit]").await;
    chrome.wait_for_text("<th>viewer").await;
    chrome.screenshot("users").await;
    let viewer = app.server.identity.get_user("viewer").await.unwrap();
    assert_eq!(viewer.rights.get(nmos_auth_core::NmosApi::Query), nmos_auth_core::Access::Read);

    // The pending registrations page (none in the default registration mode).
    chrome.click("nav a[href$='pending']").await;
    chrome.wait_for_title("Pending registrations · nmos-auth").await;
    assert!(chrome.source().await.contains("No client is waiting for approval"));
    chrome.screenshot("pending").await;

    // Sign out.
    chrome.click("nav button").await;
    chrome.wait_for_title("Sign in · nmos-auth").await;
    assert!(chrome.url().await.contains("/signin"));
    chrome.screenshot("signin").await;

    // The code flow with PKCE, as nmos-cpp starts it: its redirect_uri unencoded in the query
    // (RFC 3986 §3.4 allows it), which must survive signing in.
    let verifier = nmos_auth_core::secret::random_token::<48>();
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    let authorize = app.auth_url(&format!(
        "authorize?response_type=code&client_id={client_id}&redirect_uri={callback}&scope=query+connection\
         &state=s-123&code_challenge={challenge}&code_challenge_method=S256"
    ));
    chrome.goto(&authorize).await;
    assert!(chrome.url().await.contains("/signin?next="), "signed out: sign in first");
    chrome.screenshot("signin-for-authorization").await;
    sign_in(&chrome, "viewer", "viewer's password").await;
    chrome.wait_for_title("Approve access · nmos-auth").await;
    let consent = chrome.source().await;
    assert!(consent.contains("Studio A controller") && consent.contains("no rights to: connection"));
    chrome.screenshot("consent").await;
    chrome.click("button[value=approve]").await;
    chrome.wait_for_title("Controller").await;
    let landed = chrome.url().await;
    assert!(landed.starts_with(&callback), "{landed}");
    assert_eq!(query(&landed, "state").as_deref(), Some("s-123"));
    chrome.screenshot("callback").await;
    let code = query(&landed, "code").unwrap();
    let tokens = app
        .http
        .post(app.auth_url("token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap()
        .expect_json(200)
        .await;
    assert_eq!(tokens["scope"], "query");
    let claims = app.verified_claims(&tokens).await;
    assert_eq!(claims["sub"], "viewer");
    assert_eq!(claims["x-nmos-query"], serde_json::json!({"read": ["*"]}));

    // Deny.
    chrome.goto(&authorize).await;
    chrome.wait_for_title("Approve access · nmos-auth").await;
    chrome.click("button[value=deny]").await;
    chrome.wait_for_title("Controller").await;
    let landed = chrome.url().await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));

    // A request from an unknown client: an error page, no redirect.
    let unknown = app.auth_url(
        "authorize?response_type=code&client_id=unknown-client-00000000&redirect_uri=https://evil.example/cb",
    );
    chrome.goto(&unknown).await;
    assert!(chrome.url().await.starts_with(&app.base));
    chrome.wait_for_title("This request cannot be completed · nmos-auth").await;
    chrome.screenshot("error").await;

    // A form whose CSRF token was removed is refused.
    chrome.goto(&authorize).await;
    chrome.wait_for_title("Approve access · nmos-auth").await;
    chrome.script("document.querySelector('form[action$=\"authorize\"] input[name=csrf]').remove();").await;
    chrome.click("button[value=approve]").await;
    chrome.wait_for_title("Form expired · nmos-auth").await;
    assert!(!chrome.url().await.starts_with(&callback));
    chrome.screenshot("form-expired").await;

    // Someone else's client cannot be deleted, not even asked about: the page names none.
    chrome.goto(&app.auth_url("home")).await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    chrome
        .script(&format!(
            "const form = document.createElement('form'); form.method = 'post'; form.action = 'delete-client'; \
             for (const [name, value] of [['csrf', document.querySelector('input[name=csrf]').value], \
                                          ['client_id', '{client_id}']]) {{ \
               const field = document.createElement('input'); field.type = 'hidden'; \
               field.name = name; field.value = value; form.appendChild(field); }} \
             document.body.appendChild(form); form.submit();"
        ))
        .await;
    chrome.wait_for_title("Not found · nmos-auth").await;
    assert!(!chrome.source().await.contains("Studio A controller"));

    // Deleting one's own client: first a page that says what it breaks, then the deletion.
    chrome.goto(&app.auth_url("home")).await;
    chrome.click("nav button").await;
    chrome.wait_for_title("Sign in · nmos-auth").await;
    sign_in(&chrome, "operator", "operator's password").await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    chrome.click(".card button.danger").await;
    chrome.wait_for_title("Delete a client? · nmos-auth").await;
    assert!(chrome.text(".alert").await.contains("cannot be undone"));
    assert!(chrome.source().await.contains("Studio A controller"), "names the client");
    chrome.screenshot("delete-client").await;
    chrome.goto(&authorize).await;
    chrome.wait_for_title("Approve access · nmos-auth").await;
    chrome.goto(&app.auth_url("home")).await;
    chrome.click(".card button.danger").await;
    chrome.wait_for_title("Delete a client? · nmos-auth").await;
    chrome.click("button.danger").await;
    chrome.wait_for_title("Clients · nmos-auth").await;
    assert!(chrome.source().await.contains("You have not registered any clients"));
    chrome.goto(&authorize).await;
    chrome.wait_for_title("This request cannot be completed · nmos-auth").await;
}
