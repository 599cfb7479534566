//! Finding the authorization server (configured, or by DNS-SD), its RFC 8414 metadata and
//! its keys; a cache of those keys that outlives the server being unreachable.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::ParsedPublicKey;
use serde_json::Value;

use crate::discovery::{self, DnsSd};

/// The largest metadata or JWK Set document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Where the authorization server is.
#[derive(Clone)]
pub enum ServerLocation {
    /// Its issuer URL (`https://auth.example.com/x-nmos/auth/v1.0`).
    Issuer(String),
    /// Found by DNS-SD `_nmos-auth._tcp`, as [`DnsSd`] says: unicast DNS-SD first, then
    /// mDNS; highest `pri` first, random among equals, the next one when one fails.
    DnsSd(DnsSd),
    /// A [`KeySource`] other than the server's HTTP endpoints, for an issuer known in advance
    /// (the authorization server's own services read its keys over their internal API).
    Source(Arc<dyn KeySource>),
}

impl std::fmt::Debug for ServerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerLocation::Issuer(issuer) => f.debug_tuple("Issuer").field(issuer).finish(),
            ServerLocation::DnsSd(how) => f.debug_tuple("DnsSd").field(how).finish(),
            ServerLocation::Source(source) => f.debug_tuple("Source").field(&source.issuer()).finish(),
        }
    }
}

/// The future a [`KeySource`] returns.
pub type JwksFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, FetchError>> + Send + 'a>>;

/// Where a [`KeyCache`] reads the keys of one issuer when that is not over HTTP. The cache
/// treats what it returns exactly as a fetched JWKS: RSA `RS512` keys with `use: sig` only,
/// refreshed on the same schedule and on an unknown `kid`, kept when a read fails.
pub trait KeySource: Send + Sync + 'static {
    /// The issuer whose tokens these keys sign (tokens' `iss` must be this).
    fn issuer(&self) -> &str;
    /// The current JWK set (RFC 7517: `{"keys": [...]}`).
    fn jwks(&self) -> JwksFuture<'_>;
}

/// The keys of one authorization server (RSA public keys, parsed once) and where they came from.
pub struct Keys {
    /// The issuer its metadata named (tokens' `iss` must be this).
    pub issuer: String,
    /// The RS512 keys of its JWKS, by kid.
    pub keys: HashMap<String, ParsedPublicKey>,
    fetched: Instant,
}

impl Keys {
    fn new(issuer: &str, keys: HashMap<String, ParsedPublicKey>) -> Keys {
        Keys { issuer: issuer.to_owned(), keys, fetched: Instant::now() }
    }
}

/// An RS512 verification key from a JWK's base64url `n` and `e`.
fn rsa_key(n: &str, e: &str) -> Option<ParsedPublicKey> {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok();
    let components = aws_lc_rs::rsa::PublicKeyComponents { n: decode(n)?, e: decode(e)? };
    let der = components.as_der().ok()?;
    ParsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512, der.as_ref()).ok()
}

/// The keys of a JWK set that may sign IS-10 tokens: RSA, `use` `sig` (or none), `alg` `RS512`
/// (or none), as nmos-cpp takes them: RFC 7517 makes both members optional.
fn usable_keys(jwks: &Value) -> HashMap<String, ParsedPublicKey> {
    let mut keys = HashMap::new();
    for jwk in jwks["keys"].as_array().into_iter().flatten() {
        let usable = jwk["kty"] == "RSA"
            && (jwk["use"] == "sig" || jwk["use"].is_null())
            && (jwk["alg"] == "RS512" || jwk["alg"].is_null());
        let (Some(kid), Some(n), Some(e)) = (jwk["kid"].as_str(), jwk["n"].as_str(), jwk["e"].as_str()) else {
            continue;
        };
        if let (true, Some(key)) = (usable, rsa_key(n, e)) {
            keys.insert(kid.to_owned(), key);
        }
    }
    keys
}

/// The authorization server's keys, refreshed about hourly (with jitter), kept while the server
/// is unreachable, and re-fetched (at most every `min_refetch`) when a token names a key not
/// in the cache. Keys come only from the configured or discovered servers, never from a URL a
/// token names.
///
/// Found by DNS-SD, the first server that answers is the main one, fetched at once; another
/// server found in the same lookup is fetched when a token names it as its issuer (IS-10: a
/// resource server fails over between discovered servers, and accepts the tokens of each).
pub struct KeyCache {
    http: reqwest::Client,
    location: ServerLocation,
    keys: RwLock<Option<Arc<Keys>>>,
    last_fetch_attempt: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    others: Mutex<Others>,
    fetching_others: tokio::sync::Mutex<()>,
    pub(crate) refresh: Duration,
    pub(crate) min_refetch: Duration,
}

/// The servers the last DNS-SD lookup found (the main one among them), and the keys of the
/// others whose tokens have been seen. Bounded: at most [`MAX_ADVERTISED`] servers, each with
/// its host name and at most 8 addresses, and nothing kept for an issuer not advertised.
#[derive(Default)]
struct Others {
    /// Where to read each server, and the issuers its metadata may name.
    advertised: Vec<(String, Vec<String>)>,
    keys: HashMap<String, Arc<Keys>>,
    attempts: HashMap<String, Instant>,
}

impl Others {
    /// Where to read the advertised server whose tokens would name `issuer`.
    fn server_for(&self, issuer: &str) -> Option<&str> {
        server_for(&self.advertised, issuer)
    }

    fn is_advertised(&self, issuer: &str) -> bool {
        self.server_for(issuer).is_some()
    }

    /// Takes what a lookup found, and forgets the keys of servers no longer advertised. After a
    /// lookup that failed, what it found is added to what earlier lookups found (a DNS server
    /// that did not answer has not withdrawn anything), at most [`MAX_ADVERTISED`] servers.
    fn advertise(&mut self, found: &[discovery::Advertised], keep_previous: bool) {
        if !keep_previous {
            self.advertised.clear();
        }
        for server in found {
            self.advertised.retain(|(issuer, _)| *issuer != server.issuer);
            self.advertised.push((server.issuer.clone(), server.acceptable.clone()));
        }
        let excess = self.advertised.len().saturating_sub(MAX_ADVERTISED);
        self.advertised.drain(..excess);
        let advertised = &self.advertised;
        self.keys.retain(|issuer, _| server_for(advertised, issuer).is_some());
        self.attempts.retain(|issuer, _| server_for(advertised, issuer).is_some());
    }
}

/// Of `advertised` servers (where to read each, and the issuers its metadata may name), where to
/// read the one whose tokens would name `issuer`.
fn server_for<'a>(advertised: &'a [(String, Vec<String>)], issuer: &str) -> Option<&'a str> {
    advertised.iter().find(|(_, acceptable)| acceptable.iter().any(|a| a == issuer)).map(|(at, _)| at.as_str())
}

/// The most servers remembered from DNS-SD lookups (one lookup finds at most 32 by unicast and
/// 32 by mDNS).
const MAX_ADVERTISED: usize = 64;

#[derive(Debug, thiserror::Error)]
/// Why the keys could not be fetched.
pub enum FetchError {
    /// DNS-SD found no server (or none is configured).
    #[error("no authorization server found")]
    NotFound,
    /// The metadata or the JWKS could not be read.
    #[error("{0}")]
    Http(String),
    /// A [`KeySource`] could not be read.
    #[error("{0}")]
    Source(String),
    /// A fetch that began while this one waited has just failed; not tried again yet.
    #[error("the fetch just made failed; not tried again yet")]
    JustFailed,
    /// The metadata names another issuer than the one expected.
    #[error("the authorization server's metadata names issuer {found:?}, not {expected:?}")]
    WrongIssuer {
        /// The issuer configured or advertised.
        expected: String,
        /// The issuer the metadata named.
        found: String,
    },
}

impl KeyCache {
    /// An empty cache for the server at `location`, fetching with `http`.
    pub fn new(location: ServerLocation, http: reqwest::Client) -> KeyCache {
        KeyCache {
            http,
            location,
            keys: RwLock::new(None),
            last_fetch_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            others: Mutex::new(Others::default()),
            fetching_others: tokio::sync::Mutex::new(()),
            refresh: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(10),
        }
    }

    /// An empty cache reading its keys from `source` (no HTTP).
    pub fn from_source(source: Arc<dyn KeySource>) -> KeyCache {
        KeyCache::new(ServerLocation::Source(source), reqwest::Client::new())
    }

    /// A cache that starts with `keys` (RSA public components by kid) from `issuer`, fetched
    /// again from that issuer like any other (for tests and benchmarks).
    pub fn with_keys(issuer: &str, keys: &[(&str, &str, &str)], http: reqwest::Client) -> KeyCache {
        let cache = KeyCache::new(ServerLocation::Issuer(issuer.to_owned()), http);
        let keys = keys.iter().filter_map(|(kid, n, e)| Some(((*kid).to_owned(), rsa_key(n, e)?))).collect();
        *cache.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Keys::new(issuer, keys)));
        cache
    }

    /// Sets how often keys are refreshed, and the least time between fetches for unknown keys.
    pub fn with_timing(mut self, refresh: Duration, min_refetch: Duration) -> KeyCache {
        self.refresh = refresh;
        self.min_refetch = min_refetch;
        self
    }

    /// The keys now cached (none before the first fetch).
    pub fn current(&self) -> Option<Arc<Keys>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a fetch for an unknown key may go out now (rate limit).
    pub fn may_refetch(&self) -> bool {
        let last = self.last_fetch_attempt.lock().unwrap_or_else(|p| p.into_inner());
        last.is_none_or(|at| at.elapsed() >= self.min_refetch)
    }

    fn others(&self) -> std::sync::MutexGuard<'_, Others> {
        self.others.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys for tokens whose `iss` is `issuer`: the main server's, or those of another
    /// server DNS-SD found, once [`KeyCache::fetch_other`] has read them.
    pub fn keys_of(&self, issuer: &str) -> Option<Arc<Keys>> {
        match self.current() {
            Some(main) if main.issuer == issuer => Some(main),
            _ => self.others().keys.get(issuer).cloned(),
        }
    }

    /// Whether the last DNS-SD lookup found a server whose tokens would name `issuer`.
    pub fn is_advertised(&self, issuer: &str) -> bool {
        self.others().is_advertised(issuer)
    }

    /// Claims a fetch of `issuer`'s keys for a token that names it: true (and the claim
    /// recorded at once, so that no concurrent request claims it too) when the issuer is
    /// advertised and none was claimed in the last `min_refetch`.
    pub fn claim_fetch_other(&self, issuer: &str) -> bool {
        let mut others = self.others();
        let recent = others.attempts.get(issuer).is_some_and(|at| at.elapsed() < self.min_refetch);
        if recent || !others.is_advertised(issuer) {
            return false;
        }
        others.attempts.insert(issuer.to_owned(), Instant::now());
        true
    }

    /// Fetches the keys of the server DNS-SD found whose tokens name `issuer` (its metadata
    /// must name exactly that issuer); on failure its cached keys stay. An issuer not advertised
    /// is [`FetchError::NotFound`]. One at a time; a caller that waited while its keys were
    /// fetched uses them.
    pub async fn fetch_other(&self, issuer: &str) -> Result<(), FetchError> {
        let started = Instant::now();
        let _one_at_a_time = self.fetching_others.lock().await;
        let server = {
            let others = self.others();
            if others.keys.get(issuer).is_some_and(|keys| keys.fetched >= started) {
                return Ok(());
            }
            let Some(server) = others.server_for(issuer) else { return Err(FetchError::NotFound) };
            server.to_owned()
        };
        match self.fetch_from(&server, &[issuer.to_owned()]).await {
            Ok(keys) => {
                tracing::debug!(issuer, keys = keys.keys.len(), "fetched another discovered server's keys");
                let mut others = self.others();
                // Kept only while the server is still advertised (a lookup may have run meanwhile).
                if others.is_advertised(issuer) {
                    others.keys.insert(issuer.to_owned(), Arc::new(keys));
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer, error = %e, "could not fetch another discovered server's keys");
                Err(e)
            }
        }
    }

    /// Fetches the metadata and keys now; on failure the cached keys stay. Single-flight: a
    /// caller that waited while another fetched (within `min_refetch`) uses that result.
    pub async fn fetch(&self) -> Result<(), FetchError> {
        let started = Instant::now();
        let _one_at_a_time = self.fetching.lock().await;
        if self.current().is_some_and(|keys| keys.fetched >= started) {
            return Ok(()); // fetched while this caller waited
        }
        {
            let mut last = self.last_fetch_attempt.lock().unwrap_or_else(|p| p.into_inner());
            // One that began while this caller waited has failed (a success returned above):
            // not tried again at once, or requests queued behind a slow lookup would each make one.
            if last.is_some_and(|at| at >= started) {
                return Err(FetchError::JustFailed);
            }
            *last = Some(Instant::now());
        }
        let fetched = match &self.location {
            ServerLocation::Source(source) => {
                source.jwks().await.map(|jwks| Keys::new(source.issuer(), usable_keys(&jwks)))
            }
            ServerLocation::Issuer(issuer) => {
                // Read without a trailing slash; the metadata may name the issuer either way, as
                // long as it is the one configured (then tokens' `iss` must be exactly that).
                let trimmed = issuer.trim_end_matches('/').to_owned();
                self.fetch_first(vec![(trimmed.clone(), vec![trimmed, issuer.clone()])]).await
            }
            ServerLocation::DnsSd(how) => {
                // IS-10 prefers unicast DNS-SD; mDNS is browsed only when no server found by
                // unicast answers (a browse listens for seconds).
                let candidates = |found: &[discovery::Advertised]| {
                    found.iter().map(|s| (s.issuer.clone(), s.acceptable.clone())).collect::<Vec<_>>()
                };
                let unicast = how.unicast().await;
                let lookup_failed = unicast.is_err();
                let mut found = unicast.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "no unicast DNS-SD answer");
                    Vec::new()
                });
                let fetched = match self.fetch_first(candidates(&found)).await {
                    Err(unicast) if how.multicast => {
                        let multicast = how.multicast().await;
                        found.extend_from_slice(&multicast);
                        match self.fetch_first(candidates(&multicast)).await {
                            Err(FetchError::NotFound) => Err(unicast),
                            multicast => multicast,
                        }
                    }
                    unicast => unicast,
                };
                self.others().advertise(&found, lookup_failed);
                fetched
            }
        };
        match fetched {
            Ok(keys) => {
                tracing::debug!(
                    issuer = keys.issuer,
                    keys = keys.keys.len(),
                    "fetched the authorization server's keys"
                );
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(keys));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the authorization server's keys");
                Err(e)
            }
        }
    }

    /// The keys of the first of `candidates` (issuer, and the issuers its metadata may name) that
    /// answers.
    async fn fetch_first(&self, candidates: Vec<(String, Vec<String>)>) -> Result<Keys, FetchError> {
        if candidates.is_empty() {
            return Err(FetchError::NotFound);
        }
        let mut last_error = FetchError::NotFound;
        for (issuer, acceptable) in candidates {
            match self.fetch_from(&issuer, &acceptable).await {
                Ok(keys) => return Ok(keys),
                Err(e) => {
                    tracing::debug!(issuer, error = %e, "could not fetch this authorization server's keys");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// Reads the metadata at `issuer`; it must name one of `acceptable` as its issuer.
    async fn fetch_from(&self, issuer: &str, acceptable: &[String]) -> Result<Keys, FetchError> {
        // RFC 8414 §3: the well-known path goes before the issuer's path.
        let mut metadata_url = url::Url::parse(issuer).map_err(|e| FetchError::Http(format!("{issuer}: {e}")))?;
        let path = metadata_url.path().trim_end_matches('/').to_owned();
        metadata_url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        let metadata: Value = self.get_json(metadata_url.as_str()).await?;
        let found = metadata["issuer"].as_str().unwrap_or_default();
        if !acceptable.iter().any(|a| a == found) {
            return Err(FetchError::WrongIssuer { expected: issuer.to_owned(), found: found.to_owned() });
        }
        let issuer = found;
        let jwks_uri = metadata["jwks_uri"].as_str().ok_or_else(|| FetchError::Http("no jwks_uri".into()))?;
        let jwks: Value = self.get_json(jwks_uri).await?;
        Ok(Keys::new(issuer, usable_keys(&jwks)))
    }

    /// A JSON document of at most [`MAX_DOCUMENT_BYTES`]: a server (or whatever a discovered
    /// one's `jwks_uri` names) cannot make this API hold more.
    async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let http_error = |e: reqwest::Error| FetchError::Http(e.without_url().to_string());
        let mut response = self.http.get(url).send().await.and_then(|r| r.error_for_status()).map_err(http_error)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::Http(format!("{url}: more than {} KiB", MAX_DOCUMENT_BYTES / 1024)));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Http(format!("{url}: not JSON: {e}")))
    }

    /// Keeps the keys fresh: about every `refresh` (±10 %), retrying with a randomised back-off
    /// while the server cannot be reached. Stops when the cache is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(5);
            loop {
                let wait = {
                    let Some(cache) = weak.upgrade() else { return };
                    let age =
                        cache.keys.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|k| k.fetched.elapsed());
                    match age {
                        Some(age) if age < cache.refresh => jitter(cache.refresh - age),
                        _ => match cache.fetch().await {
                            Ok(()) => {
                                // The other servers whose tokens were seen, on the same schedule.
                                let others: Vec<String> = cache.others().keys.keys().cloned().collect();
                                for issuer in others {
                                    let _ = cache.fetch_other(&issuer).await;
                                }
                                backoff = Duration::from_secs(5);
                                jitter(cache.refresh)
                            }
                            Err(_) => {
                                backoff = (backoff * 2).min(Duration::from_secs(300));
                                jitter(backoff)
                            }
                        },
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

/// `d` ± 10 %, so that many resource servers do not fetch at the same moment.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    let factor = 0.9 + f64::from(byte[0]) / 255.0 * 0.2;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
    use base64::Engine;

    #[test]
    fn keys_are_taken_as_is_10_and_nmos_cpp_take_them() {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let n = b64(public.modulus().big_endian_without_leading_zero());
        let e = b64(public.exponent().big_endian_without_leading_zero());
        let jwk = |kid: &str, extra: Value| {
            let mut jwk = serde_json::json!({"kty": "RSA", "kid": kid, "n": n, "e": e});
            jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            jwk
        };
        let set = serde_json::json!({"keys": [
            jwk("full", serde_json::json!({"use": "sig", "alg": "RS512"})),
            jwk("bare", serde_json::json!({})),
            jwk("enc", serde_json::json!({"use": "enc"})),
            jwk("rs256", serde_json::json!({"alg": "RS256"})),
            jwk("ec", serde_json::json!({"kty": "EC"})),
        ]});
        let mut kids: Vec<String> = usable_keys(&set).into_keys().collect();
        kids.sort();
        assert_eq!(kids, ["bare", "full"]);
    }
}
