//! Outages as a plant meets them: a service killed while people sign in, and the database
//! stopped. Pages answer the 503 page and the JSON endpoints 503 `temporarily_unavailable`
//! (never a 500, never after a hang); service resumes by itself when the dependency returns;
//! and health stays process-local: liveness never fails for a peer or the database, readiness
//! only for the process's own database, so no healthy pod is taken out or restarted.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmos_auth_core::secret::Secret;
use nmos_auth_core::{Access, NmosApi};
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::browser::Browser;
use crate::harness::{Backend, ExpectJson, PgCluster, TestApp};

/// The design target is an answer within a second; the bound leaves room for a loaded
/// two-core machine while still telling a prompt 503 from a hung request (5 s before).
const PROMPT: Duration = Duration::from_millis(2500);

/// A page request's outcome.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    took: Duration,
    body: String,
}

/// Signs alice in from fresh browsers, one after another, until stopped.
fn sign_ins(app: &TestApp) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<Answer>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (signin, done) = (app.auth_url("signin"), stop.clone());
    let task = tokio::spawn(async move {
        let mut answers = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let mut browser = Browser::new();
            let form = browser.get(&signin).await;
            assert_eq!(form.status, 200, "the sign-in form needs no service: {}", form.body);
            let fields = vec![
                ("csrf".to_owned(), form.field("csrf")),
                ("username".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "alice's long password".to_owned()),
            ];
            let started = Instant::now();
            let page = browser.post(&signin, &fields).await;
            answers.push(Answer {
                status: page.status.as_u16(),
                content_type: page.content_type,
                took: started.elapsed(),
                body: page.body,
            });
        }
        answers
    });
    (stop, task)
}

/// A browser at the sign-in page, and the form alice sends from it.
async fn alice_at_the_signin_page(app: &TestApp) -> (Browser, Vec<(String, String)>) {
    let mut browser = Browser::new();
    let form = browser.get(&app.auth_url("signin")).await;
    let fields = vec![
        ("csrf".to_owned(), form.field("csrf")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "alice's long password".to_owned()),
    ];
    (browser, fields)
}

/// Every answer a sign-in (302) or the 503 page, the 503 page promptly (not at a call's
/// deadline); how many were each. A sign-in is not held to a time: it hashes a password, which
/// on a loaded machine takes what it takes (the first one, with its connection, took 1.6-2.6 s
/// here with the other core busy, before and after the keep-alive changes alike).
fn served_or_unavailable(answers: &[Answer], logs: &str) -> (usize, usize) {
    for a in answers {
        assert!(a.status == 302 || a.status == 503, "neither signed in nor the 503 page: {a:?}\n{logs}");
        if a.status == 503 {
            assert!(a.content_type.starts_with("text/html"), "{a:?}");
            assert!(a.body.contains("Temporarily unavailable"), "{a:?}");
            assert!(a.took < PROMPT, "the 503 page hung: {a:?}");
        }
    }
    (answers.iter().filter(|a| a.status == 302).count(), answers.iter().filter(|a| a.status == 503).count())
}

/// A gRPC health check of `service` ("" for the server) on a plain-text health port.
async fn health(port: u16, service: &str) -> i32 {
    let channel = nmos_auth_core::grpc::connect(([127, 0, 0, 1], port).into()).unwrap();
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await;
    reply.unwrap_or_else(|e| panic!("health of {service:?} on {port}: {e:?}")).get_ref().status
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Waits (up to 10 s) for the gateway's /readyz body to say `state` of `service`.
async fn wait_for_check(app: &TestApp, service: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(app).await;
        assert_eq!(status, 200, "{body}");
        if body["checks"][service] == state {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never said {service} is {state}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The split deployment with identity killed under sign-ins: every page in flight or sent
/// meanwhile is a sign-in or the 503 page, never a 500; sign-ins work again once identity is
/// back. Meanwhile nothing else goes down with it: the token issuer still reports itself
/// serving and issues client_credentials tokens, which need no identity service, and the
/// gateway stays ready, naming identity as down in its /readyz body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_identity_service_is_the_503_page_and_takes_nothing_else_down() {
    let mut app = TestApp::spawn(Backend::Split).await;
    let rights = [(NmosApi::Registration, Access::Write)];
    app.server.identity.create_user("alice", "alice's long password", false, &rights, "operator:test").await.unwrap();
    let node = app.machine_client("registration").await;
    let (stop, load) = sign_ins(&app);
    tokio::time::sleep(Duration::from_millis(800)).await;

    app.deployment().kill("identity");
    let killed = Instant::now();
    let issuer_health = app.deployment().health_ports[3];
    for _ in 0..6 {
        for service in ["", "nmos.auth.v1.TokenIssuer"] {
            let status = health(issuer_health, service).await;
            assert_eq!(status, ServingStatus::Serving as i32, "the token issuer ({service:?}) without identity");
        }
        let form = [("grant_type", "client_credentials"), ("scope", "registration")];
        app.token(&node.0, &node.1, &form).await.expect_json(200).await;
        let (status, body) = readyz(&app).await;
        assert_eq!(status, 200, "the gateway answers each route itself: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A burst of sign-ins while it is down: every one the 503 page.
    let (mut browser, fields) = alice_at_the_signin_page(&app).await;
    for _ in 0..30 {
        let page = browser.post(&app.auth_url("signin"), &fields).await;
        assert_eq!(page.status, 503, "{}", page.body);
    }
    // Its body says which service is down (as the gateway last looked: every second).
    wait_for_check(&app, "identity", "down").await;
    app.deployment().spawn("identity");

    // Sign-ins resume by themselves.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answers_so_far = {
            let (mut browser, fields) = alice_at_the_signin_page(&app).await;
            browser.post(&app.auth_url("signin"), &fields).await.status
        };
        if answers_so_far == 302 {
            break;
        }
        assert!(Instant::now() < deadline, "sign-ins did not resume:\n{}", app.deployment_logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap();
    let (signed_in, unavailable) = served_or_unavailable(&answers, &app.deployment_logs());
    let slowest = |status| answers.iter().filter(|a| a.status == status).map(|a| a.took).max();
    eprintln!(
        "identity killed under sign-ins: {signed_in} signed in (slowest {:?}), {unavailable} answered the 503 page (slowest {:?})",
        slowest(302),
        slowest(503)
    );
    assert!(unavailable > 0, "the outage was seen");
    assert!(signed_in > 0);
    // The gateway said so, but not once per failed request: at most a line a second from each
    // of the two places that log it.
    let logs = app.deployment_logs();
    let gateway = logs.split("--- ").find(|section| section.starts_with("gateway")).unwrap_or_default();
    let lines = gateway.lines().filter(|l| l.contains("WARN") && l.contains("service")).count();
    let bound = 2 * (killed.elapsed().as_secs() as usize + 1);
    assert!(
        lines > 0 && lines <= bound,
        "{lines} warnings for {} failed sign-ins (at most {bound}):\n{gateway}",
        unavailable + 30
    );
}

/// A code exchange or a refresh that fails on an outage (here the keys service that signs,
/// killed) gives back the code or the refresh token: the client's retry once the service is
/// back succeeds, instead of counting as a replay that revokes its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_and_a_refresh_token_outlive_an_outage_of_the_signer() {
    use crate::authorization_code::{authorize_url, decide, query, sign_in_and_open};
    const REDIRECT: &str = "https://ctl.example.com/cb";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let mut app = TestApp::spawn(Backend::Split).await;
    let rights = [(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)];
    app.server.identity.create_user("alice", "alice's long password", false, &rights, "operator:test").await.unwrap();
    let body = app
        .register(json!({"client_name": "Controller", "redirect_uris": [REDIRECT],
                          "grant_types": ["authorization_code", "refresh_token"], "scope": "registration query node"}))
        .await;
    let (id, secret) =
        (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned());
    let mut browser = Browser::new();
    let consent = sign_in_and_open(&app, &mut browser, &authorize_url(&app, &id, &[])).await;
    let first_code = query(&decide(&app, &mut browser, &consent, "approve").await, "code").unwrap();
    let (http, token_url) = (app.http.clone(), app.auth_url("token"));
    let exchange = |code: &str| {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        http.post(&token_url).basic_auth(&id, Some(&secret)).form(&form).send()
    };
    let refresh = |token: &str| {
        let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
        http.post(&token_url).basic_auth(&id, Some(&secret)).form(&form).send()
    };
    let tokens = exchange(&first_code).await.unwrap().expect_json(200).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let consent = browser.get(&authorize_url(&app, &id, &[])).await;
    let code = query(&decide(&app, &mut browser, &consent, "approve").await, "code").unwrap();

    app.deployment().kill("keys");
    let answer = exchange(&code).await.unwrap().expect_json(503).await;
    assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
    let answer = refresh(&refresh_token).await.unwrap().expect_json(503).await;
    assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
    app.deployment().spawn("keys");

    // Once the signer is back: the same code, the same refresh token.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exchanged = loop {
        let r = exchange(&code).await.unwrap();
        if r.status() != 503 {
            break r.expect_json(200).await;
        }
        assert!(Instant::now() < deadline, "tokens did not come back:\n{}", app.deployment_logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(exchanged["scope"], "registration query");
    let refreshed = refresh(&refresh_token).await.unwrap().expect_json(200).await;
    let newer = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(newer, refresh_token);
    refresh(newer).await.unwrap().expect_json(200).await;
}

/// The database stopped under a one-process server on Postgres (its own cluster): token
/// requests, registrations and sign-ins answer 503 promptly, in the protocol's shape; the
/// process stays alive (/healthz); and tokens flow again by themselves soon after the
/// database is back. (An embedded SQLite database cannot stop while its process runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_a_prompt_503_on_postgres() {
    stopped_database(Backend::Postgres).await;
}

/// The same on the split deployment, where moreover each service stays live (its liveness
/// check serving) while it reports itself not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_a_prompt_503_in_the_split_deployment() {
    stopped_database(Backend::Split).await;
}

async fn stopped_database(backend: Backend) {
    let cluster = PgCluster::start();
    let database = cluster.database().await;
    let mut app = TestApp::spawn_with(backend, |c| c.database_url = Some(Secret::new(database))).await;
    let rights = [(NmosApi::Registration, Access::Write)];
    app.server.identity.create_user("alice", "alice's long password", false, &rights, "operator:test").await.unwrap();
    let node = app.machine_client("registration").await;
    let iat = app.initial_access_token().await;
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];
    app.token(&node.0, &node.1, &form).await.expect_json(200).await;
    let mut browser = Browser::new();
    let signin_form = browser.get(&app.auth_url("signin")).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();

    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        let started = Instant::now();
        let answer = app.token(&node.0, &node.1, &form).await.expect_json(503).await;
        assert_eq!(answer["error"], "temporarily_unavailable", "round {round}: {answer}");
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(took < PROMPT, "a token request took {took:?} to fail");

        let started = Instant::now();
        let node_metadata =
            json!({"client_name": "Node", "grant_types": ["client_credentials"], "scope": "registration"});
        let r = app.http.post(app.auth_url("register")).bearer_auth(&iat).json(&node_metadata).send().await.unwrap();
        let answer = r.expect_json(503).await;
        assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
        slowest = slowest.max(started.elapsed());

        let started = Instant::now();
        let fields = vec![
            ("csrf".to_owned(), signin_form.field("csrf")),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), "alice's long password".to_owned()),
        ];
        let page = browser.post(&app.auth_url("signin"), &fields).await;
        assert_eq!(page.status, 503, "the sign-in page with its database stopped: {}", page.body);
        assert!(page.content_type.starts_with("text/html") && page.body.contains("Temporarily unavailable"));
        slowest = slowest.max(started.elapsed());
        assert!(slowest < PROMPT, "a request took {slowest:?} to fail");

        let alive = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "liveness is the process's own");
    }
    if backend == Backend::Split {
        // Each service: alive, not ready (its database); the gateway: ready (it answers each
        // route itself), with the services' state in its body.
        for port in app.deployment().health_ports {
            assert_eq!(health(port, "liveness").await, ServingStatus::Serving as i32);
            let deadline = Instant::now() + Duration::from_secs(10);
            while health(port, "").await != ServingStatus::NotServing as i32 {
                assert!(Instant::now() < deadline, "a service without its database reports itself ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (status, body) = readyz(&app).await;
        assert_eq!(status, 200, "{body}");
        wait_for_check(&app, "token-issuer", "down").await;
    } else {
        let (status, body) = readyz(&app).await;
        assert_eq!(status, 503, "one process: its own databases are down: {body}");
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    let back = Instant::now();
    let recovery = loop {
        let r = app.token(&node.0, &node.1, &form).await;
        if r.status() == 200 {
            break back.elapsed();
        }
        assert!(back.elapsed() < Duration::from_secs(30), "tokens did not flow again:\n{}", app.deployment_logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "{:?}: database stopped: slowest 503 {slowest:?}; tokens again {recovery:?} after it returned",
        app.backend
    );
    assert!(recovery < Duration::from_secs(2), "tokens took {recovery:?} to flow again");
    drop(cluster);
}

/// A TCP relay to a database that can go silent, as a partition or a host that died does: while
/// silent it forwards nothing either way and closes nothing, so that only a bound of our own
/// ends a wait (TCP itself would notice after many minutes). Healing it ends the connections
/// that were cut off (the far side long gave up on them) and relays new ones again.
struct SilentLink {
    port: u16,
    /// Whether the link is silent, and how many times it has healed.
    state: tokio::sync::watch::Sender<(bool, u64)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl SilentLink {
    async fn to(target: std::net::SocketAddr) -> SilentLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, _) = tokio::sync::watch::channel((false, 0u64));
        let states = state.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((near, _)) = listener.accept().await {
                let Ok(far) = tokio::net::TcpStream::connect(target).await else { continue };
                let (near_read, near_write) = near.into_split();
                let (far_read, far_write) = far.into_split();
                let healed = states.borrow().1;
                tokio::spawn(Self::relay(near_read, far_write, states.subscribe(), healed));
                tokio::spawn(Self::relay(far_read, near_write, states.subscribe(), healed));
            }
        });
        SilentLink { port, state, accepting }
    }

    /// Copies one direction while the link speaks, until either end closes or the link heals
    /// after this connection was cut off.
    async fn relay(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut state: tokio::sync::watch::Receiver<(bool, u64)>,
        healed: u64,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 16 * 1024];
        // Waits while the link is silent; whether this connection still speaks after.
        async fn speaks(state: &mut tokio::sync::watch::Receiver<(bool, u64)>, healed: u64) -> bool {
            match state.wait_for(|&(silent, h)| !silent || h != healed).await {
                Ok(now) => now.1 == healed,
                Err(_) => false,
            }
        }
        while speaks(&mut state, healed).await {
            tokio::select! {
                read = from.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        // Cut off since: the bytes are lost with the connection.
                        if !speaks(&mut state, healed).await || to.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                },
                _ = state.changed() => {}
            }
        }
    }

    fn go_silent(&self) {
        self.state.send_modify(|s| s.0 = true);
    }

    fn heal(&self) {
        self.state.send_modify(|s| *s = (false, s.1 + 1));
    }
}

impl Drop for SilentLink {
    fn drop(&mut self) {
        self.accepting.abort();
        // Every relay ends with its connection.
        self.heal();
    }
}

/// The database gone silent (no answer, no reset) under a one-process server on Postgres:
/// token requests and registrations answer 503 `temporarily_unavailable` within a call's
/// deadline rather than hanging with the connection; the process stays alive and says it is
/// not ready; and tokens flow again soon after the link is back. The token path's audit
/// writer bounds its statement (3 s) and does not try a new connection after a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_is_a_503_within_the_deadline_on_postgres() {
    silent_database(Backend::Postgres).await;
}

/// The same on the split deployment: each service bounds its own statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_is_a_503_within_the_deadline_in_the_split_deployment() {
    silent_database(Backend::Split).await;
}

async fn silent_database(backend: Backend) {
    // Each answer comes from a bound of the server's own (a statement: 3 s; a connection: 0.5 s),
    // not from a call's deadline (5 s) running out, with room for a loaded machine.
    const WITHIN: Duration = Duration::from_millis(4500);
    let database = crate::harness::postgres_database().await;
    let (head, tail) = database.rsplit_once(':').unwrap();
    let (port, name) = tail.split_once('/').unwrap();
    let link = SilentLink::to(([127, 0, 0, 1], port.parse().unwrap()).into()).await;
    let url = format!("{head}:{}/{name}", link.port);
    let app = TestApp::spawn_with(backend, |c| c.database_url = Some(Secret::new(url))).await;
    let node = app.machine_client("registration").await;
    let iat = app.initial_access_token().await;
    let form = [("grant_type", "client_credentials"), ("scope", "registration")];
    app.token(&node.0, &node.1, &form).await.expect_json(200).await;

    link.go_silent();
    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        let started = Instant::now();
        let answer = app.token(&node.0, &node.1, &form).await.expect_json(503).await;
        assert_eq!(answer["error"], "temporarily_unavailable", "round {round}: {answer}");
        slowest = slowest.max(started.elapsed());

        let started = Instant::now();
        let metadata = json!({"client_name": "Node", "grant_types": ["client_credentials"], "scope": "registration"});
        let r = app.http.post(app.auth_url("register")).bearer_auth(&iat).json(&metadata).send().await.unwrap();
        let answer = r.expect_json(503).await;
        assert_eq!(answer["error"], "temporarily_unavailable", "round {round}: {answer}");
        slowest = slowest.max(started.elapsed());
        assert!(slowest < WITHIN, "a request took {slowest:?} to fail:\n{}", app.deployment_logs());

        let alive = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "liveness is the process's own");
    }
    if backend == Backend::Postgres {
        let (status, body) = readyz(&app).await;
        assert_eq!(status, 503, "its own database does not answer: {body}");
    } else {
        wait_for_check(&app, "token-issuer", "down").await;
    }

    link.heal();
    let back = Instant::now();
    let recovery = loop {
        let r = app.token(&node.0, &node.1, &form).await;
        if r.status() == 200 {
            break back.elapsed();
        }
        assert!(back.elapsed() < Duration::from_secs(30), "tokens did not flow again:\n{}", app.deployment_logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("{:?}: database silent: slowest 503 {slowest:?}; tokens again {recovery:?} after it healed", app.backend);
    assert!(recovery < Duration::from_secs(5), "tokens took {recovery:?} to flow again");
    let r = app
        .http
        .post(app.auth_url("register"))
        .bearer_auth(&iat)
        .json(&json!({"client_name": "Node", "grant_types": ["client_credentials"], "scope": "registration"}))
        .send()
        .await
        .unwrap();
    r.expect_json(201).await;
}
