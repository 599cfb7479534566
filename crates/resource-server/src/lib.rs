//! Token checks for NMOS APIs (AMWA IS-10 §4, the resource server's side).
//!
//! A [`ResourceServer`] finds the authorization server (from configuration, or by DNS-SD
//! `_nmos-auth._tcp`: unicast, then mDNS), reads its RFC 8414 metadata and keeps its keys in a
//! [`KeyCache`]. Each request's bearer token is checked: RS512 signature only,
//! `exp`/`nbf`/`iat` with a small leeway, `iss` = the server's issuer (by DNS-SD: that of any
//! server found), `aud` covering this host (wildcard labels as nmos-cpp
//! matches them), `client_id` or `azp` present, and the IS-10 path rules for the
//! `x-nmos-<api>` claims. Refusals follow RFC 6750 §3 (401 with `WWW-Authenticate: Bearer`,
//! 403 `insufficient_scope`) with a short JSON reason and nothing internal.
//!
//! Adapters: [`RequireTokenLayer`] for axum and any tower HTTP service, [`ResourceServer::interceptor`]
//! for tonic services, and [`ResourceServer::check`] for anything else. Each gives the handler
//! the validated claims ([`Claims`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod discovery;
pub mod dns;
pub mod keys;
pub mod rules;
mod tower_layer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use crate::discovery::DnsSd;
pub use crate::keys::{FetchError, JwksFuture, KeyCache, KeySource, ServerLocation};
pub use crate::rules::Access;
pub use crate::tower_layer::{RequireToken, RequireTokenLayer};

/// The validated claims of the request's token, for the handler (in the request extensions).
#[derive(Clone, Debug, PartialEq)]
pub struct Claims(pub Value);

impl Claims {
    /// Whether the token's `scope` claim (space-separated, RFC 8693 §4.2) includes `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0["scope"].as_str().is_some_and(|s| s.split(' ').any(|word| word == scope))
    }

    /// The client the token was issued to (`client_id`, or else `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.0["client_id"].as_str().or(self.0["azp"].as_str())
    }
}

/// What to do when a token names a key the cache does not have, and the last fetch was too
/// recent to fetch again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownKey {
    /// Wait up to this long for a fetch (if one may go out), then refuse with 401.
    Wait(Duration),
    /// Answer 503 with `Retry-After` at once (a fetch goes out in the background).
    Unavailable,
}

/// Why a request was refused: the status, the `WWW-Authenticate` challenge and a short reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// 401, 403 or 503.
    pub status: u16,
    /// The `WWW-Authenticate` header (RFC 6750 §3), when the status calls for one.
    pub challenge: Option<String>,
    /// A short reason for the body and the log; never the token or anything internal.
    pub reason: String,
}

impl Denied {
    fn no_token(realm: &str) -> Denied {
        Denied { status: 401, challenge: Some(format!("Bearer realm=\"{realm}\"")), reason: "no access token".into() }
    }

    fn invalid(realm: &str, reason: impl Into<String>) -> Denied {
        let reason = reason.into();
        Denied {
            status: 401,
            challenge: Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                reason.replace('"', "'")
            )),
            reason,
        }
    }

    fn insufficient(realm: &str, reason: impl Into<String>) -> Denied {
        Denied {
            status: 403,
            challenge: Some(format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")),
            reason: reason.into(),
        }
    }

    fn unavailable(reason: &str) -> Denied {
        Denied { status: 503, challenge: None, reason: reason.into() }
    }

    /// The NMOS-style JSON error body.
    pub fn body(&self) -> String {
        json!({"code": self.status, "error": self.reason, "debug": null}).to_string()
    }

    /// The whole HTTP response.
    pub fn response<B: From<String>>(&self) -> http::Response<B> {
        let mut builder = http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, "no-store");
        if let Some(challenge) = &self.challenge {
            builder = builder.header(http::header::WWW_AUTHENTICATE, challenge);
        }
        if self.status == 503 {
            builder = builder.header(http::header::RETRY_AFTER, "5");
        }
        builder.body(B::from(self.body())).unwrap_or_else(|_| http::Response::new(B::from(String::new())))
    }
}

/// Settings of a [`ResourceServer`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// This API's host name, which the tokens' `aud` must cover.
    pub host: String,
    /// Allowed clock difference for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Whether tokens are checked at all (the seed's `@NmosSecurity(condition=...)`): a plant
    /// without IS-10 runs the same build with this off.
    pub enabled: bool,
    /// What to do about a token signed by a key the cache does not have.
    pub unknown_key: UnknownKey,
    /// The realm in `WWW-Authenticate`.
    pub realm: String,
}

impl Settings {
    /// Checking on, for `host`: 5 s leeway, a wait of up to 2 s for an unknown key, realm "nmos".
    pub fn new(host: impl Into<String>) -> Settings {
        Settings {
            host: host.into(),
            leeway: Duration::from_secs(5),
            enabled: true,
            unknown_key: UnknownKey::Wait(Duration::from_secs(2)),
            realm: "nmos".into(),
        }
    }
}

/// Checks requests' access tokens against the authorization server's keys (by DNS-SD: the keys
/// of each server found whose tokens arrive).
#[derive(Clone)]
pub struct ResourceServer {
    keys: Arc<KeyCache>,
    settings: Arc<Settings>,
}

impl ResourceServer {
    /// A resource server that fetches the keys of the server at `location` (first now, then on
    /// its own schedule). Call within a Tokio runtime.
    pub fn new(location: ServerLocation, settings: Settings) -> ResourceServer {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        ResourceServer::with_cache(Arc::new(KeyCache::new(location, http)), settings)
    }

    /// With a cache made elsewhere (its refresh settings, its HTTP client).
    pub fn with_cache(keys: Arc<KeyCache>, settings: Settings) -> ResourceServer {
        if settings.enabled {
            keys.spawn_refresh();
        }
        ResourceServer { keys, settings: Arc::new(settings) }
    }

    /// The key cache (shared by clones of this resource server).
    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// The bearer token of a request: the `Authorization` header, or an `access_token` query
    /// parameter (for WebSocket upgrades, which cannot set headers).
    pub fn token<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(value) = authorization {
            let (scheme, token) = value.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| std::borrow::Cow::Borrowed(token.trim()));
        }
        query?.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "access_token").then(|| {
                let decoded = value.replace('+', " ");
                std::borrow::Cow::Owned(percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned())
            })
        })
    }

    /// Checks a request: `Ok(None)` when checking is off, `Ok(Some(claims))` when allowed.
    /// Each decision is logged for audit (target `audit`), never with the token.
    pub async fn check(
        &self,
        method: &http::Method,
        path: &str,
        authorization: Option<&str>,
        query: Option<&str>,
    ) -> Result<Option<Claims>, Denied> {
        // Browsers send CORS pre-flights without credentials; they read nothing.
        if !self.settings.enabled || method == http::Method::OPTIONS {
            return Ok(None);
        }
        let result = self.decide(method, path, authorization, query).await;
        match &result {
            // IS-10: every request, allowed or refused, is audit-logged.
            Ok(claims) => tracing::info!(target: "audit", event = "nmos_request_allowed", %method, path,
                client_id = claims.client_id().unwrap_or_default(),
                sub = claims.0["sub"].as_str().unwrap_or_default()),
            Err(denied) => tracing::info!(target: "audit", event = "nmos_request_refused", %method, path,
                status = denied.status, reason = %denied.reason),
        }
        result.map(Some)
    }

    async fn decide(
        &self,
        method: &http::Method,
        path: &str,
        authorization: Option<&str>,
        query: Option<&str>,
    ) -> Result<Claims, Denied> {
        let realm = &self.settings.realm;
        let Some(token) = ResourceServer::token(authorization, query) else {
            return Err(match authorization {
                Some(_) => Denied::invalid(realm, "the Authorization header is not a Bearer token"),
                None => Denied::no_token(realm),
            });
        };
        let claims = self.validate(&token).await?;
        rules::authorize(&claims.0, path, Access::of(method)).map_err(|r| Denied::insufficient(realm, r.0))?;
        Ok(claims)
    }

    /// Validates a token on its own: RS512 signature by a key of the authorization server its
    /// `iss` names (the configured one, or one DNS-SD found), `exp` (required), `nbf` and `iat`
    /// within the leeway, `sub`, `aud` covering this host, and a `client_id` or `azp`.
    pub async fn validate(&self, token: &str) -> Result<Claims, Denied> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        #[derive(serde::Deserialize)]
        struct Header {
            alg: String,
            kid: Option<String>,
        }
        let realm = &self.settings.realm;
        let invalid = |why: &str| Denied::invalid(realm, why);
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| invalid("not a JWT"))?;
        // Checked before any key is touched: no `none`, no HMAC with a public key, nothing else.
        if header.alg != "RS512" {
            return Err(invalid("only RS512 tokens are accepted"));
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid("not a JWT"))?;
        // Read before the signature is checked only to choose the keys: those of the issuer it
        // names, if that is the server's or another server DNS-SD found.
        let claims: Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .filter(Value::is_object)
            .ok_or_else(|| invalid("the claims are not a JSON object"))?;
        let keys = self.keys_for(claims["iss"].as_str(), header.kid.as_deref()).await?;
        let verified = match header.kid.as_deref() {
            Some(kid) => keys.keys.get(kid).is_some_and(|k| k.verify_sig(signed, &signature).is_ok()),
            None => keys.keys.values().any(|k| k.verify_sig(signed, &signature).is_ok()),
        };
        if !verified {
            return Err(invalid("the signature does not verify"));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let leeway = self.settings.leeway.as_secs() as i64;
        match claims["exp"].as_i64() {
            None => return Err(invalid("the token lacks a required claim")),
            // RFC 7519 §4.1.4: not accepted on or after exp (plus the leeway).
            Some(exp) if exp.saturating_add(leeway) <= now => return Err(invalid("the token has expired")),
            Some(_) => {}
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid("the token is not valid yet"));
        }
        if claims["iat"].as_i64().is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(invalid("the token was issued in the future"));
        }
        if claims["iss"].as_str() != Some(keys.issuer.as_str()) {
            return Err(invalid("the token is from another issuer"));
        }
        if claims["sub"].as_str().is_none() {
            return Err(invalid("the token lacks a required claim"));
        }
        let covers = |aud: &str| rules::audience_matches(aud, &self.settings.host);
        let for_us = match &claims["aud"] {
            Value::String(one) => covers(one),
            Value::Array(many) => many.iter().filter_map(Value::as_str).any(covers),
            _ => false,
        };
        if !for_us {
            // A valid token for other hosts: not enough for this one (IS-10 §1.16; nmos-testing
            // and nmos-cpp answer 403 insufficient_scope).
            return Err(Denied::insufficient(realm, "the token is not meant for this host"));
        }
        let claims = Claims(claims);
        if claims.client_id().is_none_or(str::is_empty) {
            return Err(invalid("the token names no client"));
        }
        Ok(claims)
    }

    /// The keys to check a token of `issuer` signed with `kid`: the server's, or those of
    /// another server the last DNS-SD lookup found when the token names it.
    async fn keys_for(&self, issuer: Option<&str>, kid: Option<&str>) -> Result<Arc<keys::Keys>, Denied> {
        let realm = &self.settings.realm;
        let has = |keys: &keys::Keys| kid.map_or(!keys.keys.is_empty(), |kid| keys.keys.contains_key(kid));
        let current = self.keys.current();
        if let (Some(main), Some(issuer)) = (&current, issuer)
            && main.issuer != issuer
        {
            // Refused before any key is touched or fetched.
            if !self.keys.is_advertised(issuer) {
                return Err(Denied::invalid(realm, "the token is from another issuer"));
            }
            if let Some(keys) = self.keys.keys_of(issuer).filter(|k| has(k)) {
                return Ok(keys);
            }
            if self.keys.claim_fetch_other(issuer) {
                let (keys, issuer) = (self.keys.clone(), issuer.to_owned());
                self.fetch_as_settings_say(async move { keys.fetch_other(&issuer).await }).await?;
            }
            return match self.keys.keys_of(issuer) {
                Some(keys) if has(&keys) => Ok(keys),
                Some(_) => Err(Denied::invalid(realm, "signed by a key the authorization server does not publish")),
                None => Err(Denied::unavailable("that authorization server's keys are not available")),
            };
        }
        if let Some(keys) = current.as_ref().filter(|k| has(k)) {
            return Ok(keys.clone());
        }
        // A key we do not have (a rotation we have not seen yet), or no keys at all so far (then
        // a fetch is awaited whatever the rate limit: the first one may be under way).
        let never_fetched = current.is_none();
        if never_fetched || self.keys.may_refetch() {
            let keys = self.keys.clone();
            self.fetch_as_settings_say(async move { keys.fetch().await }).await?;
            // The lookup may have found the server this token names.
            if never_fetched && issuer.is_some_and(|i| self.keys.current().is_some_and(|main| main.issuer != i)) {
                return Box::pin(self.keys_for(issuer, kid)).await;
            }
        }
        match self.keys.current() {
            Some(keys) if has(&keys) => Ok(keys),
            Some(_) => Err(Denied::invalid(realm, "signed by a key the authorization server does not publish")),
            None => Err(Denied::unavailable("the authorization server's keys are not available")),
        }
    }

    /// Runs `fetch` as [`Settings::unknown_key`] says: waits for it up to a time (it goes on
    /// after that: a DNS-SD browse alone takes 3 s, longer than the default wait, and its keys
    /// serve the next request, where a fetch dropped half-way would leave none until the rate
    /// limit let another go out, which would be dropped the same way), or refuses with 503 at
    /// once while it runs in the background.
    async fn fetch_as_settings_say(
        &self,
        fetch: impl Future<Output = Result<(), FetchError>> + Send + 'static,
    ) -> Result<(), Denied> {
        match self.settings.unknown_key {
            UnknownKey::Wait(wait) => {
                let _ = tokio::time::timeout(wait, tokio::spawn(fetch)).await;
                Ok(())
            }
            UnknownKey::Unavailable => {
                tokio::spawn(fetch);
                Err(Denied::unavailable("fetching the authorization server's keys; try again"))
            }
        }
    }

    /// Checks a gRPC call's `authorization` metadata value: the token itself (gRPC paths are not
    /// NMOS paths), the required scope left to the caller ([`Claims::has_scope`]). `Ok(None)`
    /// when checking is off. The async form of [`ResourceServer::interceptor`], for a tower
    /// layer in front of a tonic server; refusals are `UNAUTHENTICATED`, or `UNAVAILABLE` while
    /// the keys cannot be had.
    pub async fn check_grpc(&self, authorization: Option<&str>) -> Result<Option<Claims>, tonic::Status> {
        if !self.settings.enabled {
            return Ok(None);
        }
        let Some(token) = ResourceServer::token(authorization, None) else {
            return Err(tonic::Status::unauthenticated("no access token"));
        };
        match self.validate(&token).await {
            Ok(claims) => Ok(Some(claims)),
            Err(denied) if denied.status == 503 => Err(tonic::Status::unavailable(denied.reason)),
            Err(denied) if denied.status == 403 => Err(tonic::Status::permission_denied(denied.reason)),
            Err(denied) => Err(tonic::Status::unauthenticated(denied.reason)),
        }
    }

    /// A tonic interceptor: checks the `authorization` metadata of every call with
    /// [`ResourceServer::check_grpc`] and puts the [`Claims`] in the request extensions. Blocks its thread for the check (keys are cached, so that is a
    /// signature verification except on a key fetch), so it needs Tokio's multi-thread runtime;
    /// on any other it refuses every call (UNAVAILABLE) rather than stall the runtime.
    pub fn interceptor(&self) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
        let server = self.clone();
        move |mut request: tonic::Request<()>| {
            if !server.settings.enabled {
                return Ok(request);
            }
            let authorization =
                request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            if authorization.is_none() {
                return Err(tonic::Status::unauthenticated("no access token"));
            }
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if !multi_thread {
                tracing::error!("the token interceptor needs the multi-thread Tokio runtime");
                return Err(tonic::Status::unavailable("token checks are not available"));
            }
            let checked = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(server.check_grpc(authorization.as_deref()))
            });
            if let Some(claims) = checked? {
                request.extensions_mut().insert(claims);
            }
            Ok(request)
        }
    }
}
