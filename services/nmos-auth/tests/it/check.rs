//! `nmos-auth check`, the IS-10 conformance checker: against this server on every backend (no
//! FAIL; each WARN and SKIP explained), and against a test double that breaks one rule at a time,
//! each break caught by the check meant for it and by no other.
use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RSA_PKCS1_SHA512, RsaKeyPair};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use nmos_auth_check::{Options, Person, Report, Verdict};
use nmos_auth_core::{Access, NmosApi};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{Backend, TempDir, TestApp, backend_tests, server_certificate};

backend_tests!(this_server_passes);

/// The checks that may not PASS against this server over plain HTTP, and why.
const EXPLAINED: [(&str, Verdict); 4] = [
    // The tests run plain HTTP on loopback; IS-10 wants TLS in a plant (HTTPS: its own test).
    ("tls.https", Verdict::Warn),
    ("tls.versions", Verdict::Skip),
    // mDNS is only browsed when asked for (its own test, in network namespaces: discovery.rs).
    ("discovery.mdns", Verdict::Skip),
    // Unicast DNS-SD is looked up only in a domain given (its own test, against Knot: discovery.rs).
    ("discovery.unicast_dns_sd", Verdict::Skip),
];

async fn this_server_passes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rights = [(NmosApi::Registration, Access::Write), (NmosApi::Query, Access::Read)];
    app.server.identity.create_user("alice", "alice's long password", false, &rights, "operator:test").await.unwrap();
    let options = Options {
        url: app.url(""),
        initial_access_token: Some(app.initial_access_token().await),
        person: Some(person(&app)),
        ..Default::default()
    };
    let report = nmos_auth_check::run(&options).await;
    for outcome in &report.outcomes {
        let explained = EXPLAINED.iter().any(|(id, verdict)| *id == outcome.id && *verdict == outcome.verdict);
        assert!(outcome.verdict == Verdict::Pass || explained, "{}", report.table());
    }
    assert!(!report.failed(), "{}", report.table());
    // Everything that can run here ran: registration, tokens, revocation, RFC 7592, CORS, and
    // the authorization code flow with a person.
    for id in [
        "registration.created",
        "registration.management",
        "token.rs512",
        "token.revocation",
        "cors.preflight",
        "authorize.pkce_required",
        "authorize.redirect_uri",
        "authorize.code",
        "token.pkce_verifier",
        "token.code_replay",
        "token.refresh_rotation",
    ] {
        assert_eq!(report.verdict(id), Some(Verdict::Pass), "{id}\n{}", report.table());
    }
}

/// The person the checker asks to sign in and approve: alice at a browser on this machine. She
/// signs in once, approves the first request, is sent by the checker's callback on to the
/// second, and approves that too.
fn person(app: &TestApp) -> Person {
    let (base, signin, authorize) = (app.url(""), app.auth_url("signin"), app.auth_url("authorize"));
    let open = move |url: &str| {
        let (base, signin, authorize, url) = (base.clone(), signin.clone(), authorize.clone(), url.to_owned());
        tokio::spawn(async move {
            let absolute = |location: &str| {
                if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() }
            };
            let mut browser = Browser::new();
            let to_signin = browser.get(&url).await;
            assert_eq!(to_signin.status, 302, "a valid request, signed out: to sign in\n{}", to_signin.body);
            let form = browser.get(&absolute(to_signin.location.as_deref().unwrap())).await;
            assert_eq!(form.status, 200, "{}", form.body);
            let fields = vec![
                ("csrf".to_owned(), form.field("csrf")),
                ("next".to_owned(), form.field("next")),
                ("username".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "alice's long password".to_owned()),
            ];
            let signed_in = browser.post(&signin, &fields).await;
            assert_eq!(signed_in.status, 302, "{}", signed_in.body);
            let mut consent = browser.get(&absolute(signed_in.location.as_deref().unwrap())).await;
            for round in 0..2 {
                assert_eq!(consent.status, 200, "the consent page\n{}", consent.body);
                let mut fields = consent.hidden_fields();
                fields.push(("decision".to_owned(), "approve".to_owned()));
                let approved = browser.post(&authorize, &fields).await;
                assert_eq!(approved.status, 302, "{}", approved.body);
                let callback = browser.get(approved.location.as_deref().unwrap()).await;
                if round == 0 {
                    assert_eq!(callback.status, 302, "the checker sends the browser on\n{}", callback.body);
                    consent = browser.get(callback.location.as_deref().unwrap()).await;
                } else {
                    assert_eq!(callback.status, 200, "the checker's last page\n{}", callback.body);
                }
            }
        });
    };
    Person { open: Arc::new(open), within: std::time::Duration::from_secs(60) }
}

/// The command itself: its table, JSON and JUnit XML, and its exit status.
#[tokio::test]
async fn the_command_reports_for_people_and_for_ci() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let iat = app.initial_access_token().await;
    let run = |format: &str, url: String, iat: Option<String>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_nmos-auth"));
        command.args(["check", &url, "--format", format]).env_remove("NMOS_AUTH_CHECK_INITIAL_ACCESS_TOKEN");
        if let Some(iat) = iat {
            command.env("NMOS_AUTH_CHECK_INITIAL_ACCESS_TOKEN", iat);
        }
        async move { command.output().await.unwrap() }
    };
    let table = run("table", app.issuer(), Some(iat.clone())).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&table.stderr));
    assert!(text.contains("PASS  token.rs512"), "{text}");
    assert!(text.contains("WARN  tls.https"), "{text}");

    let json = run("json", app.url(""), Some(iat.clone())).await;
    assert_eq!(json.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["summary"]["fail"], 0, "{report}");
    assert!(report["checks"].as_array().unwrap().iter().any(|c| c["id"] == "token.aud" && c["verdict"] == "PASS"));

    // Without the initial access token the registration and token checks are skipped, with why.
    let junit = run("junit", app.url("/.well-known/oauth-authorization-server/x-nmos/auth/v1.0"), None).await;
    let xml = String::from_utf8_lossy(&junit.stdout);
    assert_eq!(junit.status.code(), Some(0), "{xml}");
    assert!(xml.contains("<testsuite name=\"nmos-auth check"), "{xml}");
    assert!(xml.contains("give --initial-access-token"), "{xml}");

    // A server that is not there: a FAIL, exit status 1.
    let gone = run("table", "http://127.0.0.1:9".into(), None).await;
    assert_eq!(gone.status.code(), Some(1), "{}", String::from_utf8_lossy(&gone.stdout));
    assert!(String::from_utf8_lossy(&gone.stdout).contains("FAIL  discovery.well_known"));
}

/// One rule the double breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    Nothing,
    /// Tokens name another issuer.
    WrongIss,
    /// Keys and tokens for RS256 (Keycloak's default), not RS512.
    Rs256,
    /// `aud` a single string (RFC 7519 allows it, IS-10 does not).
    AudString,
    /// `key_ops` an array (RFC 7517's type, not IS-10's schema's).
    KeyOpsArray,
    /// No CORS at all.
    NoCors,
    /// A wrong client secret still gets a token.
    AcceptsBadClient,
    /// A redirect URI with a fragment is registered.
    AcceptsFragment,
    /// The two metadata URLs answer differently.
    MetadataDiffers,
    /// Tokens live a day.
    LongLived,
    /// A public client that sends no code_challenge still gets a code.
    PkceOptional,
    /// The code_verifier is not checked against the challenge.
    VerifierIgnored,
    /// Redirect URIs matched by prefix, not exactly.
    PrefixRedirect,
    /// A refresh gives the same refresh token back.
    NoRotation,
    /// A code can be exchanged twice.
    CodeReusable,
}

/// What each break must fail, and nothing else.
fn caught_by(b: Break) -> &'static [&'static str] {
    match b {
        Break::Nothing => &[],
        Break::WrongIss => &["token.iss"],
        Break::Rs256 => &["jwks.rs512", "token.rs512"],
        Break::AudString => &["token.aud"],
        Break::KeyOpsArray => &["jwks.key_ops"],
        Break::NoCors => &["cors.preflight"],
        Break::AcceptsBadClient => &["token.bad_client"],
        Break::AcceptsFragment => &["registration.errors"],
        Break::MetadataDiffers => &["discovery.selector"],
        Break::LongLived => &["token.lifetime"],
        Break::PkceOptional => &["authorize.pkce_required"],
        Break::VerifierIgnored => &["token.pkce_verifier"],
        Break::PrefixRedirect => &["authorize.redirect_uri"],
        Break::NoRotation => &["token.refresh_rotation"],
        Break::CodeReusable => &["token.code_replay"],
    }
}

struct Double {
    broken: Break,
    base: String,
    key: RsaKeyPair,
    n: String,
    e: String,
    flow: std::sync::Mutex<Flow>,
}

/// The double's authorization code flow: it approves every valid request at once (no sign-in).
#[derive(Default)]
struct Flow {
    /// The redirect URI of the client registered last.
    redirect_uri: Option<String>,
    /// Code -> (S256 challenge, exchanged already).
    codes: std::collections::HashMap<String, (Option<String>, bool)>,
    refresh_tokens: BTreeSet<String>,
    issued: u64,
}

impl Flow {
    fn next(&mut self, what: &str) -> String {
        self.issued += 1;
        format!("{what}-{}", self.issued)
    }
}

const SECRET: &str = "the-one-secret-of-the-double";
const CLIENT_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

impl Double {
    fn issuer(&self) -> String {
        format!("{}/x-nmos/auth/v1.0", self.base)
    }

    fn metadata(&self, bare: bool) -> Value {
        let issuer = self.issuer();
        let mut metadata = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "registration_endpoint": format!("{issuer}/register"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["registration", "query", "node", "connection"],
        });
        if bare && self.broken == Break::MetadataDiffers {
            metadata["scopes_supported"] = json!(["registration"]);
        }
        metadata
    }

    fn jwks(&self) -> Value {
        let mut key = json!({"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS512", "n": self.n, "e": self.e});
        if self.broken == Break::Rs256 {
            key["alg"] = json!("RS256");
        }
        if self.broken == Break::KeyOpsArray {
            key["key_ops"] = json!(["verify"]);
        }
        json!({"keys": [key]})
    }

    fn sign(&self, claims: &Value) -> String {
        let (alg, algorithm) =
            if self.broken == Break::Rs256 { ("RS256", &RSA_PKCS1_SHA256) } else { ("RS512", &RSA_PKCS1_SHA512) };
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key.sign(algorithm, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn token(&self) -> Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let lifetime = if self.broken == Break::LongLived { 86_400 } else { 600 };
        let claims = json!({
            "iss": if self.broken == Break::WrongIss { "https://elsewhere.example/x-nmos/auth/v1.0".to_owned() } else { self.issuer() },
            "sub": CLIENT_ID,
            "client_id": CLIENT_ID,
            "aud": if self.broken == Break::AudString { json!("*.plant.example") } else { json!(["*.plant.example"]) },
            "iat": now,
            "exp": now + lifetime,
            "scope": "registration",
            "x-nmos-registration": {"read": ["*"], "write": ["*"]},
        });
        json!({"access_token": self.sign(&claims), "token_type": "Bearer", "expires_in": lifetime, "scope": "registration"})
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

async fn token(State(double): State<Arc<Double>>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if matches!(field("grant_type").as_str(), "authorization_code" | "refresh_token") {
        return public_grant(&double, &field);
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let credentials = authorization
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if credentials != format!("{CLIENT_ID}:{SECRET}") && double.broken != Break::AcceptsBadClient {
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"double\""));
        return response;
    }
    if !form.iter().any(|(k, v)| k == "grant_type" && v == "client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let mut response = Json(double.token()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The code and refresh grants of the double's public client.
fn public_grant(double: &Double, field: &dyn Fn(&str) -> String) -> Response {
    let mut flow = double.flow.lock().unwrap();
    let refresh_token = if field("grant_type") == "authorization_code" {
        let Some((challenge, exchanged)) = flow.codes.get_mut(&field("code")) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let derived = URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, field("code_verifier").as_bytes()));
        if (*exchanged && double.broken != Break::CodeReusable)
            || (challenge.as_ref().is_some_and(|c| *c != derived) && double.broken != Break::VerifierIgnored)
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        *exchanged = true;
        flow.next("refresh")
    } else {
        let presented = field("refresh_token");
        if !flow.refresh_tokens.remove(&presented) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        if double.broken == Break::NoRotation { presented } else { flow.next("refresh") }
    };
    flow.refresh_tokens.insert(refresh_token.clone());
    let mut answer = double.token();
    answer["refresh_token"] = json!(refresh_token);
    Json(answer).into_response()
}

/// The double's authorization endpoint: every valid request approved at once.
async fn authorize(
    State(double): State<Arc<Double>>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut flow = double.flow.lock().unwrap();
    let sent = params.get("redirect_uri").cloned().unwrap_or_default();
    let known = flow.redirect_uri.as_ref().is_some_and(|registered| {
        if double.broken == Break::PrefixRedirect { sent.starts_with(registered.as_str()) } else { sent == *registered }
    });
    if !known {
        return (StatusCode::BAD_REQUEST, "unknown redirect_uri").into_response();
    }
    let mut back = reqwest::Url::parse(&sent).unwrap();
    let challenge = params.get("code_challenge").cloned();
    let method = params.get("code_challenge_method").map(String::as_str);
    let refused = (challenge.is_none() && double.broken != Break::PkceOptional)
        || (challenge.is_some() && method != Some("S256"));
    if refused {
        back.query_pairs_mut().append_pair("error", "invalid_request");
    } else {
        let code = flow.next("code");
        flow.codes.insert(code.clone(), (challenge, false));
        back.query_pairs_mut().append_pair("code", &code);
    }
    back.query_pairs_mut().append_pair("state", params.get("state").map(String::as_str).unwrap_or_default());
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

async fn register(State(double): State<Arc<Double>>, Json(body): Json<Value>) -> Response {
    let fragment =
        body["redirect_uris"].as_array().into_iter().flatten().any(|u| u.as_str().is_some_and(|u| u.contains('#')));
    if fragment && double.broken != Break::AcceptsFragment {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri");
    }
    if let Some(uri) = body["redirect_uris"][0].as_str() {
        double.flow.lock().unwrap().redirect_uri = Some(uri.to_owned());
    }
    let mut answer = body.clone();
    answer["client_id"] = json!(CLIENT_ID);
    answer["client_secret"] = json!(SECRET);
    answer["client_secret_expires_at"] = json!(0);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// CORS as IS-10 wants it: pre-flights answered without authentication, Authorization allowed,
/// Access-Control-Allow-Origin on everything.
async fn cors(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    response
}

/// Serves the double on a loopback port until the test ends.
async fn spawn_double(broken: Break) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = key.public_key();
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    let double = Arc::new(Double { broken, base: base.clone(), key, n, e, flow: Default::default() });
    let mut app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(|State(d): State<Arc<Double>>| async move { Json(d.metadata(true)) }),
        )
        .route(
            "/.well-known/oauth-authorization-server/x-nmos/auth/v1.0",
            get(|State(d): State<Arc<Double>>| async move { Json(d.metadata(false)) }),
        )
        .route("/x-nmos/auth/v1.0/jwks", get(|State(d): State<Arc<Double>>| async move { Json(d.jwks()) }))
        .route("/x-nmos/auth/v1.0/token", post(token))
        .route("/x-nmos/auth/v1.0/register", post(register))
        .route("/x-nmos/auth/v1.0/revoke", post(|| async { StatusCode::OK }))
        .route("/x-nmos/auth/v1.0/authorize", get(authorize))
        .with_state(double);
    if broken != Break::NoCors {
        app = app.layer(axum::middleware::from_fn(cors));
    }
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The double's person: a browser that follows every redirect (the double asks for no sign-in).
fn browser() -> Person {
    let open = |url: &str| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let page = http.get(&url).send().await.unwrap();
            assert_eq!(page.status(), 200, "the checker's last page: {:?}", page.text().await);
        });
    };
    Person { open: Arc::new(open), within: std::time::Duration::from_secs(30) }
}

fn failed(report: &Report) -> BTreeSet<&'static str> {
    report.outcomes.iter().filter(|o| o.verdict == Verdict::Fail).map(|o| o.id).collect()
}

#[tokio::test]
async fn each_broken_rule_is_caught_by_its_own_check() {
    for broken in [
        Break::Nothing,
        Break::WrongIss,
        Break::Rs256,
        Break::AudString,
        Break::KeyOpsArray,
        Break::NoCors,
        Break::AcceptsBadClient,
        Break::AcceptsFragment,
        Break::MetadataDiffers,
        Break::LongLived,
        Break::PkceOptional,
        Break::VerifierIgnored,
        Break::PrefixRedirect,
        Break::NoRotation,
        Break::CodeReusable,
    ] {
        let base = spawn_double(broken).await;
        let report = nmos_auth_check::run(&Options { url: base, person: Some(browser()), ..Default::default() }).await;
        let expected: BTreeSet<&str> = caught_by(broken).iter().copied().collect();
        assert_eq!(failed(&report), expected, "{broken:?}:\n{}", report.table());
    }
}

/// Over HTTPS, with the plant's CA given: the certificate chain and name verified, and the TLS
/// versions the gateway accepts.
#[tokio::test]
async fn over_https_the_certificate_and_tls_versions_are_checked() {
    let certs = TempDir::new("check-tls");
    let (cert, key) = server_certificate(certs.path(), "localhost", "DNS:localhost,IP:127.0.0.1");
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let options = Options {
        url: app.url(""),
        initial_access_token: Some(app.initial_access_token().await),
        ca_pem: Some(std::fs::read(&cert).unwrap()),
        ..Default::default()
    };
    let report = nmos_auth_check::run(&options).await;
    assert!(!report.failed(), "{}", report.table());
    for id in ["tls.https", "tls.versions", "token.rs512"] {
        assert_eq!(report.verdict(id), Some(Verdict::Pass), "{id}\n{}", report.table());
    }
    let versions = report.outcomes.iter().find(|o| o.id == "tls.versions").unwrap();
    assert!(versions.detail.contains("TLS 1.3 and TLS 1.2"), "{}", versions.detail);

    // Without the CA the certificate is not trusted: the first fetch fails and says why.
    let untrusted = nmos_auth_check::run(&Options { url: app.url(""), ..Default::default() }).await;
    assert_eq!(untrusted.verdict("discovery.well_known"), Some(Verdict::Fail), "{}", untrusted.table());
}
