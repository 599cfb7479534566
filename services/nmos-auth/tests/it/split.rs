//! The split deployment's own guarantees (its HTTP flows run in every other module): internal
//! gRPC refuses peers without a certificate from the CA and callers a method is not meant for;
//! a killed service is an outage the gateway answers promptly, not a hang, and it recovers by
//! itself; the services reconnect after Postgres restarts; no acknowledged registration is lost.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmos_auth_core::grpc::connect_url;
use nmos_auth_core::mtls::Service;
use nmos_auth_core::secret::Secret;
use nmos_auth_proto as pb;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Backend, PgCluster, TempDir, TestApp};

fn pem(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// A client TLS config presenting `who`'s certificate from `certs` (or none), trusting our CA.
fn tls(ca: &std::path::Path, certs: Option<(&std::path::Path, &str)>, peer: Service) -> ClientTlsConfig {
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(ca, "ca.pem"))).domain_name(peer.dns_name());
    if let Some((dir, who)) = certs {
        config =
            config.identity(Identity::from_pem(pem(dir, &format!("{who}.pem")), pem(dir, &format!("{who}-key.pem"))));
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_grpc_serves_only_the_callers_it_should() {
    let app = TestApp::spawn(Backend::Split).await;
    let certs = app.dir.path().join("certs");
    let other_ca = TempDir::new("other-ca");
    nmos_auth::devca::create(other_ca.path()).unwrap();
    let keys_url = app.config.keys_url.clone().unwrap();
    let keys = |tls: ClientTlsConfig| KeysClient::new(connect_url(&keys_url, Some(tls)).unwrap());
    let sign = pb::SignRequest { claims_json: br#"{"sub":"nobody"}"#.to_vec() };

    // A peer with a valid certificate, calling what it is meant to call: served.
    let mut gateway = keys(tls(&certs, Some((&certs, "gateway")), Service::Keys));
    assert!(!gateway.get_jwks(pb::GetJwksRequest {}).await.unwrap().get_ref().keys.is_empty());
    let mut health =
        HealthClient::new(connect_url(&keys_url, Some(tls(&certs, Some((&certs, "gateway")), Service::Keys))).unwrap());
    let status = health.check(HealthCheckRequest { service: "nmos.auth.v1.Keys".into() }).await.unwrap();
    assert_eq!(status.get_ref().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // A valid peer calling a method it may not call: PERMISSION_DENIED, and nothing signed.
    let denied = gateway.sign(sign.clone()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("gateway may not call /nmos.auth.v1.Keys/Sign"), "{denied:?}");
    let mut admin = keys(tls(&certs, Some((&certs, "admin")), Service::Keys));
    assert!(admin.get_jwks(pb::GetJwksRequest {}).await.is_ok(), "an operator's certificate may read keys");
    assert_eq!(admin.sign(sign.clone()).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let issuer_url = app.config.token_issuer_url.clone().unwrap();
    let mut issuer_as_itself = TokenIssuerClient::new(
        connect_url(&issuer_url, Some(tls(&certs, Some((&certs, "token-issuer")), Service::TokenIssuer))).unwrap(),
    );
    let token = issuer_as_itself.token(pb::TokenRequest::default()).await.unwrap_err();
    assert_eq!(token.code(), tonic::Code::PermissionDenied, "only the gateway asks for tokens");

    // No certificate, or one from another CA: the TLS handshake fails; nothing is served.
    for (why, client_tls) in [
        ("no client certificate", tls(&certs, None, Service::Keys)),
        ("a certificate from another CA", tls(&certs, Some((other_ca.path(), "token-issuer")), Service::Keys)),
    ] {
        let refused = keys(client_tls).sign(sign.clone()).await.unwrap_err();
        // The connection is refused (a transport error), not answered with a gRPC status.
        let transport = std::error::Error::source(&refused).is_some_and(|e| e.is::<tonic::transport::Error>());
        assert!(transport, "{why}: {refused:?}");
    }
    // Without TLS at all.
    let plain = KeysClient::new(connect_url(&keys_url.replace("https://", "http://"), None).unwrap())
        .get_jwks(pb::GetJwksRequest {})
        .await;
    assert!(plain.is_err(), "a plain-text caller is not served");
    // And a server certificate must be the service the caller asked for.
    let wrong_name =
        keys(tls(&certs, Some((&certs, "gateway")), Service::Identity)).get_jwks(pb::GetJwksRequest {}).await;
    assert!(wrong_name.is_err(), "the keys service cannot pose as the identity service");
}

/// What one token or registration request got, and how long it took.
#[derive(Debug)]
struct Outcome {
    status: u16,
    error: String,
    took: Duration,
    client_id: Option<String>,
}

/// Token requests and registrations running in the background.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn count(&self) -> usize {
        self.outcomes.lock().await.len()
    }

    /// Stops the load and returns every outcome, in order.
    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.outcomes.lock().await)
    }
}

/// Requests tokens and registers clients as fast as two connections allow until stopped.
fn load(app: &TestApp, client: (String, String), initial_access_token: String) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for register in [false, true] {
        let (stop, outcomes, http) = (stop.clone(), outcomes.clone(), app.http.clone());
        let (token_url, register_url) = (app.auth_url("token"), app.auth_url("register"));
        let (client, iat) = (client.clone(), initial_access_token.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let request = if register {
                    http.post(&register_url).bearer_auth(&iat).json(
                        &json!({"client_name": "load", "grant_types": ["client_credentials"], "scope": "registration"}),
                    )
                } else {
                    http.post(&token_url)
                        .basic_auth(&client.0, Some(&client.1))
                        .form(&[("grant_type", "client_credentials"), ("scope", "registration")])
                };
                let (status, body) = match request.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.json::<Value>().await.unwrap_or(Value::Null))
                    }
                    Err(e) => (0, json!({"error": e.to_string()})),
                };
                let client_id = (status == 201).then(|| body["client_id"].as_str().unwrap().to_owned());
                let error = body["error"].as_str().unwrap_or_default().to_owned();
                outcomes.lock().await.push(Outcome { status, error, took: started.elapsed(), client_id });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    Load { stop, outcomes, tasks }
}

/// Waits (up to 30 s) for a token request to succeed again.
async fn tokens_flow(app: &TestApp, client: &(String, String)) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let r =
            app.token(&client.0, &client.1, &[("grant_type", "client_credentials"), ("scope", "registration")]).await;
        if r.status() == 200 {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tokens did not flow again within 30 s");
}

/// Every registration acknowledged with 201 is in the registry.
async fn no_registration_lost(app: &TestApp, outcomes: &[Outcome]) -> usize {
    let acknowledged: Vec<&String> = outcomes.iter().filter_map(|o| o.client_id.as_ref()).collect();
    for id in &acknowledged {
        assert!(app.server.clients.get(id).await.unwrap().is_some(), "registration {id} was acknowledged and lost");
    }
    acknowledged.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_token_issuer_is_an_outage_not_a_hang() {
    let mut app = TestApp::spawn(Backend::Split).await;
    let client = app.machine_client("registration").await;
    let iat = app.initial_access_token().await;
    let load = load(&app, client.clone(), iat);
    tokio::time::sleep(Duration::from_millis(500)).await;

    app.deployment().kill("token-issuer");
    let killed = load.count().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.deployment().spawn("token-issuer");
    let recovery = tokens_flow(&app, &client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    let during: Vec<&Outcome> = outcomes[killed..].iter().collect();
    let unavailable = during.iter().filter(|o| o.status == 503).count();
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    eprintln!(
        "token issuer killed: {unavailable} answers 503 of {} after the kill; slowest answer {slowest:?}; \
         tokens again {recovery:?} after the restart",
        during.len()
    );
    assert!(unavailable > 0, "the outage was answered with 503");
    for o in outcomes.iter() {
        match o.status {
            200 | 201 => {}
            503 => assert_eq!(o.error, "temporarily_unavailable", "{o:?}"),
            _ => panic!("neither served nor temporarily_unavailable: {o:?}\n{}", app.deployment_logs()),
        }
        assert!(o.took < Duration::from_secs(5), "a request hung: {o:?}");
    }
    assert!(outcomes.last().unwrap().status / 100 == 2, "served again after the restart");
    assert!(no_registration_lost(&app, &outcomes).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reconnect_when_postgres_restarts() {
    let cluster = PgCluster::start();
    let database = cluster.database().await;
    let app = TestApp::spawn_with(Backend::Split, |c| c.database_url = Some(Secret::new(database))).await;
    let client = app.machine_client("registration").await;
    let iat = app.initial_access_token().await;
    let load = load(&app, client.clone(), iat);
    tokio::time::sleep(Duration::from_millis(500)).await;

    tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    let recovery = tokens_flow(&app, &client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status / 100 != 2).collect();
    eprintln!(
        "Postgres restarted: {} of {} requests not served; tokens again {recovery:?} after",
        failed.len(),
        outcomes.len()
    );
    for o in &failed {
        let errors: Vec<String> =
            app.deployment_logs().lines().filter(|l| l.contains("ERROR")).map(str::to_owned).collect();
        assert_eq!((o.status, o.error.as_str()), (503, "temporarily_unavailable"), "{o:?}\n{}", errors.join("\n"));
    }
    assert!(no_registration_lost(&app, &outcomes).await > 0);
    let readiness = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readiness.status(), 200);
}
