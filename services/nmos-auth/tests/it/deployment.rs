//! The split deployment as separate OS processes: `nmos-auth keys` (two replicas), `identity`,
//! `client-registry`, `token-issuer` and `gateway`, on Postgres, with mutual TLS on loopback
//! from certificates made by `nmos-auth dev-ca`'s code. One config file for all of them, as an
//! operator would write it; secrets in the environment. The token issuer signs through one keys
//! replica and the gateway publishes the JWKS of the other, so every test of tokens against the
//! JWKS also checks that the replicas agree.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nmos_auth_core::Config;

use crate::harness::stable_listener;

pub const ROLES: [&str; 5] = ["keys", "identity", "client-registry", "token-issuer", "gateway"];
/// The second keys replica's name here (it runs `nmos-auth keys`).
pub const SECOND_KEYS: &str = "keys-2";

pub struct Deployment {
    dir: PathBuf,
    config_file: PathBuf,
    database_url: String,
    grpc_ports: [u16; 4],
    /// Each gRPC service's plain-text health port.
    pub health_ports: [u16; 4],
    /// Each process's Prometheus port, in the order of [`ROLES`].
    pub metrics_ports: [u16; 5],
    /// The second keys replica's gRPC and health ports.
    second_keys: (u16, u16),
    /// Extra environment for every process (OpenTelemetry settings).
    env: Vec<(String, String)>,
    children: Vec<(&'static str, Child)>,
}

impl Deployment {
    /// Writes the config (peer URLs, CA, ports) into `config` and `dir`, and starts every process.
    /// `gateway` holds the gateway's port until every other port is chosen, so that none of
    /// them can be the same.
    pub fn start(
        config: &mut Config,
        dir: &Path,
        env: &[(String, String)],
        gateway: std::net::TcpListener,
    ) -> Deployment {
        let certs = dir.join("certs");
        if !certs.exists() {
            nmos_auth::devca::create(&certs).expect("creating the development CA");
        }
        // Every port is held until all are chosen (a port let go can be handed out again).
        let held = std::cell::RefCell::new(vec![gateway]);
        let port = || {
            let listener = stable_listener();
            let port = listener.local_addr().unwrap().port();
            held.borrow_mut().push(listener);
            port
        };
        let grpc_ports = match &config.keys_url {
            // A restart keeps the ports the config names.
            Some(_) => {
                let port_of =
                    |url: &Option<String>| url.as_deref().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
                [
                    port_of(&config.keys_url),
                    port_of(&config.identity_url),
                    port_of(&config.client_registry_url),
                    port_of(&config.token_issuer_url),
                ]
            }
            None => [port(), port(), port(), port()],
        };
        let url = |p: u16| Some(format!("https://127.0.0.1:{p}"));
        config.keys_url = url(grpc_ports[0]);
        config.identity_url = url(grpc_ports[1]);
        config.client_registry_url = url(grpc_ports[2]);
        config.token_issuer_url = url(grpc_ports[3]);
        config.grpc_ca = Some(certs.join("ca.pem"));
        let config_file = dir.join("nmos-auth.toml");
        std::fs::write(&config_file, toml::to_string(config).unwrap()).unwrap();
        let database_url = config.database_url.as_ref().expect("the split deployment runs on Postgres").expose().into();
        let mut deployment = Deployment {
            dir: dir.to_owned(),
            config_file,
            database_url,
            grpc_ports,
            health_ports: [port(), port(), port(), port()],
            metrics_ports: [port(), port(), port(), port(), port()],
            second_keys: (port(), port()),
            env: env.to_vec(),
            children: Vec::new(),
        };
        drop(held);
        for role in ROLES.into_iter().chain([SECOND_KEYS]) {
            deployment.spawn(role);
        }
        deployment
    }

    /// Starts (or restarts) one service.
    pub fn spawn(&mut self, role: &'static str) {
        self.children.retain(|(r, _)| *r != role);
        let certs = self.dir.join("certs");
        let service = if role == SECOND_KEYS { "keys" } else { role };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(role)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        command
            .arg("--config")
            .arg(&self.config_file)
            .arg("--grpc-cert")
            .arg(certs.join(format!("{service}.pem")))
            .arg("--grpc-key")
            .arg(certs.join(format!("{service}-key.pem")))
            .env("NMOS_AUTH_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "info,h2=warn,tower=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(i) = ROLES.iter().position(|r| *r == role) {
            command.args(["--metrics-listen", &format!("127.0.0.1:{}", self.metrics_ports[i])]);
        }
        if let Some(i) = ROLES.iter().position(|r| *r == role).filter(|&i| i < 4) {
            command.args(["--grpc-listen", &format!("127.0.0.1:{}", self.grpc_ports[i])]);
            command.args(["--health-listen", &format!("127.0.0.1:{}", self.health_ports[i])]);
        }
        if role == SECOND_KEYS {
            command.args(["--grpc-listen", &format!("127.0.0.1:{}", self.second_keys.0)]);
            command.args(["--health-listen", &format!("127.0.0.1:{}", self.second_keys.1)]);
        }
        if role == "gateway" {
            command.env("NMOS_AUTH_KEYS_URL", format!("https://127.0.0.1:{}", self.second_keys.0));
        }
        let child = command.arg(service).spawn().expect("starting a service");
        self.children.push((role, child));
    }

    /// The settings an operator's `nmos-auth admin` needs to reach the services: the config
    /// file (their URLs and the CA) and the `admin` certificate.
    pub fn operator_args(&self) -> Vec<std::ffi::OsString> {
        let certs = self.dir.join("certs");
        vec![
            "--config".into(),
            self.config_file.clone().into(),
            "--grpc-cert".into(),
            certs.join("admin.pem").into(),
            "--grpc-key".into(),
            certs.join("admin-key.pem").into(),
        ]
    }

    fn log_path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.log"))
    }

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        ROLES
            .iter()
            .chain([&SECOND_KEYS])
            .map(|role| format!("--- {role}\n{}", std::fs::read_to_string(self.log_path(role)).unwrap_or_default()))
            .collect()
    }

    /// Kills one service at once (SIGKILL: no draining).
    pub fn kill(&mut self, role: &str) {
        if let Some(i) = self.children.iter().position(|(r, _)| *r == role) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops every service with SIGTERM and checks each exits cleanly.
    pub fn stop(&mut self) {
        for (role, child) in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let status = child.wait().unwrap();
            assert!(status.success(), "{role} exited with {status}");
        }
        self.children.clear();
    }

    /// Waits until every process is ready: each gRPC service (both keys replicas) reports
    /// itself serving on its health port, and the gateway at `base` answers /readyz.
    pub async fn wait_ready(&self, base: &str) {
        // Readiness only: the gateway's certificate (in the HTTPS test) is checked by the test.
        let http = reqwest::Client::builder().no_proxy().danger_accept_invalid_certs(true).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ready = http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200);
            for port in self.health_ports.into_iter().chain([self.second_keys.1]) {
                ready = ready && serving(port).await;
            }
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the split deployment did not become ready:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the service with the plain-text health port `port` reports itself ready.
async fn serving(port: u16) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = nmos_auth_core::grpc::connect(([127, 0, 0, 1], port).into()).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = health.check(tonic_health::pb::HealthCheckRequest::default());
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32
    )
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // A failing test shows what the services said about it.
        if std::thread::panicking() {
            let said: Vec<String> = self
                .logs()
                .lines()
                .filter(|l| l.starts_with("---") || l.contains("WARN") || l.contains("ERROR"))
                .map(str::to_owned)
                .collect();
            eprintln!("the split deployment's warnings and errors:\n{}", said.join("\n"));
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
