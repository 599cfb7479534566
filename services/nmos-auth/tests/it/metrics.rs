//! The Prometheus endpoint (`metrics_listen`), read the way plants read it: the exposition
//! parsed by the Prometheus Python client's parser and linted by `promtool check metrics`, then
//! scraped by a real Prometheus server that loads the chart's alert rules and answers every
//! query of the chart's Grafana dashboard.
//!
//! The one-process server runs as its own process here (`nmos-auth serve`): a process has one
//! registry, and this test binary runs many servers at once, so exact counts need a process of
//! their own. The split deployment's processes each serve their own metrics.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::deployment::ROLES;
use crate::harness::{Backend, ExpectJson, TempDir, http_client, nmos_auth, run_python, stable_listener, test_config};

/// The chart's rule file and dashboard.
fn chart_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/nmos-auth/files").join(name)
}

/// One scrape, as the Prometheus client's parser read it.
struct Scrape {
    text: String,
    families: Vec<Value>,
}

impl Scrape {
    async fn of(port: u16) -> Scrape {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let response = http_client().get(&url).send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{url}: {text}");
        assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = [
    {"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(json.load(sys.stdin)["text"])
]
print(json.dumps(families))
"#;
        let families = run_python(PARSE, &json!({"text": text}), &[]);
        // promtool's linter: names, units, suffixes and HELP as Prometheus's conventions want.
        let mut lint = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (apt-get install prometheus)");
        std::io::Write::write_all(lint.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let linted = lint.wait_with_output().unwrap();
        assert!(
            linted.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&linted.stdout),
            String::from_utf8_lossy(&linted.stderr)
        );
        Scrape { text, families: families.as_array().unwrap().clone() }
    }

    /// The sample `name` with exactly `labels`, if present.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.families
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .find(|s| s["name"] == name && s["labels"].as_object() == Some(&want))
            .map(|s| s["value"].as_f64().unwrap())
    }

    /// The sample, which must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.text))
    }

    /// How many samples the family has.
    fn samples(&self, family: &str) -> usize {
        self.families.iter().filter(|f| f["name"] == family).map(|f| f["samples"].as_array().unwrap().len()).sum()
    }

    fn kind(&self, family: &str) -> &str {
        let f = self.families.iter().find(|f| f["name"] == family);
        f.and_then(|f| f["type"].as_str()).unwrap_or_else(|| panic!("no family {family} in:\n{}", self.text))
    }
}

/// `nmos-auth serve` as its own process, killed when dropped.
struct ServeProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("the server's log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// Polls `url` until it answers 200 (one minute at most).
async fn wait_for(url: &str, what: &str) {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "{what} did not answer {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TOKEN: &str = "/x-nmos/auth/v1.0/token";

/// What every test here does to a server at `base`: tokens issued and refused in each way a
/// refusal is counted, and a sign-in lock-out (through the legacy password grant, whose guesses
/// are throttled as the sign-in page's are).
/// `initial_access_token` registers the two clients. Returns the machine client's id and secret.
async fn traffic(base: &str, initial_access_token: &str) -> (String, String) {
    let http = http_client();
    let register = |metadata: Value| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{base}/x-nmos/auth/v1.0/register")).bearer_auth(initial_access_token);
            let r = r.json(&metadata).send().await.unwrap();
            let body = r.expect_json(201).await;
            (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned())
        }
    };
    let (id, secret) = register(json!({
        "client_name": "Metrics Node", "grant_types": ["client_credentials"], "response_types": ["none"],
        "scope": "registration",
    }))
    .await;
    let token = |secret: String, form: Vec<(&'static str, &'static str)>, status: u16| {
        let (http, id) = (http.clone(), id.clone());
        async move {
            let r = http.post(format!("{base}{TOKEN}")).basic_auth(&id, Some(&secret)).form(&form).send().await;
            r.unwrap().expect_json(status).await
        }
    };
    for _ in 0..3 {
        token(secret.clone(), vec![("grant_type", "client_credentials")], 200).await;
    }
    for _ in 0..2 {
        token("wrong".into(), vec![("grant_type", "client_credentials")], 401).await;
    }
    token(secret.clone(), vec![("grant_type", "made_up")], 400).await;
    token(secret.clone(), vec![("scope", "registration")], 400).await;
    // Five wrong passwords for one username at this address lock the pair; the sixth is refused.
    let (legacy, legacy_secret) = register(json!({
        "client_name": "Legacy tool", "grant_types": ["password"], "response_types": ["none"], "scope": "registration",
    }))
    .await;
    for _ in 0..6 {
        let form = [("grant_type", "password"), ("username", "mallory"), ("password", "guess")];
        let r = http.post(format!("{base}{TOKEN}")).basic_auth(&legacy, Some(&legacy_secret)).form(&form).send();
        let body = r.await.unwrap().expect_json(400).await;
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    (id, secret)
}

/// `n` more tokens for the machine client, and one request with a wrong secret.
async fn more_tokens(base: &str, (id, secret): &(String, String), n: usize) {
    let http = http_client();
    let form = [("grant_type", "client_credentials")];
    for _ in 0..n {
        let r = http.post(format!("{base}{TOKEN}")).basic_auth(id, Some(secret)).form(&form).send().await.unwrap();
        r.expect_json(200).await;
    }
    let r = http.post(format!("{base}{TOKEN}")).basic_auth(id, Some("wrong")).form(&form).send().await.unwrap();
    r.expect_json(401).await;
}

/// What `traffic` must have left in the token path's counters.
fn assert_token_counts(token_issuer: &Scrape) {
    let s = token_issuer;
    assert_eq!(s.kind("nmos_auth_tokens_issued"), "counter");
    assert_eq!(s.get("nmos_auth_tokens_issued_total", &[("grant_type", "client_credentials")]), 3.0);
    let refused = |grant: &str, error: &str| {
        s.value("nmos_auth_token_requests_refused_total", &[("grant_type", grant), ("error", error)])
    };
    assert_eq!(refused("client_credentials", "invalid_client"), Some(2.0));
    assert_eq!(refused("unsupported", "unsupported_grant_type"), Some(1.0));
    assert_eq!(refused("none", "invalid_request"), Some(1.0));
    assert_eq!(refused("password", "invalid_grant"), Some(6.0));
}

fn assert_gateway_counts(gateway: &Scrape) {
    let s = gateway;
    assert_eq!(s.kind("nmos_auth_http_request_duration_seconds"), "histogram");
    // By status class: 3 tokens; 2 wrong secrets, 2 malformed requests and 6 wrong passwords.
    let count = |status: &str| {
        let labels = [("route", TOKEN), ("method", "POST"), ("status", status)];
        s.value("nmos_auth_http_request_duration_seconds_count", &labels)
    };
    assert_eq!((count("2xx"), count("4xx"), count("5xx")), (Some(3.0), Some(10.0), None), "{}", s.text);
    let inf = [("route", TOKEN), ("method", "POST"), ("status", "2xx"), ("le", "+Inf")];
    assert_eq!(s.get("nmos_auth_http_request_duration_seconds_bucket", &inf), 3.0);
    assert_eq!(s.get("nmos_auth_oauth_errors_total", &[("error", "invalid_client")]), 2.0);
    assert_eq!(s.get("nmos_auth_oauth_errors_total", &[("error", "invalid_grant")]), 6.0);
}

fn assert_identity_counts(identity: &Scrape) {
    let pair = [("limit", "username_at_address")];
    assert_eq!(identity.get("nmos_auth_sign_in_lockouts_total", &pair), 1.0);
    assert_eq!(identity.get("nmos_auth_sign_ins_refused_total", &pair), 1.0);
    assert_eq!(identity.get("nmos_auth_sign_in_lockouts_active", &pair), 1.0);
    assert_eq!(identity.get("nmos_auth_sign_in_lockouts_active", &[("limit", "username")]), 0.0);
}

fn assert_keys_readings(keys: &Scrape) {
    let now = nmos_auth_core::now_unix() as f64;
    assert_eq!(keys.get("nmos_auth_signing_keys", &[("state", "active")]), 1.0);
    assert_eq!(keys.get("nmos_auth_signing_keys", &[("state", "next")]), 0.0);
    let age = keys.get("nmos_auth_signing_key_age_seconds", &[]);
    assert!((0.0..600.0).contains(&age), "a new key's age: {age}");
    // The default schedule: a new key 30 days after the first started signing.
    let next = keys.get("nmos_auth_signing_key_next_rotation_timestamp_seconds", &[]);
    let in_days = (next - now) / 86400.0;
    assert!((29.9..30.01).contains(&in_days), "next rotation in {in_days} days");
}

fn assert_process_readings(s: &Scrape) {
    let now = nmos_auth_core::now_unix() as f64;
    assert_eq!(s.get("nmos_auth_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    let rss = s.get("process_resident_memory_bytes", &[]);
    assert!((1e6..1e9).contains(&rss), "resident memory {rss}");
    let started = s.get("process_start_time_seconds", &[]);
    assert!((now - 600.0..=now + 2.0).contains(&started), "started at {started}, now {now}");
    assert!(s.get("process_open_fds", &[]) > 3.0);
    assert!(s.get("process_cpu_seconds_total", &[]) > 0.0);
}

async fn one_process(backend: Backend) {
    let dir = TempDir::new("metrics");
    let config = test_config(backend, dir.path()).await;
    let (gateway, metrics) = (stable_listener(), stable_listener());
    let (port, metrics_port) = (gateway.local_addr().unwrap().port(), metrics.local_addr().unwrap().port());
    drop((gateway, metrics));
    let log = dir.path().join("serve.log");
    let child = nmos_auth(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--legacy-password-grant", "true", "serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = ServeProcess { child, log };
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/readyz"), "the server").await;
    let created = nmos_auth(&config).args(["admin", "create-initial-access-token"]).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let printed = String::from_utf8(created.stdout).unwrap();
    let client = traffic(&base, printed.lines().last().unwrap().trim()).await;

    let scrape = Scrape::of(metrics_port).await;
    assert_token_counts(&scrape);
    assert_gateway_counts(&scrape);
    assert_identity_counts(&scrape);
    assert_keys_readings(&scrape);
    assert_process_readings(&scrape);
    assert_eq!(scrape.get("nmos_auth_clients", &[("status", "approved")]), 2.0);
    assert_eq!(scrape.get("nmos_auth_clients", &[("status", "pending")]), 0.0);
    assert_eq!(scrape.get("nmos_auth_dependency_up", &[("dependency", "database")]), 1.0);
    // In-process calls between the services are timed too.
    let signed = [("service", "nmos.auth.v1.Keys"), ("method", "Sign")];
    assert_eq!(scrape.get("nmos_auth_grpc_server_duration_seconds_count", &signed), 3.0);

    prometheus_reads(metrics_port, dir.path(), &base, &client).await;
    drop(server);
}

#[tokio::test]
async fn one_process_on_sqlite_counts_what_it_did() {
    one_process(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_process_on_postgres_counts_what_it_did() {
    one_process(Backend::Postgres).await;
}

/// A real Prometheus scrapes the server every second with the chart's alert rules loaded:
/// every rule evaluates without error, and every query of the chart's dashboard is valid and
/// finds the series it draws (but the two that only show rare events).
async fn prometheus_reads(metrics_port: u16, dir: &Path, base: &str, client: &(String, String)) {
    let listener = stable_listener();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = dir.join("prometheus.yml");
    let rules = chart_file("alerts.yaml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: nmos-auth\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
        ),
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let _prometheus = ServeProcess { child, log };
    let api = format!("http://127.0.0.1:{port}/api/v1");
    wait_for(&format!("http://127.0.0.1:{port}/-/ready"), "Prometheus").await;
    let http = http_client();
    let query = |q: String| {
        let http = http.clone();
        let api = api.clone();
        async move {
            let r = http.post(format!("{api}/query")).form(&[("query", q.as_str())]).send().await.unwrap();
            let body = r.expect_json(200).await;
            assert_eq!(body["status"], "success", "{q}: {body}");
            body["data"]["result"].as_array().unwrap().clone()
        }
    };
    // Enough scrapes for a rate over 30 s to have two points.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query("count_over_time(up{job=\"nmos-auth\"}[30s]) >= 5 and up == 1".into()).await;
        if !up.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape 127.0.0.1:{metrics_port}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let issued = query("sum(nmos_auth_tokens_issued_total)".into()).await;
    assert_eq!(issued[0]["value"][1], "3", "{issued:?}");
    // Tokens while Prometheus watches, so that rates, ratios and quantiles have something to
    // work on: each dashboard query must then come out as a number, not NaN.
    more_tokens(base, client, 5).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while query("sum(nmos_auth_tokens_issued_total) == 8".into()).await.is_empty() {
        assert!(Instant::now() < deadline, "Prometheus did not see the further tokens");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let r = http.get(format!("{api}/rules")).send().await.unwrap().expect_json(200).await;
    let loaded: Vec<&Value> =
        r["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(loaded.len(), 10, "{r}");
    for rule in &loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    let dashboard: Value = serde_json::from_slice(&std::fs::read(chart_file("dashboard.json")).unwrap()).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "30s").replace("$job", "nmos-auth");
            let result = query(expr.clone()).await;
            let rare = ["Rows purged by housekeeping", "Scrapes missing a service's readings"].contains(&title);
            let finite =
                |r: &Value| r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(f64::is_finite);
            assert!(rare || result.iter().any(finite), "the panel {title:?} finds no number: {expr}: {result:?}");
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}

/// In the split deployment each process serves its own metrics: the counts land in the process
/// that did the work, and a peer that stops answering shows as 0 in its callers' metrics.
#[tokio::test]
async fn split_processes_each_serve_their_own() {
    use crate::harness::TestApp;
    let mut app = TestApp::spawn_split_with_env(&[("NMOS_AUTH_LEGACY_PASSWORD_GRANT", "true")]).await;
    traffic(&app.base, &app.initial_access_token().await).await;
    let ports = app.deployment().metrics_ports;
    let port = |role: &str| ports[ROLES.iter().position(|r| *r == role).unwrap()];

    let token_issuer = Scrape::of(port("token-issuer")).await;
    assert_token_counts(&token_issuer);
    assert_process_readings(&token_issuer);
    // The HTTP requests were the gateway's.
    assert_eq!(token_issuer.samples("nmos_auth_http_request_duration_seconds"), 0, "{}", token_issuer.text);
    assert_gateway_counts(&Scrape::of(port("gateway")).await);
    assert_identity_counts(&Scrape::of(port("identity")).await);
    assert_keys_readings(&Scrape::of(port("keys")).await);
    let clients = Scrape::of(port("client-registry")).await;
    assert_eq!(clients.get("nmos_auth_clients", &[("status", "approved")]), 2.0);
    assert_eq!(token_issuer.get("nmos_auth_dependency_up", &[("dependency", "database")]), 1.0);

    // Each peer is asked every 2 s: up once the token issuer has seen them all (it may have
    // started before them), then identity's loss seen within seconds. Read from the raw text:
    // a series not there yet counts as not seen.
    let peers = ["nmos.auth.v1.Keys", "nmos.auth.v1.ClientRegistry", "nmos.auth.v1.Identity"];
    let seen_up = || async {
        let url = format!("http://127.0.0.1:{}/metrics", port("token-issuer"));
        let text = http_client().get(&url).send().await.unwrap().text().await.unwrap();
        let up = |peer: &str| {
            let prefix = format!("nmos_auth_dependency_up{{dependency=\"{peer}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<f64>().ok())
        };
        (peers.map(up), text.clone())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (up, text) = seen_up().await;
        if up == [Some(1.0); 3] {
            break;
        }
        assert!(Instant::now() < deadline, "the token issuer does not see its peers up:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.deployment().kill("identity");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (up, text) = seen_up().await;
        if up == [Some(1.0), Some(1.0), Some(0.0)] {
            break;
        }
        assert!(Instant::now() < deadline, "the token issuer does not see identity down:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
