//! RFC 7591 registration: initial access tokens, open and approval modes, errors; RFC 7592
//! client configuration.
use nmos_auth_core::config::RegistrationMode;
use serde_json::{Value, json};

use crate::harness::{Backend, ExpectJson, TestApp, assert_oauth_error, backend_tests};

backend_tests!(
    registration_needs_a_valid_initial_access_token,
    bad_metadata_is_rejected,
    open_registration_is_only_for_code_clients,
    approval_mode_holds_clients_until_an_admin_approves,
    a_client_manages_its_own_registration,
    the_services_decide_who_administers
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
    let (expired, _) = app.server.clients.create_initial_access_token(1, "short", "operator:test").await.unwrap();
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
    let body = r.expect_json(201).await;
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
        let reply = r.expect_json(400).await;
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
    let app = TestApp::spawn_with(backend, |c| c.registration = RegistrationMode::Open).await;
    let url = app.auth_url("register");
    let code = json!({"client_name": "Controller", "redirect_uris": ["http://127.0.0.1:8080/x-authorization/callback"],
                      "grant_types": ["authorization_code", "refresh_token"]});
    let body = app.http.post(&url).json(&code).send().await.unwrap().expect_json(201).await;
    assert_eq!(body["redirect_uris"], json!(["http://127.0.0.1:8080/x-authorization/callback"]));

    // Never for client_credentials, whatever the switch says.
    let r = app.http.post(&url).json(&machine()).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
    let mixed = json!({"client_name": "Both", "redirect_uris": ["https://c.example.com/cb"],
                       "grant_types": ["authorization_code", "client_credentials"]});
    let r = app.http.post(&url).json(&mixed).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;

    // A jwks_uri would make the server fetch a URL of the registrant's choosing: not for
    // anonymous registrations (inline keys are fine).
    let fetcher = json!({"client_name": "Fetcher", "redirect_uris": ["https://c.example.com/cb"],
                         "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://10.0.0.1/jwks"});
    let r = app.http.post(&url).json(&fetcher).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_client_metadata").await;

    // Its redirect URI is a stranger's say-so: a request that cannot succeed leads to the sign-in
    // page, not there (RFC 9700 §4.11.2: no open redirector).
    let anonymous = json!({"client_name": "Anyone's", "redirect_uris": [crate::authorization_code::REDIRECT]});
    let anonymous = app.http.post(&url).json(&anonymous).send().await.unwrap().expect_json(201).await;
    let id = anonymous["client_id"].as_str().unwrap();
    let bad = crate::authorization_code::authorize_url(&app, id, &[("response_type", "token")]);
    let stranger = crate::browser::Browser::new().get(&bad).await;
    assert_eq!(stranger.status, 302, "{}", stranger.body);
    let to = stranger.location.as_deref().unwrap();
    assert!(to.starts_with("/x-nmos/auth/v1.0/signin?next="), "to the sign-in page, not to the client: {to}");

    // With the switch off (the default), code clients need a token too.
    let closed = TestApp::spawn(backend).await;
    let r = closed.http.post(closed.auth_url("register")).json(&code).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
}

/// Approval mode: a Node that knows no initial access token (nmos-cpp's default) registers,
/// keeps its credentials, and gets tokens once an administrator approves it.
async fn approval_mode_holds_clients_until_an_admin_approves(backend: Backend) {
    use crate::authorization_code::sign_in_and_open;
    use crate::browser::Browser;
    use nmos_auth_core::NmosApi;

    let app = TestApp::spawn_with(backend, |c| c.registration = RegistrationMode::Approval).await;
    let register = |name: &str| {
        let body = json!({"client_name": name, "grant_types": ["client_credentials"], "response_types": ["none"], "scope": "registration"});
        app.http.post(app.auth_url("register")).json(&body).send()
    };
    let node = register("Node A").await.unwrap().expect_json(201).await;
    let id = node["client_id"].as_str().unwrap();
    // What it says it is is what an administrator approves (and people see on consent pages):
    // it cannot change through RFC 7592, neither while it waits (between the pending page and
    // the click) nor afterwards. Other updates work (a new secret comes back).
    let configuration = node["registration_client_uri"].as_str().unwrap().to_owned();
    let registration_token = node["registration_access_token"].as_str().unwrap().to_owned();
    let mut update = node.clone();
    update["client_name"] = json!("Studio Controller");
    let r = app.http.put(&configuration).bearer_auth(&registration_token).json(&update).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_client_metadata").await;
    update["client_name"] = json!("Node A");
    update["software_version"] = json!("1.1");
    let r = app.http.put(&configuration).bearer_auth(&registration_token).json(&update).send().await.unwrap();
    let renamed = r.expect_json(200).await;
    assert_eq!(renamed["software_version"], "1.1");
    let secret = renamed["client_secret"].as_str().unwrap();
    let cc = [("grant_type", "client_credentials")];
    let r = app.token(id, secret, &cc).await;
    assert_oauth_error(r, 400, "unauthorized_client").await;

    // An administrator approves it on the pending page.
    app.server
        .identity
        .create_user(
            "alice",
            "alice's long password",
            true,
            &[(NmosApi::Query, nmos_auth_core::Access::Read)],
            "operator:test",
        )
        .await
        .unwrap();
    let mut browser = Browser::new();
    let page = sign_in_and_open(&app, &mut browser, &app.auth_url("pending")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(id) && page.body.contains("Node A"));
    let fields = vec![
        ("csrf".to_owned(), page.field("csrf")),
        ("client_id".to_owned(), id.to_owned()),
        ("decision".to_owned(), "approve".to_owned()),
    ];
    let decided = browser.post(&app.auth_url("pending"), &fields).await;
    assert_eq!(decided.status, 302);
    assert_eq!(app.token(id, secret, &cc).await.status(), 200);
    // Once approved likewise; a refused update changes nothing, the secret included.
    let mut update = renamed.clone();
    update["client_name"] = json!("Studio Controller");
    let r = app.http.put(&configuration).bearer_auth(&registration_token).json(&update).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_client_metadata").await;
    assert_eq!(app.token(id, secret, &cc).await.status(), 200);

    // The admin commands list, approve and reject.
    let other = register("Node B").await.unwrap().expect_json(201).await;
    let third = register("Node C").await.unwrap().expect_json(201).await;
    let admin = |args: &[&str]| {
        let out = app.admin_output(args);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, listed) = admin(&["list-pending"]);
    assert!(ok && listed.contains("Node B") && listed.contains("Node C") && !listed.contains("Node A"), "{listed}");
    assert!(admin(&["approve-client", third["client_id"].as_str().unwrap()]).0);
    assert!(admin(&["reject-client", other["client_id"].as_str().unwrap()]).0);
    assert!(!admin(&["approve-client", "no-such-client"]).0);
    let r = app.token(third["client_id"].as_str().unwrap(), third["client_secret"].as_str().unwrap(), &cc).await;
    assert_eq!(r.status(), 200);
    let r = app.token(other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap(), &cc).await;
    assert_oauth_error(r, 401, "invalid_client").await;

    // A pending application is never redirected to: its redirect URIs are not vetted yet.
    let body = json!({"client_name": "App", "redirect_uris": ["https://app.example.com/cb"]});
    let app_client = app.http.post(app.auth_url("register")).json(&body).send().await.unwrap().expect_json(201).await;
    let url = format!(
        "{}?response_type=code&client_id={}",
        app.auth_url("authorize"),
        app_client["client_id"].as_str().unwrap()
    );
    let page = browser.get(&url).await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    assert!(page.body.contains("waiting for an administrator"));
}

/// RFC 7592 as a restarted Node uses it: read the stored client back (with a new secret, since
/// only digests are kept), update it within what was registered, and deregister.
async fn a_client_manages_its_own_registration(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let registered = app.register(machine()).await;
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let first_secret = registered["client_secret"].as_str().unwrap().to_owned();
    let token = registered["registration_access_token"].as_str().expect("a registration access token").to_owned();
    let uri = registered["registration_client_uri"].as_str().expect("a registration client URI").to_owned();
    assert_eq!(uri, app.auth_url(&format!("register/{client_id}")));
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];

    // Read: 200 with the metadata and a new secret; the old secret stops working.
    let r = app.http.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let read = r.expect_json(200).await;
    assert_eq!(read["client_id"], client_id.as_str());
    assert_eq!(read["scope"], "registration");
    assert_eq!(read["registration_access_token"], token.as_str());
    assert_eq!(read["registration_client_uri"], uri.as_str());
    let secret = read["client_secret"].as_str().expect("a confidential client gets its secret").to_owned();
    assert_ne!(secret, first_secret);
    assert_oauth_error(app.token(&client_id, &first_secret, &form).await, 401, "invalid_client").await;
    assert_eq!(app.token(&client_id, &secret, &form).await.status(), 200);

    // Refusals: no token, a wrong one, another client's, a client that does not exist.
    let r = app.http.get(&uri).send().await.unwrap();
    let headers = assert_oauth_error(r, 401, "invalid_token").await;
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"nmos-auth\"");
    let r = app.http.get(&uri).bearer_auth("wrong").send().await.unwrap();
    let headers = assert_oauth_error(r, 401, "invalid_token").await;
    assert!(headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let other = app.register(machine()).await;
    let r = app.http.get(&uri).bearer_auth(other["registration_access_token"].as_str().unwrap()).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;
    let r = app.http.get(app.auth_url("register/0123456789abcdef")).bearer_auth(&token).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;

    // Update: the complete metadata, client_id included; a new name applies, and a secret in
    // the body must be the current one.
    let mut update = read.clone();
    update["client_name"] = json!("Renamed Node");
    update["client_secret"] = json!(first_secret);
    let r = app.http.put(&uri).bearer_auth(&token).json(&update).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    update["client_secret"] = json!(secret);
    let updated = app.http.put(&uri).bearer_auth(&token).json(&update).send().await.unwrap().expect_json(200).await;
    assert_eq!(updated["client_name"], "Renamed Node");
    let secret = updated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(app.token(&client_id, &secret, &form).await.status(), 200);
    let read = app.http.get(&uri).bearer_auth(&token).send().await.unwrap().expect_json(200).await;
    assert_eq!(read["client_name"], "Renamed Node");
    let secret = read["client_secret"].as_str().unwrap().to_owned();

    // What the registration vouched for cannot change.
    for (field, value) in [
        ("grant_types", json!(["client_credentials", "authorization_code"])),
        ("token_endpoint_auth_method", json!("client_secret_post")),
        ("scope", json!("registration query")),
        ("jwks_uri", json!("https://node.example/jwks.json")),
        ("redirect_uris", json!(["https://elsewhere.example/cb"])),
    ] {
        let mut update = json!({"client_id": client_id, "client_name": "Node", "grant_types": ["client_credentials"],
                                "response_types": ["none"], "scope": "registration"});
        update[field] = value;
        let r = app.http.put(&uri).bearer_auth(&token).json(&update).send().await.unwrap();
        assert_oauth_error(r, 400, "invalid_client_metadata").await;
    }
    let update = json!({"client_id": "someone-else", "client_name": "Node", "grant_types": ["client_credentials"]});
    let r = app.http.put(&uri).bearer_auth(&token).json(&update).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    let r = app.http.put(&uri).bearer_auth(&token).body("{").header("content-type", "application/json").send().await;
    assert_oauth_error(r.unwrap(), 400, "invalid_client_metadata").await;
    assert_eq!(app.token(&client_id, &secret, &form).await.status(), 200, "refused updates change nothing");

    // Delete: 204, then the client is gone for the token endpoint and for its own token.
    let r = app.http.delete(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_oauth_error(app.token(&client_id, &secret, &form).await, 401, "invalid_client").await;
    let r = app.http.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_token").await;

    // A public authorization_code client gets no secret on read.
    let public = app
        .register(json!({"client_name": "Browser", "grant_types": ["authorization_code"], "response_types": ["code"],
                          "redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none"}))
        .await;
    let r = app
        .http
        .get(public["registration_client_uri"].as_str().unwrap())
        .bearer_auth(public["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let read = r.expect_json(200).await;
    assert!(read.get("client_secret").is_none());
    assert_eq!(read["redirect_uris"], json!(["https://app.example.com/cb"]));
}

/// Who may administer is decided by the service that owns the data, for the pages and the
/// command alike: a signed-in user who is no administrator is refused on the users and pending
/// pages, whatever form they post; an administrator cannot lock themselves out; a pending
/// client rejected on the page or with the command is gone.
async fn the_services_decide_who_administers(backend: Backend) {
    use crate::authorization_code::sign_in_and_open;
    use crate::browser::Browser;
    use nmos_auth_core::{Access, NmosApi};
    let app = TestApp::spawn_with(backend, |c| c.registration = RegistrationMode::Approval).await;
    let identity = &app.server.identity;
    identity
        .create_user("alice", "alice's long password", false, &[(NmosApi::Query, Access::Read)], "operator:test")
        .await
        .unwrap();
    identity.create_user("root", "root's long password", true, &[], "operator:test").await.unwrap();

    // alice is no administrator.
    let mut browser = Browser::new();
    let page = sign_in_and_open(&app, &mut browser, &app.auth_url("users")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("Only administrators"), "{}", page.body);
    let csrf = page.field("csrf");
    let post = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf".to_owned(), csrf.clone())];
        all.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        all
    };
    let added = browser
        .post(
            &app.auth_url("users/add"),
            &post(&[("username", "mallory"), ("password", "mallory's password"), ("admin", "true")]),
        )
        .await;
    assert_eq!(added.status, 403, "{}", added.body);
    assert!(identity.get_user("mallory").await.is_err(), "no user was made");
    let changed = browser
        .post(
            &app.auth_url("users/change"),
            &post(&[("username", "alice"), ("action", "rights"), ("right_node", "write")]),
        )
        .await;
    assert_eq!(changed.status, 403, "{}", changed.body);
    let asked =
        browser.post(&app.auth_url("users/change"), &post(&[("username", "root"), ("action", "confirm-delete")])).await;
    assert_eq!(asked.status, 403, "not even which users exist: {}", asked.body);
    let pending = browser.get(&app.auth_url("pending")).await;
    assert_eq!(pending.status, 403, "{}", pending.body);
    let asked =
        browser.post(&app.auth_url("pending"), &post(&[("client_id", "anything"), ("decision", "reject")])).await;
    assert_eq!(asked.status, 403, "not even which clients exist: {}", asked.body);

    // root is one, but cannot disable, delete or demote their own account.
    let mut browser = Browser::new();
    let first = browser.get(&app.auth_url("users")).await;
    let form = browser.get(&app.url(first.location.as_deref().unwrap())).await;
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("next".to_owned(), form.field("next")),
        ("username".to_owned(), "root".to_owned()),
        ("password".to_owned(), "root's long password".to_owned()),
    ];
    let signed_in = browser.post(&app.auth_url("signin"), &fields).await;
    let page = browser.get(&app.url(signed_in.location.as_deref().unwrap())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf");
    for action in ["disable", "delete"] {
        let fields = vec![
            ("csrf".to_owned(), csrf.clone()),
            ("username".to_owned(), "root".to_owned()),
            ("action".to_owned(), action.to_owned()),
        ];
        let refused = browser.post(&app.auth_url("users/change"), &fields).await;
        assert_eq!(refused.status, 400, "{action}: {}", refused.body);
        assert!(refused.body.contains("your own account"), "{}", refused.body);
    }
    let root = identity.get_user("root").await.unwrap();
    assert!(root.admin && !root.disabled);

    // Deleting someone else: first a page that says what it breaks, then the deletion.
    let change = |username: &str, action: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("username".to_owned(), username.to_owned()),
            ("action".to_owned(), action.to_owned()),
        ]
    };
    let asked = browser.post(&app.auth_url("users/change"), &change("alice", "confirm-delete")).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("<title>Delete a user? · nmos-auth</title>"), "{}", asked.body);
    assert!(asked.body.contains("<dd>alice</dd>") && asked.body.contains("cannot be undone"), "{}", asked.body);
    assert!(identity.get_user("alice").await.is_ok(), "asking deletes nothing");
    let unknown = browser.post(&app.auth_url("users/change"), &change("nobody", "confirm-delete")).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let deleted = browser.post(&app.auth_url("users/change"), &change("alice", "delete")).await;
    assert_eq!(deleted.status, 302, "{}", deleted.body);
    assert!(identity.get_user("alice").await.is_err(), "alice was deleted");

    // Pending clients: rejected on the page (by root) or with the command, they are gone.
    let register = |name: &str| {
        let body = json!({"client_name": name, "grant_types": ["client_credentials"], "scope": "registration"});
        app.http.post(app.auth_url("register")).json(&body).send()
    };
    let on_page = register("Page Node").await.unwrap().expect_json(201).await;
    let by_command = register("Command Node").await.unwrap().expect_json(201).await;
    let id = |c: &Value| c["client_id"].as_str().unwrap().to_owned();
    let fields = vec![
        ("csrf".to_owned(), csrf.clone()),
        ("client_id".to_owned(), id(&on_page)),
        ("decision".to_owned(), "reject".to_owned()),
    ];
    // Reject on the page asks first, saying what it does.
    let asked = browser.post(&app.auth_url("pending"), &fields).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("<title>Reject a client? · nmos-auth</title>"), "{}", asked.body);
    assert!(asked.body.contains("Page Node") && asked.body.contains("Rejecting deletes it"), "{}", asked.body);
    assert!(app.server.clients.get(&id(&on_page)).await.unwrap().is_some(), "asking rejects nothing");
    let fields = vec![("csrf".to_owned(), csrf.clone()), ("action".to_owned(), "reject".to_owned())];
    let rejected = browser.post(&app.auth_url(&format!("admin/clients/{}", id(&on_page))), &fields).await;
    assert_eq!(rejected.status, 302, "{}", rejected.body);
    app.admin_command(&["reject-client", &id(&by_command)]);
    for client in [&on_page, &by_command] {
        assert!(app.server.clients.get(&id(client)).await.unwrap().is_none(), "{client}");
    }
    let out = app.admin_output(&["reject-client", &id(&on_page)]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such pending client"));
}
