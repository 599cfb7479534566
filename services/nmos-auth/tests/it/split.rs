//! The split deployment's own guarantees (its HTTP flows run in every other module): internal
//! gRPC refuses peers without a certificate from the CA and callers a method is not meant for,
//! and lets an operator's tool in with an administrator's token instead of a certificate;
//! a killed service is an outage the gateway answers promptly, not a hang, and it recovers by
//! itself; the services reconnect after Postgres restarts; no acknowledged registration is lost.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nmos_auth_core::grpc::connect_url;
use nmos_auth_core::mtls::Service;
use nmos_auth_core::secret::Secret;
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Backend, ExpectJson, PgCluster, TempDir, TestApp};

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
    let mut app = TestApp::spawn(Backend::Split).await;
    let certs = app.dir.path().join("certs");
    // The container health check: each service's plain-text health port, and the gateway.
    for (i, role) in crate::deployment::ROLES.iter().enumerate() {
        let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        match app.deployment().health_ports.get(i) {
            Some(port) => check.args(["--health-listen", &format!("127.0.0.1:{port}")]),
            None => check.args(["--listen", &app.config.listen.to_string()]),
        };
        let status = check.arg("healthcheck").status().unwrap();
        assert!(status.success(), "{role} is healthy");
    }
    let nothing = crate::harness::free_listener().local_addr().unwrap().to_string();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_nmos-auth"))
        .args(["--health-listen", &nothing, "healthcheck"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "nothing listening is unhealthy");
    let other_ca = TempDir::new("other-ca");
    nmos_auth::devca::create(other_ca.path()).unwrap();
    let keys_url = app.config.keys_url.clone().unwrap();
    let keys = |tls: ClientTlsConfig| KeysClient::new(connect_url(&keys_url, Some(tls)).unwrap());
    let sign = pb::SignRequest { claims_json: br#"{"sub":"nobody"}"#.to_vec() };

    // A peer with a valid certificate, calling what it is meant to call: served.
    let mut gateway = keys(tls(&certs, Some((&certs, "gateway")), Service::Keys));
    assert!(!gateway.get_jwks(pb::GetJwksRequest::default()).await.unwrap().get_ref().keys.is_empty());
    let mut health =
        HealthClient::new(connect_url(&keys_url, Some(tls(&certs, Some((&certs, "gateway")), Service::Keys))).unwrap());
    let status = health.check(HealthCheckRequest { service: "nmos.auth.v1.Keys".into() }).await.unwrap();
    assert_eq!(status.get_ref().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // A valid peer calling a method it may not call: PERMISSION_DENIED, and nothing signed.
    let denied = gateway.sign(sign.clone()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("gateway may not call /nmos.auth.v1.Keys/Sign"), "{denied:?}");
    let mut admin = keys(tls(&certs, Some((&certs, "admin")), Service::Keys));
    assert!(admin.get_jwks(pb::GetJwksRequest::default()).await.is_ok(), "an operator's certificate may read keys");
    assert_eq!(admin.sign(sign.clone()).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    // Managing the keys is an operator's (the admin certificate), or an administrator's the
    // gateway names; importing one, an operator's alone.
    let listed = admin.list_keys(pb::ListKeysRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].state, "active");
    let denied = gateway.list_keys(pb::ListKeysRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "nobody named: {denied:?}");
    let person = |admin| Some(pb::WebUser { username: "someone".into(), admin, account_created_at: 0 });
    let denied = gateway.list_keys(pb::ListKeysRequest { requested_by: person(false) }).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "not an administrator: {denied:?}");
    let listed = gateway.list_keys(pb::ListKeysRequest { requested_by: person(true) }).await.unwrap().into_inner();
    assert_eq!(listed.keys.len(), 1, "an administrator on the pages");
    let denied = gateway.import_key(pb::ImportKeyRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let issuer_url = app.config.token_issuer_url.clone().unwrap();
    let mut issuer_as_itself = TokenIssuerClient::new(
        connect_url(&issuer_url, Some(tls(&certs, Some((&certs, "token-issuer")), Service::TokenIssuer))).unwrap(),
    );
    let token = issuer_as_itself.token(pb::TokenRequest::default()).await.unwrap_err();
    assert_eq!(token.code(), tonic::Code::PermissionDenied, "only the gateway asks for tokens");

    // No certificate (administrators' tokens are off by default), or one from another CA: the
    // TLS handshake fails, a transport error rather than a gRPC status; nothing is served.
    for (why, client_tls) in [
        ("no client certificate", tls(&certs, None, Service::Keys)),
        ("a certificate from another CA", tls(&certs, Some((other_ca.path(), "token-issuer")), Service::Keys)),
    ] {
        let refused = keys(client_tls).sign(with_authorization("Bearer x.y.z", sign.clone())).await.unwrap_err();
        assert!(is_transport_error(&refused), "{why}: {refused:?}");
    }
    // Without TLS at all.
    let plain = KeysClient::new(connect_url(&keys_url.replace("https://", "http://"), None).unwrap())
        .get_jwks(pb::GetJwksRequest::default())
        .await;
    assert!(plain.is_err(), "a plain-text caller is not served");
    // And a server certificate must be the service the caller asked for.
    let wrong_name =
        keys(tls(&certs, Some((&certs, "gateway")), Service::Identity)).get_jwks(pb::GetJwksRequest::default()).await;
    assert!(wrong_name.is_err(), "the keys service cannot pose as the identity service");
}

/// Whether the call failed in the connection (a refused TLS handshake, say), not with a status
/// the server sent.
fn is_transport_error(status: &tonic::Status) -> bool {
    use nmos_auth_core::grpc::ChannelError;
    std::error::Error::source(status)
        .is_some_and(|e| matches!(e.downcast_ref::<ChannelError>(), Some(ChannelError::Transport(_))))
}

/// `message` with `authorization: <value>` in its metadata.
fn with_authorization<T>(value: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", value.parse().unwrap());
    request
}

/// An operator's tool outside the deployment, with no client certificate (`grpc_admin_tokens`
/// on): an administrator's token from this server lets it call what an administrator may, on
/// every service, as its own client whatever the request says; not what no administrator may
/// (signing, minting tokens, making another administrator). An NMOS token, a tampered or
/// garbled token, or none, is refused, and so is a valid one once its client is no longer an
/// administrator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_token_stands_in_for_a_certificate() {
    let app = TestApp::spawn_split_with_env(&[("NMOS_AUTH_GRPC_ADMIN_TOKENS", "true")]).await;
    let certs = app.dir.path().join("certs");
    let token = |(id, secret): (String, String), scope: &'static str| {
        let app = &app;
        async move {
            let form = [("grant_type", "client_credentials"), ("scope", scope)];
            let body = app.token(&id, &secret, &form).await.expect_json(200).await;
            format!("Bearer {}", body["access_token"].as_str().unwrap_or_else(|| panic!("{body}")))
        }
    };
    let (admin_id, admin_secret) = app.admin_client().await;
    let admin = token((admin_id.clone(), admin_secret.clone()), "nmos-auth:admin").await;
    let node = app.machine_client("registration").await;
    let node_id = node.0.clone();
    let nmos = token(node.clone(), "registration").await;
    let channel =
        |url: &Option<String>, service| connect_url(url.as_deref().unwrap(), Some(tls(&certs, None, service))).unwrap();
    let mut clients = ClientRegistryClient::new(channel(&app.config.client_registry_url, Service::ClientRegistry));
    let mut identity = IdentityClient::new(channel(&app.config.identity_url, Service::Identity));
    let mut keys = KeysClient::new(channel(&app.config.keys_url, Service::Keys));
    let mut issuer = TokenIssuerClient::new(channel(&app.config.token_issuer_url, Service::TokenIssuer));

    // What an administrator may call, on each service.
    let listed = clients.list_clients(with_authorization(&admin, pb::ListClientsRequest::default())).await.unwrap();
    assert!(listed.get_ref().clients.iter().any(|c| c.client_id == node_id));
    identity.list_users(with_authorization(&admin, pb::ListUsersRequest::default())).await.unwrap();
    let jwks = keys.get_jwks(with_authorization(&admin, pb::GetJwksRequest::default())).await.unwrap();
    assert!(!jwks.get_ref().keys.is_empty());
    let introspect = pb::IntrospectRequest {
        params: vec![pb::TokenParam { name: "token".into(), value: admin.trim_start_matches("Bearer ").into() }],
        client_authentication: Some(pb::ClientAuthentication {
            method: Some(pb::client_authentication::Method::Basic(pb::BasicCredentials {
                client_id: admin_id.clone(),
                client_secret: admin_secret.clone(),
            })),
        }),
    };
    let introspected = issuer.introspect(with_authorization(&admin, introspect)).await.unwrap().into_inner();
    let introspected: Value = serde_json::from_slice(&introspected.json).unwrap();
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["scope"], "nmos-auth:admin", "{introspected}");
    let mut health = HealthClient::new(channel(&app.config.identity_url, Service::Identity));
    let check = HealthCheckRequest { service: "nmos.auth.v1.Identity".into() };
    assert!(health.check(with_authorization(&admin, check)).await.is_ok());

    // The caller is the token's client, whatever the request says: bob is no administrator,
    // yet the change is made, and recorded as the client's. (The policy gives the node's tokens
    // this server's host as their audience, for the refusal below.)
    let host = reqwest::Url::parse(&app.issuer()).unwrap().host_str().unwrap().to_owned();
    let set = pb::SetClientPolicyRequest {
        client_id: node_id.clone(),
        policy: Some(pb::ClientPolicy { scope: "registration".into(), audience: vec![host], ..Default::default() }),
        requested_by: Some(pb::WebUser { username: "bob".into(), admin: false, account_created_at: 0 }),
    };
    let updated = clients.set_client_policy(with_authorization(&admin, set)).await.unwrap().into_inner();
    assert_eq!(updated.policy.unwrap().scope, "registration");
    let logs = app.deployment_logs();
    let audit = logs.lines().find(|l| l.contains("client_policy_set") && l.contains(&node_id));
    let audit = audit.expect("the policy change is audited");
    assert!(audit.contains(&format!("client:{admin_id}")) && !audit.contains("bob"), "{audit}");
    assert!(!logs.contains(admin.trim_start_matches("Bearer ")), "no token in the logs");

    // An administrator's token cannot make another administrator (else a leaked one could
    // outlive its client).
    let set = pb::SetClientPolicyRequest {
        client_id: node_id.clone(),
        policy: Some(pb::ClientPolicy { admin: true, ..Default::default() }),
        requested_by: None,
    };
    let denied = clients.set_client_policy(with_authorization(&admin, set)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // What no administrator may call.
    let sign = pb::SignRequest { claims_json: br#"{"sub":"nobody"}"#.to_vec() };
    let denied = keys.sign(with_authorization(&admin, sign.clone())).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let denied = issuer.token(with_authorization(&admin, pb::TokenRequest::default())).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // An NMOS token is for NMOS APIs, not this server ...
    let denied = clients.list_clients(with_authorization(&nmos, pb::ListClientsRequest::default())).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("not meant for this host"), "{denied:?}");
    // ... and even one whose audience names this server is no administrator's token (the policy
    // set above applies to its next token).
    let nmos = token(node, "registration").await;
    let denied = clients.list_clients(with_authorization(&nmos, pb::ListClientsRequest::default())).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("nmos-auth:admin"), "{denied:?}");

    // Tampered with (another client named, the signature kept), garbled, another scheme, none.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = admin.trim_start_matches("Bearer ").split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["client_id"] = json!(node_id);
    let tampered = format!("Bearer {}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    for (why, authorization) in [
        ("tampered", Some(tampered.as_str())),
        ("garbled", Some("Bearer not-a-token")),
        ("basic", Some("Basic YWRtaW46YWRtaW4=")),
        ("none", None),
    ] {
        let request = match authorization {
            Some(value) => with_authorization(value, pb::ListUsersRequest::default()),
            None => tonic::Request::new(pb::ListUsersRequest::default()),
        };
        let refused = identity.list_users(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{why}: {refused:?}");
    }

    // A disabled administrator's client (disabled as a compromised one would be): its
    // still-unexpired token is refused within a couple of seconds too.
    let (other_id, other_secret) = app.admin_client().await;
    let other = token((other_id.clone(), other_secret), "nmos-auth:admin").await;
    identity.list_users(with_authorization(&other, pb::ListUsersRequest::default())).await.unwrap();
    let disabled = app.admin_command(&["disable-client", &other_id]);
    assert!(disabled.contains(&format!("disabled {other_id}")), "{disabled}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match identity.list_users(with_authorization(&other, pb::ListUsersRequest::default())).await {
            Ok(_) => assert!(Instant::now() < deadline, "a disabled client's administrator token still works"),
            Err(status) => break status,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // The client is no longer an administrator's (an operator cleared its policy, in another
    // process): its still-unexpired token is refused within a couple of seconds, everywhere.
    app.admin_command(&["set-client-policy", &admin_id, "--clear"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match clients.list_clients(with_authorization(&admin, pb::ListClientsRequest::default())).await {
            Ok(_) => assert!(Instant::now() < deadline, "a former administrator's token still works"),
            Err(status) => break status,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("no longer"), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = keys.get_jwks(with_authorization(&admin, pb::GetJwksRequest::default())).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let logs = app.deployment_logs();
    assert!(logs.contains("grpc_call_refused"), "refusals are audited");
    assert!(!logs.contains(admin.trim_start_matches("Bearer ")), "no token in the logs");
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

/// A minimal OTLP/gRPC receiver: remembers each span (service, trace id, name) and the name
/// of each metric it is sent.
/// A span as received: the service that sent it, its trace id, its name.
type ReceivedSpan = (String, Vec<u8>, String);

#[derive(Clone, Default)]
struct OtlpSink {
    spans: Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
    metrics: Arc<std::sync::Mutex<Vec<String>>>,
}

fn service_name(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Any::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for OtlpSink {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span.trace_id, span.name));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService for OtlpSink {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse>,
        tonic::Status,
    > {
        let mut metrics = self.metrics.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            for scope in resource_metrics.scope_metrics {
                metrics.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// One token request through the split deployment is one trace: spans from the gateway, the
/// token issuer, the client registry and the keys service under one trace id, exported over
/// OTLP to a receiver this test runs; and the metrics arrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_request_is_one_trace_across_the_services() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let sink = OtlpSink::default();
    let listener = crate::harness::free_listener();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let incoming = tonic::transport::server::TcpIncoming::bind(addr).unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink.clone()))
        .add_service(MetricsServiceServer::new(sink.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(server);

    let endpoint = format!("http://{addr}");
    let mut app = TestApp::spawn_split_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ])
    .await;
    let (client_id, secret) = app.machine_client("registration").await;
    let r = app.token(&client_id, &secret, &[("grant_type", "client_credentials"), ("scope", "registration")]).await;
    assert_eq!(r.status(), 200);
    let r = app.token(&client_id, "wrong", &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 401);
    // SIGTERM: each process sends what it still holds before it exits.
    app.deployment().stop();

    let spans = sink.spans.lock().unwrap().clone();
    let sign = spans
        .iter()
        .find(|(service, _, name)| service == "nmos-auth-keys" && name == "nmos.auth.v1.Keys/Sign")
        .unwrap_or_else(|| panic!("no Sign span among {spans:?}"));
    let mut trace: Vec<(String, String)> =
        spans.iter().filter(|(_, id, _)| *id == sign.1).map(|(s, _, n)| (s.clone(), n.clone())).collect();
    trace.sort();
    let expected = [
        ("nmos-auth-client-registry", "nmos.auth.v1.ClientRegistry/AuthenticateClient"),
        ("nmos-auth-gateway", "POST /x-nmos/auth/v1.0/token"),
        ("nmos-auth-keys", "nmos.auth.v1.Keys/Sign"),
        ("nmos-auth-token-issuer", "nmos.auth.v1.TokenIssuer/Token"),
    ];
    for (service, name) in expected {
        assert!(
            trace.iter().any(|(s, n)| s == service && n == name),
            "no {service} span {name} in the trace {trace:?}"
        );
    }
    let metrics = sink.metrics.lock().unwrap().clone();
    for name in
        ["http.server.request.duration", "rpc.server.duration", "nmos_auth.tokens.issued", "nmos_auth.oauth.errors"]
    {
        assert!(metrics.iter().any(|m| m == name), "no metric {name} among {metrics:?}");
    }
}
