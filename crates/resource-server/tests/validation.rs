//! The crate on its own: a stand-in authorization server (metadata and JWKS on loopback, keys
//! made here) and every way a token can be wrong. The workspace's tests check the crate against
//! the real server.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nmos_auth_resource_server::{KeyCache, ResourceServer, ServerLocation, Settings, UnknownKey};
use serde_json::{Value, json};

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pair.as_der().unwrap().as_ref())
    );
    let public = pair.public_key();
    let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS512", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())});
    Key { kid: kid.into(), encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk }
}

/// The stand-in server: its issuer and the JWKS it publishes (changeable).
struct Server {
    issuer: String,
    jwks: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_server(keys: &[&Key]) -> Server {
    start_server_named(keys, "").await
}

/// A stand-in server whose issuer (in its metadata and tokens) ends with `suffix` ("/", say).
async fn start_server_named(keys: &[&Key], suffix: &str) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/x-nmos/auth/v1.0{suffix}");
    let jwks = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()));
    let (i, j) = (issuer.clone(), jwks.clone());
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server/x-nmos/auth/v1.0",
            get(move || {
                let i = i.clone();
                let jwks_uri = format!("{}/jwks", i.trim_end_matches('/'));
                async move { axum::Json(json!({"issuer": i, "jwks_uri": jwks_uri})) }
            }),
        )
        .route(
            "/x-nmos/auth/v1.0/jwks",
            get(move || {
                let j = j.clone();
                async move { axum::Json(json!({"keys": *j.lock().unwrap()})) }
            }),
        );
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { issuer, jwks, task }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(issuer: &str) -> Value {
    json!({"iss": issuer, "sub": "node", "aud": ["*.studio.example"], "client_id": "node", "iat": now(),
           "exp": now() + 60, "scope": "registration",
           "x-nmos-registration": {"read": ["*"], "write": ["resource"]}})
}

fn sign(key: &Key, claims: &Value) -> String {
    let header = Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::RS512) };
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn resource_server(issuer: &str, unknown_key: UnknownKey) -> ResourceServer {
    let cache = KeyCache::new(ServerLocation::Issuer(issuer.into()), reqwest::Client::new())
        .with_timing(Duration::from_secs(3600), Duration::from_millis(100));
    let settings = Settings { leeway: Duration::from_secs(2), unknown_key, ..Settings::new("api.studio.example") };
    ResourceServer::with_cache(Arc::new(cache), settings)
}

async fn status(rs: &ResourceServer, method: http::Method, path: &str, token: Option<&str>) -> (u16, Option<String>) {
    let authorization = token.map(|t| format!("Bearer {t}"));
    match rs.check(&method, path, authorization.as_deref(), None).await {
        Ok(_) => (200, None),
        Err(denied) => (denied.status, denied.challenge),
    }
}

#[tokio::test]
async fn every_way_a_token_can_be_wrong() {
    let k1 = key("k1");
    let server = start_server(&[&k1]).await;
    let rs = resource_server(&server.issuer, UnknownKey::Wait(Duration::from_secs(2)));
    let path = "/x-nmos/registration/v1.3/resource";
    let good = sign(&k1, &claims(&server.issuer));
    assert_eq!(status(&rs, http::Method::POST, path, Some(&good)).await.0, 200);

    let (code, challenge) = status(&rs, http::Method::GET, path, None).await;
    assert_eq!((code, challenge.as_deref()), (401, Some("Bearer realm=\"nmos\"")), "no error code without a token");

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(&server.issuer);
        edit(&mut c);
        sign(&k1, &c)
    };
    let rogue = key("k1");
    let hs512 = jsonwebtoken::encode(
        &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS512) },
        &claims(&server.issuer),
        &EncodingKey::from_secret(b"shared").unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims(&server.issuer).to_string())
    );
    let cases = [
        ("expired", with(&|c| c["exp"] = json!(now() - 30))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 30))),
        ("issued in the future", with(&|c| c["iat"] = json!(now() + 30))),
        ("another issuer", with(&|c| c["iss"] = json!("https://evil.example/x-nmos/auth/v1.0"))),
        ("no client", with(&|c| c.as_object_mut().unwrap().remove("client_id").map(drop).unwrap_or(()))),
        ("a key from an unknown server", sign(&rogue, &claims(&server.issuer))),
        ("HS512", hs512),
        ("alg none", none),
        ("garbage", "not.a.token".into()),
    ];
    for (why, token) in cases {
        let (code, challenge) = status(&rs, http::Method::GET, path, Some(&token)).await;
        assert_eq!(code, 401, "{why}");
        assert!(challenge.unwrap().contains("error=\"invalid_token\""), "{why}");
    }
    // Within the leeway is fine.
    let close = with(&|c| c["exp"] = json!(now() - 1));
    assert_eq!(status(&rs, http::Method::GET, path, Some(&close)).await.0, 200, "leeway");
    // Valid, but for other hosts: 403 insufficient_scope (IS-10 §1.16, as nmos-testing expects).
    let elsewhere = with(&|c| c["aud"] = json!(["*.elsewhere.example"]));
    let (code, challenge) = status(&rs, http::Method::GET, path, Some(&elsewhere)).await;
    assert_eq!(code, 403, "wrong aud");
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""), "wrong aud");
    // Valid, but not for that path or method: 403 insufficient_scope.
    let (code, challenge) =
        status(&rs, http::Method::DELETE, "/x-nmos/registration/v1.3/resource/nodes/x", Some(&good)).await;
    assert_eq!(code, 403);
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));
    assert_eq!(status(&rs, http::Method::GET, "/x-nmos/query/v1.3/nodes", Some(&good)).await.0, 403);
    // Checking switched off: everything passes, no claims.
    let off = ResourceServer::with_cache(
        rs.keys().clone(),
        Settings { enabled: false, ..Settings::new("api.studio.example") },
    );
    assert_eq!(off.check(&http::Method::DELETE, path, None, None).await, Ok(None));
    // The token may come as access_token in the query (WebSocket upgrades).
    let query = format!("access_token={good}");
    assert!(rs.check(&http::Method::GET, path, None, Some(&query)).await.is_ok());
    server.task.abort();
}

#[tokio::test]
async fn rotation_is_followed_and_an_outage_is_ridden_out() {
    let (k1, k2) = (key("k1"), key("k2"));
    let server = start_server(&[&k1]).await;
    let rs = resource_server(&server.issuer, UnknownKey::Wait(Duration::from_secs(2)));
    let path = "/x-nmos/registration/v1.3/resource";
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(&server.issuer)))).await.0, 200);

    // The server publishes a new key and signs with it: an unknown kid is fetched (once).
    server.jwks.lock().unwrap().push(k2.jwk.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k2, &claims(&server.issuer)))).await.0, 200);

    // The server goes away: tokens keep passing on the cached keys.
    server.task.abort();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(&server.issuer)))).await.0, 200);
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k2, &claims(&server.issuer)))).await.0, 200);
    let rogue = key("k3");
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&rogue, &claims(&server.issuer)))).await.0, 401);

    // Or, by choice, an unknown key answers 503 with Retry-After at once.
    let server = start_server(&[&k1]).await;
    let rs = resource_server(&server.issuer, UnknownKey::Unavailable);
    let denied = rs
        .check(&http::Method::GET, path, Some(&format!("Bearer {}", sign(&k1, &claims(&server.issuer)))), None)
        .await
        .unwrap_err();
    assert_eq!(denied.status, 503);
    let response: http::Response<String> = denied.response();
    assert_eq!(response.headers()["retry-after"], "5");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(&server.issuer)))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_interceptor_gives_handlers_the_claims() {
    let k1 = key("k1");
    let server = start_server(&[&k1]).await;
    let rs = resource_server(&server.issuer, UnknownKey::Wait(Duration::from_secs(2)));
    let mut interceptor = rs.interceptor();
    let mut request = tonic::Request::new(());
    let bearer = format!("Bearer {}", sign(&k1, &claims(&server.issuer)));
    request.metadata_mut().insert("authorization", bearer.parse().unwrap());
    let allowed = interceptor(request).unwrap();
    let seen = allowed.extensions().get::<nmos_auth_resource_server::Claims>().unwrap();
    assert_eq!(seen.0["client_id"], "node");
    let refused = interceptor(tonic::Request::new(())).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut forged = tonic::Request::new(());
    let rogue = format!("Bearer {}", sign(&key("k1"), &claims(&server.issuer)));
    forged.metadata_mut().insert("authorization", rogue.parse().unwrap());
    assert_eq!(interceptor(forged).unwrap_err().code(), tonic::Code::Unauthenticated);
    server.task.abort();
}

/// Keys from a [`KeySource`] (not HTTP): used like fetched ones, re-read on an unknown kid,
/// kept while the source fails; tokens from another issuer are refused.
#[tokio::test]
async fn a_key_source_stands_in_for_http() {
    use nmos_auth_resource_server::{FetchError, JwksFuture, KeySource};
    struct Source {
        jwks: Mutex<Result<Vec<Value>, String>>,
    }
    impl KeySource for Source {
        fn issuer(&self) -> &str {
            "https://auth.studio.example"
        }
        fn jwks(&self) -> JwksFuture<'_> {
            let answer = self.jwks.lock().unwrap().clone();
            Box::pin(async move { answer.map(|keys| json!({ "keys": keys })).map_err(FetchError::Source) })
        }
    }
    let (k1, k2) = (key("k1"), key("k2"));
    let source = Arc::new(Source { jwks: Mutex::new(Ok(vec![k1.jwk.clone()])) });
    let cache = KeyCache::new(ServerLocation::Source(source.clone()), reqwest::Client::new())
        .with_timing(Duration::from_secs(3600), Duration::from_millis(100));
    let rs = ResourceServer::with_cache(Arc::new(cache), Settings::new("api.studio.example"));
    let path = "/x-nmos/registration/v1.3/resource";
    let issuer = source.issuer();
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(issuer)))).await.0, 200);
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims("https://other.example")))).await.0, 401);
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k2, &claims(issuer)))).await.0, 401);

    *source.jwks.lock().unwrap() = Ok(vec![k1.jwk.clone(), k2.jwk.clone()]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k2, &claims(issuer)))).await.0, 200);

    *source.jwks.lock().unwrap() = Err("the keys service is down".into());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(rs.keys().fetch().await.is_err());
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(issuer)))).await.0, 200);
    assert!(rs.validate(&sign(&k2, &claims(issuer))).await.unwrap().has_scope("registration"));
}

/// A fetch for an unknown key that takes longer than a request waits (a DNS-SD browse takes
/// 3 s against the default 2 s) still completes, and its keys serve the next request.
#[tokio::test]
async fn a_slow_fetch_outlives_the_request_that_started_it() {
    use nmos_auth_resource_server::{FetchError, JwksFuture, KeySource};
    struct Slow {
        jwks: Mutex<Vec<Value>>,
    }
    impl KeySource for Slow {
        fn issuer(&self) -> &str {
            "https://auth.studio.example"
        }
        fn jwks(&self) -> JwksFuture<'_> {
            let keys = self.jwks.lock().unwrap().clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, FetchError>(json!({ "keys": keys }))
            })
        }
    }
    let (k1, k2) = (key("k1"), key("k2"));
    let source = Arc::new(Slow { jwks: Mutex::new(vec![k1.jwk.clone()]) });
    let cache = KeyCache::new(ServerLocation::Source(source.clone()), reqwest::Client::new())
        .with_timing(Duration::from_secs(3600), Duration::from_millis(200));
    let settings =
        Settings { unknown_key: UnknownKey::Wait(Duration::from_millis(50)), ..Settings::new("api.studio.example") };
    let rs = ResourceServer::with_cache(Arc::new(cache), settings);
    rs.keys().fetch().await.unwrap();
    let path = "/x-nmos/registration/v1.3/resource";
    let issuer = source.issuer();
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(issuer)))).await.0, 200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A new key: the request gives up after 50 ms, while the fetch takes 300 ms.
    *source.jwks.lock().unwrap() = vec![k1.jwk.clone(), k2.jwk.clone()];
    let token = sign(&k2, &claims(issuer));
    assert_eq!(status(&rs, http::Method::GET, path, Some(&token)).await.0, 401, "not fetched in time");
    // Every later request also gives up after 50 ms: only a fetch that outlives its request
    // can bring the key.
    let mut code = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        code = status(&rs, http::Method::GET, path, Some(&token)).await.0;
        if code == 200 {
            break;
        }
    }
    assert_eq!(code, 200, "the fetch the first request started finished and was kept");
}

/// An issuer configured with a trailing slash, as its metadata names it, is read (without the
/// slash, RFC 8414 §3) and its tokens accepted.
#[tokio::test]
async fn an_issuer_with_a_trailing_slash_is_used_as_configured() {
    let k1 = key("k1");
    let server = start_server_named(&[&k1], "/").await;
    assert!(server.issuer.ends_with("/v1.0/"));
    let rs = resource_server(&server.issuer, UnknownKey::Wait(Duration::from_secs(2)));
    let path = "/x-nmos/registration/v1.3/resource";
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(&server.issuer)))).await.0, 200);
}

/// A server (or wherever its metadata's `jwks_uri` points) cannot make the API read more than
/// 256 KiB: a larger key set is refused, and the keys already held stay.
#[tokio::test]
async fn an_oversized_key_set_is_refused() {
    let k1 = key("k1");
    let server = start_server(&[&k1]).await;
    let rs = resource_server(&server.issuer, UnknownKey::Wait(Duration::from_secs(2)));
    rs.keys().fetch().await.unwrap();
    let padding: Vec<Value> =
        (0..3000).map(|i| json!({"kty": "oct", "kid": format!("pad{i}"), "k": "x".repeat(100)})).collect();
    server.jwks.lock().unwrap().extend(padding);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let refused = rs.keys().fetch().await.unwrap_err().to_string();
    assert!(refused.contains("more than 256 KiB"), "{refused}");
    let path = "/x-nmos/registration/v1.3/resource";
    assert_eq!(status(&rs, http::Method::GET, path, Some(&sign(&k1, &claims(&server.issuer)))).await.0, 200);
}
