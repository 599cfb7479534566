//! The resource-server crate's checks on what an NMOS API receives: the bearer token (from
//! the header or the query), the token's claims against the IS-10 path rules, and the paths
//! themselves.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nmos_auth_resource_server::{Access, KeyCache, ResourceServer, Settings, UnknownKey, rules};

/// An RSA key (its modulus and exponent, base64url) that signed nothing the fuzzer sends.
const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
const E: &str = "AQAB";

fn server() -> &'static (tokio::runtime::Runtime, ResourceServer) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, ResourceServer)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // An unknown key is refused at once, and a refetch (rare) meets a closed loopback port:
        // the fuzzer neither waits nor reaches a network.
        let keys = KeyCache::with_keys("http://127.0.0.1:9/x-nmos/auth/v1.0", &[("k1", N, E)], reqwest::Client::new())
            .with_timing(Duration::from_secs(3600), Duration::from_secs(3600));
        let settings = Settings { unknown_key: UnknownKey::Wait(Duration::ZERO), ..Settings::new("api.example.com") };
        // Made inside the runtime, which its cache's refresh task is spawned on.
        let server = runtime.block_on(async { ResourceServer::with_cache(Arc::new(keys), settings) });
        (runtime, server)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\n');
    let (first, second, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // The path rules on any claims set and path.
    let _ = rules::normalise(first);
    let _ = rules::glob(first, second);
    let _ = rules::audience_matches(first, second);
    if let Ok(claims) = serde_json::from_str::<serde_json::Value>(rest) {
        for access in [Access::Read, Access::Write] {
            let _ = rules::authorize(&claims, first, access);
        }
    }
    // A whole request: method, path, Authorization header and query.
    let (runtime, server) = server();
    let method = if first.len() % 2 == 0 { http::Method::GET } else { http::Method::POST };
    let _ = ResourceServer::token(Some(second), Some(rest));
    let _ = runtime.block_on(server.check(&method, first, Some(second), Some(rest)));
});
