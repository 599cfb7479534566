//! The keys service: RSA signing keys, encrypted at rest under the key-encryption key, used to
//! sign (RS512) and published as a JWK Set, and rotated on a schedule: a new key is published
//! well before it signs, and a retired key stays published until its last token has expired
//! plus a grace time (`schedule.rs`). The database is the only source of the key set, so every
//! replica signs with the same key and publishes the same set; each re-reads it every second.
#![forbid(unsafe_code)]

mod grpc;

pub mod keyring;
pub mod schedule;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use nmos_auth_core::db::Db;
use nmos_auth_core::events::{Event, EventLog};
use nmos_auth_core::metrics::{Collect, Reading, Readings};
use nmos_auth_core::sealing::SealingKey;
use nmos_auth_core::{Config, ErrorCode, OAuthError};
use nmos_auth_proto::Jwk;
use nmos_auth_proto::keys_server::KeysServer;
use tonic::Status;

use crate::keyring::{SigningKey, VerifyingKey};
use crate::schedule::{Policy, State, Step};
use crate::store::{KeyStore, StoredKey};

/// The keys as this replica last read them, and when.
struct KeySet {
    signing: Option<Arc<SigningKey>>,
    jwks: Vec<Jwk>,
    /// `jwks` as the JWKS route serves it, and its entity tag: made once per load, not per request.
    document: Jwks,
    verifying: Vec<VerifyingKey>,
    loaded: std::time::Instant,
}

/// The JWKS document and its entity tag.
#[derive(Clone)]
pub struct Jwks {
    pub document: Vec<u8>,
    pub etag: String,
}

impl Jwks {
    fn of(keys: &[Jwk]) -> Jwks {
        let document = nmos_auth_core::jwks_document(keys);
        Jwks { etag: nmos_auth_core::etag(&document), document }
    }
}

/// A replica whose key set is older than this (its database unreachable, a key it cannot
/// open) stops signing rather than sign with a key that may have been removed since.
const STALE: Duration = Duration::from_secs(5);

pub struct KeysService {
    db: Db,
    store: Arc<dyn KeyStore>,
    /// Rotations, removals and imports, with who made them.
    events: EventLog,
    /// How long events are kept (`None`: for ever).
    retention_secs: Option<i64>,
    kek: SealingKey,
    policy: Policy,
    set: RwLock<Arc<KeySet>>,
    /// Private keys already decrypted, by kid: each is opened once.
    opened: Mutex<HashMap<String, Arc<SigningKey>>>,
    /// Whether `run_schedule` keeps the key set fresh (then a stale set stops signing).
    scheduled: std::sync::atomic::AtomicBool,
    /// One schedule run at a time in this replica: a run that read the keys before an operator
    /// removed one must not load them after the run the removal started.
    ticking: tokio::sync::Mutex<()>,
}

/// How often each replica re-reads the key set and runs the schedule.
pub const TICK: Duration = Duration::from_secs(1);
/// How soon a replica tries again after a schedule run failed.
const RETRY: Duration = Duration::from_millis(200);

impl KeysService {
    /// Opens the key store, creates the first key if there is none, and loads the key set.
    pub async fn open(config: &Config) -> anyhow::Result<KeysService> {
        let kek = config.key_encryption_key()?;
        let db = Db::connect(&config.database_url("keys")).await?;
        db.migrate("keys", &store::MIGRATIONS).await?;
        let as_secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let policy = Policy {
            period: (config.key_rotation_period > 0).then(|| as_secs(config.key_rotation_period)),
            lead: as_secs(config.key_publish_lead),
            token_lifetime: as_secs(config.access_token_lifetime),
            grace: as_secs(config.key_retire_grace),
        };
        if policy.lead < 7200 {
            tracing::warn!(lead = policy.lead, "key_publish_lead is under IS-10's 2 h: for testing only");
        }
        let service = KeysService {
            events: nmos_auth_core::event_log!(db.clone(), "keys", "keys"),
            retention_secs: config.audit_retention_secs(),
            db: db.clone(),
            store: store::open(db),
            kek,
            policy,
            set: RwLock::new(Arc::new(KeySet {
                signing: None,
                document: Jwks::of(&[]),
                jwks: Vec::new(),
                verifying: Vec::new(),
                loaded: std::time::Instant::now(),
            })),
            scheduled: std::sync::atomic::AtomicBool::new(false),
            opened: Mutex::new(HashMap::new()),
            ticking: tokio::sync::Mutex::new(()),
        };
        service.tick().await?;
        Ok(service)
    }

    /// Runs the schedule every [`TICK`] until the service is dropped; while it cannot (the
    /// database is down), every [`RETRY`], so that signing resumes soon after it returns.
    pub fn run_schedule(self: &Arc<Self>) {
        self.scheduled.store(true, std::sync::atomic::Ordering::Relaxed);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(if failing { RETRY } else { TICK }).await;
                let Some(service) = weak.upgrade() else { return };
                match service.tick().await {
                    Ok(()) if failing => {
                        tracing::info!("the key schedule runs again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %format!("{e:#}"), "the key schedule could not run; keeping the keys it had");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// One step: store what the schedule plans, then load the key set.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.ticking.lock().await;
        let now = nmos_auth_core::now_unix();
        let keys = self.store.all().await?;
        let steps = schedule::plan(&keys, now, self.policy);
        if steps.is_empty() {
            return self.load(&keys, now);
        }
        for step in steps {
            match step {
                Step::Create { generation, activate_at } => self.create(&keys, generation, activate_at).await?,
                Step::RemoveAt { kid, at } => {
                    self.store.schedule_removal(&kid, at, now).await?;
                }
            }
        }
        // Read again, and judge by the time now: another replica may have stored the key this
        // one planned, a moment later than this run began.
        let keys = self.store.all().await?;
        self.load(&keys, nmos_auth_core::now_unix())
    }

    async fn create(&self, keys: &[StoredKey], generation: i64, activate_at: i64) -> anyhow::Result<()> {
        // After a key-encryption key rotation, a replica still on the old one must not seal
        // new keys that the others cannot read.
        if let Some(other) = keys.iter().find(|k| !k.kek_id.is_empty() && k.kek_id != self.kek.id()) {
            anyhow::bail!(
                "signing key {} is sealed by another key-encryption key ({}, this replica has {}): \
                 restart with the current key-encryption key",
                other.kid,
                other.kek_id,
                self.kek.id()
            );
        }
        // Finding primes takes long enough to stall every request on this runtime thread.
        let started = nmos_auth_core::now_unix();
        let pkcs8 = tokio::task::spawn_blocking(keyring::generate_pkcs8).await??;
        // The lead counts from publication: a slow search for primes (a loaded machine) must
        // not shorten the time other replicas and resource servers have to see the key.
        let activate_at =
            if activate_at > started { activate_at + (nmos_auth_core::now_unix() - started) } else { activate_at };
        let key = keyring::stored(&self.kek, &pkcs8, None, generation, activate_at)?;
        if self.store.insert(&key).await? {
            tracing::info!(kid = %key.kid, generation, activate_at, "new signing key (RSA-2048, RS512) published");
        }
        Ok(())
    }

    fn load(&self, keys: &[StoredKey], now: i64) -> anyhow::Result<()> {
        let signing = schedule::signing(keys, now).map(|k| self.open_key(k)).transpose()?;
        let published: Vec<&StoredKey> = schedule::published(keys, now).collect();
        // One unreadable published key does not stop the others from verifying.
        let verifying = published
            .iter()
            .filter_map(|k| {
                VerifyingKey::new(k)
                    .inspect_err(|e| tracing::warn!(kid = %k.kid, error = %e, "unusable published key"))
                    .ok()
            })
            .collect();
        let jwks: Vec<Jwk> = published.iter().map(|k| keyring::jwk(k)).collect();
        let set = KeySet { signing, document: Jwks::of(&jwks), jwks, verifying, loaded: std::time::Instant::now() };
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    fn open_key(&self, stored: &StoredKey) -> anyhow::Result<Arc<SigningKey>> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = opened.get(&stored.kid) {
            return Ok(key.clone());
        }
        let key = Arc::new(SigningKey::open(stored, &self.kek)?);
        opened.insert(stored.kid.clone(), key.clone());
        Ok(key)
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs a claims set (a JSON object) with the active key; returns the JWS and its kid.
    pub fn sign(&self, claims_json: &[u8]) -> Result<(String, String), Status> {
        let trimmed = claims_json.trim_ascii_start();
        if !trimmed.starts_with(b"{") || serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_err() {
            return Err(Status::invalid_argument("claims_json must be a JSON object"));
        }
        let set = self.current();
        let unavailable = |why: &str| Status::from(OAuthError::new(ErrorCode::TemporarilyUnavailable, why));
        if self.scheduled.load(std::sync::atomic::Ordering::Relaxed) && set.loaded.elapsed() > STALE {
            return Err(unavailable("the signing keys could not be re-read; not signing with a stale set"));
        }
        let key = set.signing.as_ref().ok_or_else(|| unavailable("no signing key is active"))?;
        let jws = key.sign(claims_json).map_err(|e| Status::internal(e.to_string()))?;
        Ok((jws, key.kid.clone()))
    }

    /// Checks a token this server issued: its claims and the kid that signed it.
    pub fn verify(&self, jws: &str) -> Result<(Vec<u8>, String), OAuthError> {
        keyring::verify(&self.current().verifying, jws)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidToken, e.to_string()))
    }

    /// The published keys.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.current().jwks.clone()
    }

    /// The published keys as the JWKS document, with its entity tag.
    pub fn jwks_document(&self) -> Jwks {
        self.current().document.clone()
    }

    /// Every key with its state now, oldest first.
    pub async fn list(&self) -> anyhow::Result<Vec<(StoredKey, State)>> {
        let keys = self.store.all().await?;
        let now = nmos_auth_core::now_unix();
        Ok(keys.iter().map(|k| (k.clone(), schedule::state(&keys, k, now))).collect())
    }

    /// The key set as metrics: keys by state, the signing key's age, and when the next one signs.
    async fn readings(&self) -> Vec<Reading> {
        let keys = match self.list().await {
            Ok(keys) => keys,
            Err(e) => {
                nmos_auth_core::warn_limited!(error = %format!("{e:#}"), "metrics: the keys could not be read");
                return Vec::new();
            }
        };
        let now = nmos_auth_core::now_unix();
        let mut readings: Vec<Reading> = [State::Next, State::Active, State::Retired, State::Removed]
            .into_iter()
            .map(|state| {
                let count = keys.iter().filter(|(_, s)| *s == state).count();
                Reading::gauge("nmos_auth_signing_keys", "Signing keys in the store, by state", count as f64)
                    .label("state", state.as_str())
            })
            .collect();
        let active = keys.iter().find(|(_, s)| *s == State::Active).map(|(k, _)| k);
        if let Some(active) = active {
            readings.push(Reading::gauge(
                "nmos_auth_signing_key_age_seconds",
                "How long the key that signs now has been signing",
                (now - active.activate_at) as f64,
            ));
        }
        if let Some(at) = self.next_rotation(&keys) {
            readings.push(Reading::gauge(
                "nmos_auth_signing_key_next_rotation_timestamp_seconds",
                "When the next signing key starts signing, in seconds since the Unix epoch",
                at as f64,
            ));
        }
        readings
    }

    /// When the next key starts signing: the successor already planned, or the one the
    /// schedule will plan; `None` when nothing signs and nothing is planned, or keys are never
    /// rotated.
    pub fn next_rotation(&self, keys: &[(StoredKey, State)]) -> Option<i64> {
        let next = keys.iter().filter(|(_, s)| *s == State::Next).map(|(k, _)| k.activate_at).min();
        let active = keys.iter().find(|(_, s)| *s == State::Active).map(|(k, _)| k);
        next.or_else(|| Some(active?.activate_at + self.policy.period?))
    }

    /// Plans the next key now: published at once, signing after the publish lead. Returns it,
    /// or the key already planned.
    pub async fn rotate(&self, by: &str) -> anyhow::Result<StoredKey> {
        let now = nmos_auth_core::now_unix();
        let keys = self.store.all().await?;
        if let Some(planned) = keys.iter().find(|k| schedule::state(&keys, k, now) == State::Next) {
            return Ok(planned.clone());
        }
        let generation = keys.iter().map(|k| k.generation).max().map_or(0, |g| g + 1);
        self.create(&keys, generation, now + self.policy.lead).await?;
        self.tick().await?;
        let keys = self.store.all().await?;
        let key = keys.into_iter().find(|k| k.generation == generation).context("the planned key was not stored")?;
        let detail = format!("key {} planned: signs from {}", key.kid, nmos_auth_core::clock::utc(key.activate_at));
        self.events.record(Event::new("signing_key_rotated", by).detail(detail)).await;
        Ok(key)
    }

    /// Takes a (compromised) key out of the JWKS at once; if it was signing, a new key signs
    /// from now on. False when there is no such key or it was already removed.
    pub async fn remove(&self, kid: &str, by: &str) -> anyhow::Result<bool> {
        let removed = self.store.remove_by_operator(kid, nmos_auth_core::now_unix()).await?;
        if removed {
            self.events.record(Event::new("signing_key_removed", by).detail(format!("key {kid} removed")).warn()).await;
            {
                // Out of this replica's set at once: while its successor is made, nothing signs
                // (503) rather than the removed key.
                let _one_at_a_time = self.ticking.lock().await;
                self.load(&self.store.all().await?, nmos_auth_core::now_unix())?;
            }
            self.tick().await?;
        }
        Ok(removed)
    }

    /// Imports an operator's RSA key (PKCS#8 DER) with its certificate chain (base64 DER,
    /// leaf first): published at once, signing after the publish lead.
    pub async fn import(&self, pkcs8: &[u8], chain: Vec<String>, by: &str) -> anyhow::Result<StoredKey> {
        let now = nmos_auth_core::now_unix();
        let keys = self.store.all().await?;
        let generation = keys.iter().map(|k| k.generation).max().map_or(0, |g| g + 1);
        let key = keyring::stored(&self.kek, pkcs8, Some(chain), generation, now + self.policy.lead)?;
        anyhow::ensure!(!keys.iter().any(|k| k.kid == key.kid), "key {} is already here", key.kid);
        anyhow::ensure!(self.store.insert(&key).await?, "another key was planned at the same moment; try again");
        let detail = format!("key {} imported: signs from {}", key.kid, nmos_auth_core::clock::utc(key.activate_at));
        self.events.record(Event::new("signing_key_imported", by).detail(detail)).await;
        self.tick().await?;
        Ok(key)
    }

    /// Opens every stored private key that is not removed; returns how many (a check, e.g.
    /// after a key-encryption key rotation, that each is still usable).
    pub async fn open_all(&self) -> anyhow::Result<usize> {
        let keys = self.store.all().await?;
        let now = nmos_auth_core::now_unix();
        let mut opened = 0;
        for key in schedule::published(&keys, now) {
            self.open_key(key)?;
            opened += 1;
        }
        Ok(opened)
    }

    /// Re-encrypts every stored private key under `new` (one transaction). This replica keeps
    /// signing with the keys it has open; restart every keys replica with the new key-encryption
    /// key before the next rotation (until then they refuse to create keys).
    pub async fn rotate_kek(&self, new: &SealingKey) -> anyhow::Result<usize> {
        let mut total = 0;
        // A replica may store a key under the old key-encryption key while this runs: go again
        // until every row is under the new one (once all are, replicas refuse to create keys).
        for _ in 0..5 {
            let keys = self.store.all().await?;
            let mut sealed = Vec::new();
            for key in keys.iter().filter(|k| k.kek_id != new.id()) {
                let plain = self.kek.open(key.kid.as_bytes(), &key.encrypted_private_key).with_context(|| {
                    format!("signing key {} does not open with the configured key-encryption key", key.kid)
                })?;
                sealed.push((key.kid.clone(), new.seal(key.kid.as_bytes(), &plain)?));
            }
            if sealed.is_empty() {
                let detail = format!("{total} keys sealed again under key-encryption key {}", new.id());
                let by = nmos_auth_core::operator::Operator::Local.name();
                self.events.record(Event::new("key_encryption_key_rotated", by).detail(detail).warn()).await;
                return Ok(total);
            }
            self.store.reseal(&sealed, new.id()).await?;
            total += sealed.len();
        }
        anyhow::bail!("keys kept appearing under the old key-encryption key; stop the keys replicas and run this again")
    }

    /// Purges events past the audit retention on a schedule until the process ends.
    pub fn run_housekeeping(&self, interval: Duration, batch: u32) {
        let purges = self.events.purge(self.retention_secs).into_iter().collect();
        nmos_auth_core::housekeeping::run("keys", self.db.clone(), purges, interval, batch);
    }

    pub fn into_server(self: Arc<Self>) -> KeysServer<KeysService> {
        KeysServer::from_arc(self)
    }
}

impl Collect for KeysService {
    fn collect(&self) -> Readings<'_> {
        Box::pin(self.readings())
    }
}
