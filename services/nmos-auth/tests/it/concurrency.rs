//! Every write path with many simultaneous requests: each is served or refused in the
//! protocol's own terms, never failed (no 5xx), and nothing is spent twice. Codes, code
//! replays racing their first use, refresh rotation, client assertion ids, registrations,
//! approvals, sign-ups, users and key rotation.
use std::future::Future;
use std::sync::Arc;

use nmos_auth_core::config::RegistrationMode;
use nmos_auth_core::{Access, NmosApi};
use serde_json::{Value, json};

use crate::authorization_code::{authorize_url, decide, query, sign_in_and_open};
use crate::browser::Browser;
use crate::harness::{Backend, ExpectJson, TestApp, backend_tests};
use crate::private_key_jwt::{ASSERTION_TYPE, node_key, sign};

backend_tests!(codes_and_refresh_tokens_at_once, registrations_assertions_users_and_keys_at_once);

const REDIRECT: &str = "https://ctl.example.com/cb";
// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Runs every future at once, each on its own task and released together, so that they
/// really overlap; their outputs, in order.
async fn at_once<F, T>(futures: Vec<F>) -> Vec<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(futures.len()));
    let tasks: Vec<_> = futures
        .into_iter()
        .map(|future| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                future.await
            })
        })
        .collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

/// Sends every request at once; each answer's status and JSON body.
async fn send_at_once(requests: Vec<reqwest::RequestBuilder>) -> Vec<(u16, Value)> {
    let futures = requests.into_iter().map(|request| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    });
    at_once(futures.collect()).await
}

/// How many answers had each status and error, for assertion messages.
fn tally(answers: &[(u16, Value)]) -> Vec<(u16, String)> {
    let mut tally: Vec<(u16, String)> =
        answers.iter().map(|(s, b)| (*s, b["error"].as_str().unwrap_or_default().to_owned())).collect();
    tally.sort();
    tally
}

/// Exactly one answer served with `ok`, every other refused with `refused` and `error`.
fn one_winner(answers: &[(u16, Value)], ok: u16, refused: u16, error: &str) -> Value {
    let winners: Vec<&Value> = answers.iter().filter(|(s, _)| *s == ok).map(|(_, b)| b).collect();
    assert_eq!(winners.len(), 1, "exactly one is served: {:?}", tally(answers));
    for (status, body) in answers.iter().filter(|(s, _)| *s != ok) {
        assert_eq!((*status, body["error"].as_str()), (refused, Some(error)), "{body}: {:?}", tally(answers));
    }
    winners[0].clone()
}

struct Flow {
    app: TestApp,
    browser: Browser,
    /// A public client (PKCE, no secret) registered for codes and refresh tokens.
    public_id: String,
    /// A confidential client that introspects tokens, as a resource server would.
    introspector: (String, String),
}

impl Flow {
    async fn code(&mut self) -> String {
        let consent = self.browser.get(&authorize_url(&self.app, &self.public_id, &[])).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        query(&decide(&self.app, &mut self.browser, &consent, "approve").await, "code").unwrap()
    }

    fn exchange(&self, code: &str) -> reqwest::RequestBuilder {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &self.public_id),
        ];
        self.app.http.post(self.app.auth_url("token")).form(&form)
    }

    fn refresh(&self, token: &str) -> reqwest::RequestBuilder {
        let form = [("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", &self.public_id)];
        self.app.http.post(self.app.auth_url("token")).form(&form)
    }

    async fn active(&self, token: &str) -> bool {
        let (id, secret) = &self.introspector;
        let request = self.app.http.post(self.app.auth_url("introspect")).basic_auth(id, Some(secret));
        let answer = request.form(&[("token", token)]).send().await.unwrap().expect_json(200).await;
        answer["active"].as_bool().unwrap_or_else(|| panic!("{answer}"))
    }
}

async fn codes_and_refresh_tokens_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rights = [(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)];
    app.server.identity.create_user("alice", "alice's long password", false, &rights, "operator:test").await.unwrap();
    let public = app
        .register(json!({"client_name": "Browser controller", "redirect_uris": [REDIRECT],
                          "grant_types": ["authorization_code", "refresh_token"],
                          "token_endpoint_auth_method": "none", "scope": "registration query node"}))
        .await;
    let public_id = public["client_id"].as_str().unwrap().to_owned();
    let introspector = app.introspector().await;
    let mut browser = Browser::new();
    let consent = sign_in_and_open(&app, &mut browser, &authorize_url(&app, &public_id, &[])).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let mut flow = Flow { app, browser, public_id, introspector };

    // Sixteen valid codes exchanged at once: sixteen token responses.
    let mut codes = Vec::new();
    for _ in 0..16 {
        codes.push(flow.code().await);
    }
    let answers = send_at_once(codes.iter().map(|c| flow.exchange(c)).collect()).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let refresh_tokens: Vec<String> =
        answers.iter().map(|(_, body)| body["refresh_token"].as_str().unwrap().to_owned()).collect();

    // Sixteen families refreshed at once: each rotates.
    let answers = send_at_once(refresh_tokens.iter().map(|t| flow.refresh(t)).collect()).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");

    // One code presented eight times at once: one exchange, seven invalid_grant; and the
    // winner's tokens are revoked as they are when a replay comes after it.
    for _ in 0..4 {
        let code = flow.code().await;
        let answers = send_at_once((0..8).map(|_| flow.exchange(&code)).collect()).await;
        let winner = one_winner(&answers, 200, 400, "invalid_grant");
        let access = winner["access_token"].as_str().unwrap();
        assert!(!flow.active(access).await, "the winner's access token is revoked with its code");
        let refresh = winner["refresh_token"].as_str().unwrap();
        let answer = flow.refresh(refresh).send().await.unwrap().expect_json(400).await;
        assert_eq!(answer["error"], "invalid_grant", "the winner's refresh token is revoked too");
    }

    // One refresh token presented eight times at once: one rotation, seven invalid_grant, and
    // the reuse ends the family: every access token issued within it, the winner's included.
    for _ in 0..4 {
        let code = flow.code().await;
        let first = flow.exchange(&code).send().await.unwrap().expect_json(200).await;
        let refresh = first["refresh_token"].as_str().unwrap();
        let answers = send_at_once((0..8).map(|_| flow.refresh(refresh)).collect()).await;
        let winner = one_winner(&answers, 200, 400, "invalid_grant");
        for access in [&first, &winner].map(|t| t["access_token"].as_str().unwrap()) {
            assert!(!flow.active(access).await, "the family's access tokens are revoked");
        }
        let rotated = winner["refresh_token"].as_str().unwrap();
        let answer = flow.refresh(rotated).send().await.unwrap().expect_json(400).await;
        assert_eq!(answer["error"], "invalid_grant");
    }
}

async fn registrations_assertions_users_and_keys_at_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.registration = RegistrationMode::Approval).await;
    let register = app.auth_url("register");
    let node = json!({"client_name": "Node", "grant_types": ["client_credentials"], "response_types": ["none"],
                      "scope": "registration"});

    // Sixteen Nodes with an initial access token, and sixteen without (held for approval).
    let token = app.initial_access_token().await;
    let vouched = (0..16).map(|_| app.http.post(&register).bearer_auth(&token).json(&node));
    let answers = send_at_once(vouched.chain((0..16).map(|_| app.http.post(&register).json(&node))).collect()).await;
    assert!(answers.iter().all(|(status, _)| *status == 201), "{:?}", tally(&answers));
    let pending: Vec<String> =
        answers[16..].iter().map(|(_, body)| body["client_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(app.server.clients.pending().await.unwrap().len(), 16);

    // Sixteen approvals at once; then one client approved by eight administrators at once.
    let approvals = pending.iter().map(|id| {
        let (clients, id) = (app.server.clients.clone(), id.clone());
        async move { clients.approve(&id, "operator").await }
    });
    let approved = at_once(approvals.collect()).await;
    assert!(approved.iter().all(|a| matches!(a, Ok(true))), "{approved:?}");
    let lone = app.http.post(&register).json(&node).send().await.unwrap().expect_json(201).await;
    let lone = lone["client_id"].as_str().unwrap().to_owned();
    let approvals = (0..8).map(|_| {
        let (clients, id) = (app.server.clients.clone(), lone.clone());
        async move { clients.approve(&id, "operator").await }
    });
    let approved = at_once(approvals.collect()).await;
    assert_eq!(approved.iter().filter(|a| matches!(a, Ok(true))).count(), 1, "{approved:?}");
    assert!(approved.iter().all(|a| a.is_ok()), "{approved:?}");
    assert!(app.server.clients.pending().await.unwrap().is_empty());

    // private_key_jwt: sixteen assertions at once are sixteen tokens; one assertion sent eight
    // times at once is one token (its jti is spent) and seven invalid_client.
    let key = node_key("k1", "RS512");
    let registered = app
        .register(json!({"client_name": "Signing Node", "grant_types": ["client_credentials"],
                          "scope": "registration", "token_endpoint_auth_method": "private_key_jwt",
                          "jwks": {"keys": [key.jwk]}}))
        .await;
    let id = registered["client_id"].as_str().unwrap().to_owned();
    let now = nmos_auth_core::now_unix();
    let assertion = |jti: String| {
        let claims = json!({"iss": id, "sub": id, "aud": app.issuer(), "exp": now + 60, "jti": jti});
        sign(&key.encoding, jsonwebtoken::Algorithm::RS512, "k1", &claims)
    };
    let ask = |assertion: String| {
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", assertion),
        ];
        app.http.post(app.auth_url("token")).form(&form)
    };
    let answers = send_at_once((0..16).map(|i| ask(assertion(format!("jti-{i}")))).collect()).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{:?}", tally(&answers));
    let once = assertion("jti-once".into());
    let answers = send_at_once((0..8).map(|_| ask(once.clone())).collect()).await;
    one_winner(&answers, 200, 401, "invalid_client");

    // Eight people with the setup code sign up at once on this new server: one becomes its
    // administrator, and sign-up is closed to the other seven.
    let code = app.setup_code().await;
    let mut forms = Vec::new();
    for i in 0..8 {
        let mut browser = Browser::new();
        let page = browser.get(&app.auth_url("signup")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let fields = vec![
            ("csrf".to_owned(), page.field("csrf")),
            ("username".to_owned(), format!("person{i}")),
            ("password".to_owned(), "a long enough password".to_owned()),
            ("setup_code".to_owned(), code.clone()),
        ];
        forms.push((browser, fields));
    }
    let url = app.auth_url("signup");
    let signups = forms.into_iter().map(|(mut browser, fields)| {
        let url = url.clone();
        async move { browser.post(&url, &fields).await }
    });
    let pages = at_once(signups.collect()).await;
    let statuses: Vec<u16> = pages.iter().map(|p| p.status.as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 302).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 7, "{statuses:?}");
    let users = app.server.identity.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].admin);

    // Sixteen users added at once; then one user's rights changed eight ways at once.
    let identity = app.server.identity.clone();
    let adds =
        (0..16).map(|i| {
            let identity = identity.clone();
            async move {
                identity.create_user(&format!("user{i}"), "a long enough password", false, &[], "operator:test").await
            }
        });
    let added = at_once(adds.collect()).await;
    assert!(added.iter().all(|a| a.is_ok()), "{added:?}");
    let changes = NmosApi::ALL.into_iter().map(|api| {
        let identity = identity.clone();
        async move { identity.set_rights("user0", &[(api, Access::Write)], "operator:test").await }
    });
    let changed = at_once(changes.collect()).await;
    assert!(changed.iter().all(|c| c.is_ok()), "{changed:?}");
    let user0 = identity.get_user("user0").await.unwrap();
    assert!(NmosApi::ALL.into_iter().all(|api| user0.rights.get(api) == Access::Write), "{user0:?}");
    let toggles = (0..8).map(|i| {
        let identity = identity.clone();
        async move { identity.set_disabled("user1", i % 2 == 0, "operator:test").await }
    });
    assert!(at_once(toggles.collect()).await.iter().all(|t| t.is_ok()));

    // Key rotation asked for at once on three keys replicas (as operators on three machines
    // might): one next key, the same for all.
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(nmos_auth_keys::KeysService::open(&app.config).await.unwrap()));
    }
    let rotations = (0..6).map(|i| {
        let replica = replicas[i % 3].clone();
        async move { replica.rotate("test").await.map(|key| key.kid).map_err(|e| format!("{e:#}")) }
    });
    let kids = at_once(rotations.collect()).await;
    assert!(kids.iter().all(|k| k.is_ok() && *k == kids[0]), "{kids:?}");
    let states: Vec<_> = replicas[0].list().await.unwrap().into_iter().map(|(_, state)| state).collect();
    assert_eq!(states.iter().filter(|s| **s == nmos_auth_keys::schedule::State::Next).count(), 1, "{states:?}");
}

/// The token store itself, on each backend (it is the same in the split deployment).
mod store {
    use super::REDIRECT;
    use crate::harness::{Backend, TestApp, store_backend_tests};

    store_backend_tests!(a_replay_settles_with_first_use_and_revocation_in_any_order);
    /// The token store's side of a code replay, in the orders a race can produce, on the store
    /// itself (two handles on one database, as two token issuers would have): a replay that comes
    /// after the first use's family was made but before its token was recorded revokes that
    /// token all the same; and a replay, a revocation of the family and the first use's record,
    /// all at once, never deadlock (Postgres aborts one of two transactions that wait on each
    /// other: each takes the code, then the family, then the revocation list).
    async fn a_replay_settles_with_first_use_and_revocation_in_any_order(backend: Backend) {
        use nmos_auth_token_issuer::store::{self, CodeRow, CodeUse, FamilyRow, IssuedFrom};
        let app = TestApp::spawn(backend).await;
        let open = || async {
            store::open(nmos_auth_core::db::Db::connect(&app.config.database_url("tokens")).await.unwrap())
        };
        let (first, second) = (open().await, open().await);
        let now = nmos_auth_core::now_unix();
        let code = |n: u32| CodeRow {
            digest: nmos_auth_core::secret::digest(&format!("code-{n}")),
            client_id: nmos_auth_core::ClientId::new("client"),
            username: "alice".into(),
            redirect_uri: REDIRECT.into(),
            redirect_uri_sent: true,
            scope: "registration".into(),
            code_challenge: None,
            code_challenge_method: None,
            expires_at: now + 60,
        };
        let family = |n: u32, digest: &[u8]| FamilyRow {
            id: format!("family-{n}"),
            client_id: nmos_auth_core::ClientId::new("client"),
            username: "alice".into(),
            scope: "registration".into(),
            code_digest: Some(digest.to_vec()),
            created_at: now,
            expires_at: now + 3600,
            revoked: false,
        };

        // In order: first use, its family, a replay, then the first use's token is recorded.
        let c = code(0);
        first.insert_code(&c).await.unwrap();
        assert!(matches!(first.consume_code(&c.digest).await.unwrap(), Some(CodeUse::First(_))));
        let f = family(0, &c.digest);
        first.create_family(&f, b"refresh-0").await.unwrap();
        assert!(matches!(second.consume_code(&c.digest).await.unwrap(), Some(CodeUse::Replayed(_))));
        let issued =
            IssuedFrom { jti: "jti-0", expires_at: now + 60, code_digest: Some(&c.digest), family_id: Some(&f.id) };
        first.record_issued(&issued).await.unwrap();
        assert!(first.is_access_token_revoked("jti-0").await.unwrap(), "recorded after the replay: revoked");
        assert!(first.find_refresh_token(b"refresh-0").await.unwrap().unwrap().family.revoked);

        // At once, many times over: a replay, the family revoked (a reused refresh token), and the
        // first use's token recorded. Every call succeeds, and the token ends up revoked.
        for n in 1..=100 {
            let c = code(n);
            first.insert_code(&c).await.unwrap();
            assert!(matches!(first.consume_code(&c.digest).await.unwrap(), Some(CodeUse::First(_))));
            let f = family(n, &c.digest);
            first.create_family(&f, format!("refresh-{n}").as_bytes()).await.unwrap();
            let early = IssuedFrom {
                jti: &format!("early-{n}"),
                expires_at: now + 60,
                code_digest: None,
                family_id: Some(&f.id),
            };
            first.record_issued(&early).await.unwrap();
            let jti = format!("jti-{n}");
            let replay = second.consume_code(&c.digest);
            let revoke = first.revoke_family(&f.id);
            let issued =
                IssuedFrom { jti: &jti, expires_at: now + 60, code_digest: Some(&c.digest), family_id: Some(&f.id) };
            let record = second.record_issued(&issued);
            let (replayed, revoked, recorded) = tokio::join!(replay, revoke, record);
            assert!(matches!(replayed, Ok(Some(CodeUse::Replayed(_)))), "round {n}: {replayed:?}");
            revoked.unwrap_or_else(|e| panic!("round {n}: revoking the family: {e:#}"));
            recorded.unwrap_or_else(|e| panic!("round {n}: recording the token: {e:#}"));
            for jti in [jti.clone(), format!("early-{n}")] {
                assert!(first.is_access_token_revoked(&jti).await.unwrap(), "round {n}: {jti} is revoked");
            }
        }
    }
}
