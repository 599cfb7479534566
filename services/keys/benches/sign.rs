//! RS512 signing throughput on every core: the physical floor of the token endpoint.
//!
//! `cargo bench -p nmos-auth-keys --bench sign [-- SECONDS]` prints tokens/s for
//! - `raw`: aws-lc-rs RSASSA-PKCS1-v1_5 SHA-512 over a token-sized message, nothing else;
//! - `keys-service`: what the Sign RPC does (JWS assembly + signature, key parsed once);
//! - `jsonwebtoken`: `jsonwebtoken::encode`, which parses the private key on every call.
//!
//! `cargo bench -p nmos-auth-keys --bench sign -- serve ADDRESS` serves instead the ceiling of
//! any token endpoint on this machine: HTTP/1.1 (axum, as the gateway) where each POST is
//! answered with a freshly signed token in a token response of the same size as ours, and
//! nothing else (no client authentication, no audit, no internal calls). Measured with the
//! same load generator on the same cores (`scripts/bench` does), it tells what share of the
//! raw rate HTTP and the load generator leave to any server.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA512, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nmos_auth_core::Config;
use nmos_auth_core::secret::Secret;
use nmos_auth_keys::keyring::{self, SigningKey};

/// Runs `work` on every core for `secs` seconds; returns operations per second.
fn on_all_cores(secs: u64, work: impl Fn() + Send + Sync + 'static) -> f64 {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (work, stop, count) = (work.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    work();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The claims of a typical registration token.
fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://auth.example.com:4999/x-nmos/auth/v1.0", "sub": "HGFDLHonMfDmrh2nCu8tmT3Ih73KcWd6",
        "aud": ["*.example.com"], "exp": 1795919389, "iat": 1795919329, "jti": "IKqXBD-d74UdyBElaeavcg",
        "client_id": "HGFDLHonMfDmrh2nCu8tmT3Ih73KcWd6", "scope": "registration",
        "x-nmos-registration": {"read": ["*"], "write": ["*"]},
    })
}

/// A new key, opened as the keys service opens its keys.
fn signing_key() -> Arc<SigningKey> {
    let config = Config { key_encryption_key: Some(Secret::new(STANDARD.encode([9u8; 32]))), ..Config::default() };
    let kek = config.key_encryption_key().unwrap();
    Arc::new(SigningKey::open(&keyring::generate(&kek, 0, 0).unwrap(), &kek).unwrap())
}

// As the server's: its allocator is part of what the ceiling measures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The ceiling server (see the module's documentation), until killed.
fn serve(address: &str, key: Arc<SigningKey>, claims_json: Vec<u8>) {
    use axum::routing::post;
    let claims_json = Arc::new(claims_json);
    let token = move || {
        let (key, claims_json) = (key.clone(), claims_json.clone());
        async move {
            let jws = key.sign(&claims_json).unwrap();
            axum::Json(serde_json::json!({
                "access_token": jws, "token_type": "Bearer", "expires_in": 60, "scope": "registration",
            }))
        }
    };
    let app = axum::Router::new().route("/token", post(token));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // Served as the gateway serves (axum-server, Nagle off).
        let listener = std::net::TcpListener::bind(address).unwrap();
        println!("serving signed tokens on http://{}/token", listener.local_addr().unwrap());
        let server = axum_server::from_tcp(listener).unwrap().acceptor(axum_server::accept::NoDelayAcceptor::new());
        server.serve(app.into_make_service()).await.unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "serve") {
        let address = args.get(at + 1).map_or("127.0.0.1:0", String::as_str);
        return serve(address, signing_key(), claims().to_string().into_bytes());
    }
    let secs: u64 = args.iter().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let claims = claims();
    let claims_json = claims.to_string().into_bytes();
    println!("RS512, RSA-2048, {threads} threads, {secs} s each");

    let pair = Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).unwrap());
    let message = vec![b'x'; 620];
    let raw = {
        let pair = pair.clone();
        let rng = SystemRandom::new();
        on_all_cores(secs, move || {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(&RSA_PKCS1_SHA512, &rng, &message, &mut sig).unwrap();
        })
    };
    println!("raw             {raw:8.0} signatures/s");

    let key = signing_key();
    let ours = {
        let (key, claims_json) = (key.clone(), claims_json.clone());
        on_all_cores(secs, move || {
            key.sign(&claims_json).unwrap();
        })
    };
    println!("keys-service    {ours:8.0} tokens/s ({:.0} % of raw)", 100.0 * ours / raw);

    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pair.as_der().unwrap().as_ref())
    );
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
    let jwt = on_all_cores(secs, move || {
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    });
    println!("jsonwebtoken    {jwt:8.0} tokens/s ({:.0} % of raw)", 100.0 * jwt / raw);
}
