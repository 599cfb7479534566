//! Key lifecycle on a compressed clock: scheduled rotation with no valid token rejected by a
//! resource server that caches keys, removal of a compromised key, key-encryption key rotation,
//! and the housekeeping of expired rows.
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::harness::{Backend, ExpectJson, TestApp, backend_tests};

backend_tests!(
    rotation_rejects_no_valid_token,
    a_removed_key_is_gone_at_once,
    key_encryption_key_rotation,
    housekeeping_purges_expired_rows_in_batches
);

/// A resource server's key cache: the JWKS fetched on its own schedule, never on demand.
type KeyCache = Arc<RwLock<HashMap<String, DecodingKey>>>;

async fn fetch_keys(app: &TestApp) -> HashMap<String, DecodingKey> {
    let jwks: Value = app.get_json(&app.auth_url("jwks")).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let key = DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap()).unwrap();
            (k["kid"].as_str().unwrap().to_owned(), key)
        })
        .collect()
}

/// Checks a token against the cache only; the error says why it was rejected.
async fn check(cache: &KeyCache, token: &str) -> Result<String, String> {
    let kid = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?.kid.ok_or("no kid")?;
    let keys = cache.read().await;
    let key = keys.get(&kid).ok_or_else(|| format!("unknown kid {kid}"))?;
    let mut validation = Validation::new(Algorithm::RS512);
    validation.set_audience(&["*.example.com"]);
    jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| e.to_string())?;
    Ok(kid)
}

async fn token(app: &TestApp, client: &(String, String)) -> String {
    let r = app.token(&client.0, &client.1, &[("grant_type", "client_credentials"), ("scope", "registration")]).await;
    r.expect_json(200).await["access_token"].as_str().unwrap().to_owned()
}

/// Rotation every 5 s, keys published 4 s ahead: a resource server refreshing its keys every
/// second sees every token verify, through several rotations, while tokens are issued. (The
/// lead outlasts what a key takes to reach it: the schedule counts whole seconds, so up to one
/// is lost, then up to a second until the replica that the gateway asks re-reads the keys, and
/// up to a second until this resource server refreshes.)
async fn rotation_rejects_no_valid_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.key_rotation_period = 5;
        c.key_publish_lead = 4;
        c.key_retire_grace = 1;
        c.access_token_lifetime = 30;
    })
    .await;
    let client = app.machine_client("registration").await;
    let cache: KeyCache = Arc::new(RwLock::new(fetch_keys(&app).await));
    let started = Instant::now();
    let mut last_refresh = Instant::now();
    let (mut issued, mut rejected, mut kids) = (0, Vec::new(), BTreeSet::new());
    while started.elapsed() < Duration::from_secs(15) {
        if last_refresh.elapsed() >= Duration::from_secs(1) {
            *cache.write().await = fetch_keys(&app).await;
            last_refresh = Instant::now();
        }
        let token = token(&app, &client).await;
        issued += 1;
        match check(&cache, &token).await {
            Ok(kid) => {
                kids.insert(kid);
            }
            Err(why) => rejected.push(why),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{backend:?}: {issued} tokens, {} signing keys, {} rejected", kids.len(), rejected.len());
    assert!(rejected.is_empty(), "valid tokens rejected: {rejected:?}");
    assert!(kids.len() >= 3, "several rotations happened: {kids:?}");
    // Retired keys leave the JWKS once their tokens (30 s) and the grace are over; until then
    // every key that signed is still published.
    let published: BTreeSet<String> = fetch_keys(&app).await.into_keys().collect();
    assert!(kids.is_subset(&published), "retired keys stay published while their tokens live");
}

/// `nmos-auth admin keys ARGS` against the app, as an operator runs it.
fn admin_keys(app: &TestApp, args: &[&str]) -> std::process::Output {
    app.admin_output(&[&["keys"][..], args].concat())
}

/// The same, which must succeed; its output.
fn admin(app: &TestApp, args: &[&str]) -> String {
    let out = admin_keys(app, args);
    assert!(out.status.success(), "admin keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A compromised key, removed by an operator: gone from a fresh JWKS at once (its tokens stop
/// verifying), and no new token uses it. The JWKS may be cached only briefly.
async fn a_removed_key_is_gone_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.machine_client("registration").await;
    let r = app.http.get(app.auth_url("jwks")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = app.http.get(app.auth_url("jwks")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304, "unchanged keys: not modified");

    // A kid is a base64url thumbprint: one in 64 starts with '-', which is no option.
    let out = admin_keys(&app, &["remove", "-not-a-kid-here"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no signing key \"-not-a-kid-here\""), "{said}");

    let old = token(&app, &client).await;
    let cache: KeyCache = Arc::new(RwLock::new(fetch_keys(&app).await));
    let kid = check(&cache, &old).await.unwrap();
    let listed = admin(&app, &["list"]);
    assert!(listed.contains(&format!("{kid}\tactive")), "{listed}");
    admin(&app, &["remove", &kid]);

    // Each replica re-reads the keys every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = fetch_keys(&app).await;
        if !keys.contains_key(&kid) && !keys.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the removed key is still published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    *cache.write().await = fetch_keys(&app).await;
    assert!(check(&cache, &old).await.unwrap_err().contains("unknown kid"), "its tokens no longer verify");
    // The other keys replicas (the split deployment signs through another one than the JWKS
    // comes from) re-read the keys each second: within about a second none signs with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while jsonwebtoken::decode_header(&token(&app, &client).await).unwrap().kid.as_deref() == Some(kid.as_str()) {
        assert!(Instant::now() < deadline, "a new token still uses the removed key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    *cache.write().await = fetch_keys(&app).await;
    for _ in 0..5 {
        let new = token(&app, &client).await;
        assert_ne!(check(&cache, &new).await.unwrap(), kid, "no new token uses it");
    }
    let r = app.http.get(app.auth_url("jwks")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 200, "a changed key set has a new ETag");
    let listed = admin(&app, &["list"]);
    assert!(listed.contains(&format!("{kid}\tremoved")) && listed.contains("(by an operator)"), "{listed}");

    // Every published key has a certificate, as x5c and at certs.
    let certs: Value = app.get_json(&app.auth_url("certs")).await;
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), fetch_keys(&app).await.len());
    assert!(certs[0].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    let seed_route: Value = app.get_json(&app.url("/certs")).await;
    assert_eq!(seed_route.as_array().unwrap(), certs);

    // A key from the plant's PKI, with its certificate: published with its chain as x5c.
    let (key, chain) = (app.dir.path().join("plant-key.pem"), app.dir.path().join("plant-cert.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=plant JWT signer"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&chain)
        .output()
        .unwrap();
    assert!(made.status.success());
    // A chain for another key is refused (RFC 7517 §4.7: x5c must hold the key).
    let other = app.dir.path().join("other-cert.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=other"])
        .arg("-keyout")
        .arg(app.dir.path().join("other-key.pem"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = admin_keys(&app, &["import", "--key", key.to_str().unwrap(), "--chain", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not for this key"));
    let imported = admin(&app, &["import", "--key", key.to_str().unwrap(), "--chain", chain.to_str().unwrap()]);
    assert!(imported.contains("\tnext\t"), "{imported}");
    let kid = imported.split('\t').next().unwrap().to_owned();
    let der = std::process::Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&chain).output();
    let der = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.unwrap().stdout);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jwks = app.jwks().await;
        if let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) {
            assert_eq!(jwk["x5c"], serde_json::json!([der]));
            break;
        }
        assert!(Instant::now() < deadline, "the imported key is not published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Re-encrypting under a new key-encryption key: afterwards every key still signs and
/// verifies (with the new one), and the old one opens nothing stored.
async fn key_encryption_key_rotation(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let client = app.machine_client("registration").await;
    let before = token(&app, &client).await;
    let planned = admin(&app, &["rotate"]);
    assert!(planned.contains("\tnext\t"), "{planned}");

    let new_kek = app.dir.path().join("new-kek");
    std::fs::write(&new_kek, base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])).unwrap();
    let out = admin(&app, &["rotate-kek", "--new-key-file", new_kek.to_str().unwrap()]);
    assert!(out.contains("re-encrypted 2 signing keys"), "{out}");

    let old_config = app.config.clone();
    app.config.key_encryption_key_file = Some(new_kek);
    let app = app.restart().await;
    let after = token(&app, &client).await;
    let cache: KeyCache = Arc::new(RwLock::new(fetch_keys(&app).await));
    assert_eq!(check(&cache, &before).await, check(&cache, &after).await, "the same key signs, and verifies");
    assert_eq!(admin(&app, &["list"]).lines().count(), 2);
    let reopened = nmos_auth_keys::KeysService::open(&app.config).await.unwrap();
    assert_eq!(reopened.open_all().await.unwrap(), 2, "both keys (active and next) open with the new KEK");
    let old = nmos_auth_keys::KeysService::open(&old_config).await;
    let error = format!("{:#}", old.err().expect("the old key-encryption key opens nothing"));
    assert!(error.contains("cannot decrypt"), "{error}");
}

/// A burst of expired codes and refresh families, and audit rows past their retention, shrinks
/// to the live rows, purged in batches, while tokens keep being issued.
async fn housekeeping_purges_expired_rows_in_batches(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.machine_client("registration").await;
    let url = app.config.database_url("tokens");
    let now = nmos_auth_core::now_unix();
    let db = nmos_auth_core::db::Db::connect(&url).await.unwrap();
    macro_rules! on_db {
        ($sql:expr, $($bind:expr),*) => {
            match &db {
                nmos_auth_core::db::Db::Sqlite(pool) => { sqlx::query($sql)$(.bind($bind))*.execute(pool).await.unwrap(); }
                nmos_auth_core::db::Db::Postgres(pool) => { sqlx::query($sql)$(.bind($bind))*.execute(pool).await.unwrap(); }
            }
        };
    }
    for i in 0..260i64 {
        let expires_at = if i < 250 { now - 1000 } else { now + 600 };
        on_db!(
            "INSERT INTO tokens_authorization_codes (digest, client_id, username, redirect_uri, redirect_uri_sent, \
             scope, expires_at) VALUES ($1, 'c', 'u', 'https://x.example/cb', TRUE, 'query', $2)",
            i.to_be_bytes().to_vec(),
            expires_at
        );
        let expires_at = if i < 250 { now - 10_000 } else { now + 600 };
        on_db!(
            "INSERT INTO tokens_refresh_families (id, client_id, username, scope, created_at, expires_at) \
             VALUES ($1, 'c', 'u', 'query', $2, $3)",
            format!("family-{i}"),
            now - 20_000,
            expires_at
        );
        on_db!(
            "INSERT INTO tokens_refresh_tokens (digest, family_id, created_at) VALUES ($1, $2, $3)",
            format!("rt-{i}").into_bytes(),
            format!("family-{i}"),
            now - 20_000
        );
    }
    // The audit trail: 250 rows past the default 90 days' retention, 10 within it.
    for i in 0..260i64 {
        let at = if i < 250 { now - 91 * 86_400 } else { now - 89 * 86_400 };
        on_db!(
            "INSERT INTO tokens_audit (at, event, grant_type, client_id, subject, scope, jti) \
             VALUES ($1, 'issued', 'client_credentials', 'c', 'c', 'registration', $2)",
            at,
            format!("jti-{i}")
        );
    }
    let serving = {
        let (http, url, client) = (app.http.clone(), app.auth_url("token"), client.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                let r = http
                    .post(&url)
                    .basic_auth(&client.0, Some(&client.1))
                    .form(&[("grant_type", "client_credentials"), ("scope", "registration")])
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        })
    };
    let removed = app.server.token_issuer.housekeeping(100).await.unwrap();
    let removed: HashMap<&str, u64> = removed.into_iter().collect();
    // 250 of each with 100 per statement: the purge went on past one batch.
    assert_eq!(removed["tokens_authorization_codes"], 250);
    assert_eq!(removed["tokens_refresh_families"], 250);
    assert_eq!(removed["tokens_audit"], 250, "only the audit rows past their retention");
    assert!(serving.await.unwrap().iter().all(|s| *s == 200), "tokens were issued all along");
    let count = |table: &str| {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let db = db.clone();
        async move {
            match &db {
                nmos_auth_core::db::Db::Sqlite(pool) => {
                    sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await.unwrap()
                }
                nmos_auth_core::db::Db::Postgres(pool) => {
                    sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await.unwrap()
                }
            }
        }
    };
    assert_eq!(count("tokens_authorization_codes").await, 10, "the live codes stay");
    assert_eq!(count("tokens_refresh_families").await, 10, "the live families stay");
    assert_eq!(count("tokens_refresh_tokens").await, 10, "and their refresh tokens; the others went with theirs");
    // The 10 within the retention and one for each token issued meanwhile (written once the
    // audit log's batch is committed, which the token's answer waits for).
    assert_eq!(count("tokens_audit").await, 10 + 50, "the audit rows within their retention stay");
}
