//! Test harness: a real server on a free port, on SQLite or on a throwaway Postgres cluster.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use nmos_auth::Server;
use nmos_auth_client_registry::ClientRegistryService;
use nmos_auth_identity::IdentityService;
use nmos_auth_token_issuer::{Peers, TokenIssuerService};

use crate::deployment::Deployment;
use nmos_auth_core::Config;
use nmos_auth_core::secret::Secret;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `nmos-auth serve` in this process, on SQLite.
    Sqlite,
    /// `nmos-auth serve` in this process, on Postgres.
    Postgres,
    /// Every service as its own OS process, on Postgres, with mutual TLS between them.
    Split,
}

/// Generates one test per deployment for each named `async fn(Backend)`: the one-process
/// server on SQLite and on Postgres, and the split deployment.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        crate::harness::store_backend_tests!($($name),*);
        mod split {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Split).await
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// One test per store backend (for tests of the one-process server and its commands).
macro_rules! store_backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use store_backend_tests;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "nmos-auth-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed server certificate for `subject_alt_name` (e.g. `IP:127.0.0.1`), made by
/// openssl in `dir`: the paths of the certificate and its key (PEM).
pub fn server_certificate(dir: &Path, common_name: &str, subject_alt_name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &format!("/CN={common_name}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .args(["-addext", &format!("subjectAltName={subject_alt_name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

pub fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// A free port for a process that may have to bind it again after a restart, held until the
/// listener is dropped. It is chosen below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be taken, once let go, by the local end of any outgoing
/// connection on the machine, and the restarted process would find it in use.
///
/// No port is handed out twice in one test run: a port is let go before the process that is
/// to bind it starts (and a restarted process binds its old ports again), and meanwhile a test
/// running alongside must not be given it.
pub fn stable_listener() -> TcpListener {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    assert!(ephemeral > 2048, "the ephemeral port range starts at {ephemeral}: no room below it");
    let (low, high) = (1024.max(ephemeral.saturating_sub(15_000)), ephemeral);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(handed_out.len() < usize::from(high - low) / 2, "the test run has used up its ports");
    loop {
        let port = low + u16::from_le_bytes(nmos_auth_core::secret::random_bytes::<2>()) % (high - low);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            handed_out.push(port);
            return listener;
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

/// As the `postgres` user when we are root (Postgres refuses to run as root).
fn pg_command(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    dirs.sort();
    dirs.pop().expect(
        "no PostgreSQL server binaries under /usr/lib/postgresql; install them (apt-get install postgresql) \
         or set NMOS_AUTH_TEST_POSTGRES_URL; scripts/test does this",
    )
}

/// The admin URL of a Postgres cluster for this test process: NMOS_AUTH_TEST_POSTGRES_URL,
/// or a throwaway cluster started here and stopped by a watchdog when this process exits.
fn postgres_cluster() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("NMOS_AUTH_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) => PgCluster::start().url,
    })
}

/// A throwaway Postgres cluster, stopped (and deleted) by a watchdog when this process exits.
pub struct PgCluster {
    /// The admin URL (database `postgres`).
    pub url: String,
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    /// The server's command-line options (port, socket directory, settings).
    options: String,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = postgres_bin_dir();
        let root = is_root();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nmos-auth-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            run(Command::new("chown").args(["postgres:"]).arg(&dir));
        }
        run(pg_command(&bin.join("initdb"), root).arg("-D").arg(dir.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));
        // Stopped and started again by some tests: a port no outgoing connection takes meanwhile.
        let port = stable_listener().local_addr().unwrap().port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let postgres = format!("{} -D {} {options}", bin.join("postgres").display(), dir.join("data").display());
        let pg_ctl = format!("{} -D {} -m immediate -w stop", bin.join("pg_ctl").display(), dir.join("data").display());
        let (postgres, pg_ctl) = if root {
            (format!("runuser -u postgres -- {postgres}"), format!("runuser -u postgres -- {pg_ctl}"))
        } else {
            (postgres, pg_ctl)
        };
        // The watchdog shell outlives this process just long enough to stop the cluster.
        let watchdog = format!(
            "{postgres} >{log} 2>&1 & while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {pg_ctl} >/dev/null 2>&1; rm -rf {dir}",
            log = dir.join("server.log").display(),
            pid = std::process::id(),
            dir = dir.display()
        );
        // Deliberately not waited for: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the Postgres watchdog");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "Postgres did not start; see {}", dir.join("server.log").display());
            std::thread::sleep(Duration::from_millis(100));
        }
        PgCluster { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, bin, root, options }
    }

    /// Restarts the server; open connections are cut (fast shutdown).
    pub fn restart(&self) {
        run(pg_command(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("restart.log"))
            .args(["-m", "fast", "-w", "restart"]));
    }

    /// Stops the server (fast shutdown: open connections are cut) until [`Self::start_again`].
    pub fn stop(&self) {
        run(pg_command(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]));
    }

    /// Starts the server again after [`Self::stop`]; returns once it accepts connections.
    pub fn start_again(&self) {
        run(pg_command(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("restart.log"))
            .args(["-o", &self.options, "-w", "start"]));
    }

    /// A fresh, empty database in this cluster.
    pub async fn database(&self) -> String {
        create_database(&self.url).await
    }
}

/// A fresh, empty Postgres database.
pub async fn postgres_database() -> String {
    create_database(postgres_cluster()).await
}

async fn create_database(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("t_{}", nmos_auth_core::secret::random_token::<9>().to_lowercase().replace(['-', '_'], "x"));
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connecting to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// The `nmos-auth` command on `config`'s data directory and database, with nothing else from
/// this process's environment (and no mDNS).
pub fn nmos_auth(config: &Config) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
    c.arg("--data-dir")
        .arg(&config.data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NMOS_AUTH_MDNS", "false");
    if let Some(url) = &config.database_url {
        c.env("NMOS_AUTH_DATABASE_URL", url.expose());
    }
    c
}

/// A config for a test server on `backend`, in `dir`.
pub async fn test_config(backend: Backend, dir: &Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        database_url: match backend {
            Backend::Sqlite => None,
            Backend::Postgres | Backend::Split => Some(Secret::new(postgres_database().await)),
        },
        audience: vec!["*.example.com".into(), "https://*.local".into()],
        // Tests do not advertise on the host's network; the discovery test uses its own namespaces.
        mdns: false,
        ..Config::default()
    }
}

/// The services, in this process, for what tests do as an operator would with `nmos-auth
/// admin` (in the split deployment: opened on the same database as the processes).
pub struct Handles {
    pub identity: Arc<IdentityService>,
    pub clients: Arc<ClientRegistryService>,
    pub token_issuer: Arc<TokenIssuerService>,
    /// Where each internal gRPC service listens, with the loopback transport.
    pub grpc: Option<nmos_auth::GrpcAddrs>,
}

pub enum Running {
    InProcess(Server),
    Split(Deployment),
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub server: Handles,
    pub running: Running,
    pub dir: TempDir,
    pub backend: Backend,
    /// Extra environment of the split deployment's processes.
    env: Vec<(String, String)>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = TempDir::new("app");
        let mut config = test_config(backend, dir.path()).await;
        edit(&mut config);
        TestApp::start(config, dir, backend, Vec::new()).await
    }

    /// The split deployment, its processes started with `env` added.
    pub async fn spawn_split_with_env(env: &[(&str, &str)]) -> TestApp {
        let dir = TempDir::new("app");
        let config = test_config(Backend::Split, dir.path()).await;
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TestApp::start(config, dir, Backend::Split, env).await
    }

    async fn start(mut config: Config, dir: TempDir, backend: Backend, env: Vec<(String, String)>) -> TestApp {
        let listener = free_listener();
        let addr = listener.local_addr().unwrap();
        config.listen = addr;
        let scheme = if config.tls_enabled() { "https" } else { "http" };
        let base = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        let (server, running) = if backend == Backend::Split {
            let deployment = Deployment::start(&mut config, dir.path(), &env, listener);
            deployment.wait_ready(&format!("{scheme}://{addr}")).await;
            (split_handles(&config).await, Running::Split(deployment))
        } else {
            let server = Server::start(config.clone(), listener).await.expect("server starts");
            let handles = Handles {
                identity: server.identity.clone(),
                clients: server.clients.clone(),
                token_issuer: server.token_issuer.clone(),
                grpc: server.grpc,
            };
            (handles, Running::InProcess(server))
        };
        TestApp { base, http: http_client(), config, server, running, dir, backend, env }
    }

    /// Stops the server and starts a new one on the same data (directory and database).
    pub async fn restart(self) -> TestApp {
        let TestApp { config, running, dir, backend, env, .. } = self;
        match running {
            Running::InProcess(server) => server.shutdown().await.expect("clean shutdown"),
            Running::Split(mut deployment) => deployment.stop(),
        }
        TestApp::start(config, dir, backend, env).await
    }

    /// The split deployment's logs (empty for the one-process server).
    pub fn deployment_logs(&self) -> String {
        match &self.running {
            Running::Split(deployment) => deployment.logs(),
            Running::InProcess(_) => String::new(),
        }
    }

    /// The split deployment's processes.
    pub fn deployment(&mut self) -> &mut Deployment {
        match &mut self.running {
            Running::Split(deployment) => deployment,
            Running::InProcess(_) => panic!("not a split deployment"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The issuer identifier, as the metadata and every token's `iss` say it.
    pub fn issuer(&self) -> String {
        self.url("/x-nmos/auth/v1.0")
    }

    pub fn auth_url(&self, endpoint: &str) -> String {
        self.url(&format!("/x-nmos/auth/v1.0/{endpoint}"))
    }

    pub async fn initial_access_token(&self) -> String {
        self.server.clients.create_initial_access_token(3600, "test", "operator:test").await.unwrap().0
    }

    /// Registers a client with a fresh initial access token; returns the 201 body.
    pub async fn register(&self, metadata: Value) -> Value {
        let token = self.initial_access_token().await;
        let response =
            self.http.post(self.auth_url("register")).bearer_auth(token).json(&metadata).send().await.unwrap();
        response.expect_json(201).await
    }

    /// A registered machine client (client_credentials, client_secret_basic): (id, secret).
    pub async fn machine_client(&self, scope: &str) -> (String, String) {
        let body = self
            .register(json!({
                "client_name": "Test Node", "grant_types": ["client_credentials"],
                "response_types": ["none"], "scope": scope,
            }))
            .await;
        (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned())
    }

    /// `nmos-auth admin <args>` as an operator runs it against this server: through the running
    /// services (the one-process server's admin socket in its data directory; the split
    /// deployment's services with the `admin` certificate). Its output.
    pub fn admin_output(&self, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        command.arg("--data-dir").arg(&self.config.data_dir);
        if let Some(file) = &self.config.key_encryption_key_file {
            command.arg("--key-encryption-key-file").arg(file);
        }
        if let Running::Split(deployment) = &self.running {
            command.args(deployment.operator_args());
        }
        if let Some(url) = &self.config.database_url {
            command.env("NMOS_AUTH_DATABASE_URL", url.expose());
        }
        command.arg("admin").args(args).output().unwrap()
    }

    /// The same, which must succeed.
    pub fn admin_command(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A machine client whose policy allows administrators' tokens (set with the admin
    /// command), and its credentials.
    pub async fn admin_client(&self) -> (String, String) {
        let (id, secret) = self.machine_client("registration").await;
        // Through the running registry, which forgets what it cached of the client at once.
        self.admin_command(&["set-client-policy", &id, "--admin"]);
        (id, secret)
    }

    /// A valid one-time setup code for the first administrator's sign-up (a new one, made as
    /// the server makes the one it prints at start).
    pub async fn setup_code(&self) -> String {
        self.server.identity.first_administrator_setup().await.unwrap().expect("a server without users")
    }

    /// The setup code the split deployment's identity service logged when it started.
    pub fn printed_setup_code(&self) -> String {
        let logs = self.deployment_logs();
        let at = logs.find(" setup_code=").expect("the identity service logged a setup code") + " setup_code=".len();
        logs[at..].split_whitespace().next().expect("the code").to_owned()
    }

    /// A confidential client that may introspect any client's tokens (a resource server, RFC
    /// 7662), and its credentials.
    pub async fn introspector(&self) -> (String, String) {
        let (id, secret) = self.machine_client("registration").await;
        self.admin_command(&["set-client-policy", &id, "--introspect"]);
        (id, secret)
    }

    pub async fn token(&self, client_id: &str, secret: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.auth_url("token")).basic_auth(client_id, Some(secret)).form(form).send().await.unwrap()
    }

    pub async fn jwks(&self) -> Value {
        self.get_json(&self.auth_url("jwks")).await
    }

    /// The claims of the access token in a token response, verified with PyJWT against the
    /// served JWKS, this issuer and an audience the test config allows.
    pub async fn verified_claims(&self, token_response: &Value) -> Value {
        let token = token_response["access_token"].as_str().expect("an access token");
        pyjwt_verify(token, &self.jwks().await, &self.issuer(), "*.example.com")["claims"].clone()
    }

    /// GETs `url`, which must answer 200 with JSON.
    pub async fn get_json(&self, url: &str) -> Value {
        self.http.get(url).send().await.unwrap().expect_json(200).await
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Checks a token with PyJWT (a JWT implementation we did not write, sharing none of our
/// code) against the served JWK Set; returns `{"header": ..., "claims": ...}`.
pub fn pyjwt_verify(token: &str, jwks: &Value, issuer: &str, audience: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys, jwt
d = json.load(sys.stdin)
header = jwt.get_unverified_header(d["token"])
keys = [k for k in jwt.PyJWKSet.from_dict(d["jwks"]).keys if k.key_id == header["kid"]]
if len(keys) != 1:
    sys.exit("no JWK with kid %r" % header.get("kid"))
claims = jwt.decode(d["token"], keys[0].key, algorithms=["RS512"], audience=d["audience"], issuer=d["issuer"],
                    options={"require": ["iss", "sub", "aud", "exp", "iat"]})
print(json.dumps({"header": header, "claims": claims}))
"#;
    let input = json!({"token": token, "jwks": jwks, "issuer": issuer, "audience": audience});
    run_python(SCRIPT, &input, &[])
}

/// Runs a Python script (Debian's python3, with PyJWT and Authlib) that reads JSON on stdin
/// and prints JSON; panics with its stderr if it fails.
pub fn run_python(script: &str, input: &Value, env: &[(&str, &str)]) -> Value {
    let python = std::env::var("NMOS_AUTH_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let mut child = Command::new(&python)
        .args(["-c", script])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python} (apt-get install python3-jwt python3-authlib): {e}"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts an OAuth error response: status, `error` code, no-store, JSON.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> reqwest::header::HeaderMap {
    let headers = response.headers().clone();
    let body = response.expect_json(status).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"], code, "{body}");
    headers
}

/// Reading a response in a test: its status first, and the body shown when it is not the one
/// expected (an error body says why a request failed, where a missing field would not).
pub(crate) trait ExpectJson {
    /// The JSON body, after checking that the status is `status`.
    async fn expect_json(self, status: u16) -> Value;
}

impl ExpectJson for reqwest::Response {
    async fn expect_json(self, status: u16) -> Value {
        let (actual, url) = (self.status(), self.url().clone());
        let text = self.text().await.unwrap_or_else(|e| format!("<body unreadable: {e}>"));
        assert_eq!(actual.as_u16(), status, "{url} answered {actual}: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{url} answered {actual} with a body that is not JSON ({e}): {text}"))
    }
}

/// In-process handles on the split deployment's database (its processes are already up, so
/// the signing key exists and is only loaded here).
async fn split_handles(config: &Config) -> Handles {
    use nmos_auth_core::grpc::in_process;
    use nmos_auth_proto::client_registry_client::ClientRegistryClient;
    use nmos_auth_proto::identity_client::IdentityClient;
    use nmos_auth_proto::keys_client::KeysClient;
    let (keys, identity, clients) = nmos_auth::open_services(config).await.expect("opening the stores");
    let peers = Peers {
        clients: ClientRegistryClient::new(in_process(clients.clone().into_server())),
        keys: KeysClient::new(in_process(keys.into_server())),
        identity: IdentityClient::new(in_process(identity.clone().into_server())),
    };
    let token_issuer = Arc::new(TokenIssuerService::open(config, peers).await.expect("opening the token store"));
    Handles { identity, clients, token_issuer, grpc: None }
}
