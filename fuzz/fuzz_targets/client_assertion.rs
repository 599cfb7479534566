//! RFC 7523 client assertions as the registry first reads them (unverified, to find the
//! client), and the JWK Sets it fetches from a client's jwks_uri or was given as jwks.
#![no_main]
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use libfuzzer_sys::fuzz_target;
use nmos_auth_client_registry::claimed_client;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = claimed_client(text);
        let _ = decode_header(text);
    }
    // A JWK Set: every key in it becomes a decoding key or an error, never a crash, and a
    // token checked with it is refused or accepted, never a crash either.
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        for jwk in &set.keys {
            if let (Ok(key), Some(alg)) = (DecodingKey::from_jwk(jwk), jwk.common.key_algorithm) {
                if let Ok(alg) = alg.to_string().parse() {
                    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
                    let _ = decode::<serde_json::Value>(token, &key, &Validation::new(alg));
                }
            }
        }
    }
});
