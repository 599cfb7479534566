//! The keys service: RSA signing keys, generated on first start, encrypted at rest under the
//! key-encryption key, used to sign (RS512) and published as a JWK Set.
#![forbid(unsafe_code)]

mod grpc;

pub mod keyring;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use nmos_auth_core::db::Db;
use nmos_auth_core::sealing::SealingKey;
use nmos_auth_core::{Config, ErrorCode, OAuthError};
use nmos_auth_proto::Jwk;
use nmos_auth_proto::keys_server::KeysServer;
use tonic::Status;

use crate::keyring::{SigningKey, VerifyingKey};
use crate::store::{KeyState, KeyStore};

pub struct KeysService {
    active: SigningKey,
    jwks: Vec<Jwk>,
    verifying: Vec<VerifyingKey>,
}

impl KeysService {
    /// Opens the key store and loads the active key, creating one on first start.
    pub async fn open(config: &Config) -> anyhow::Result<KeysService> {
        let kek = config.key_encryption_key()?;
        let db = Db::connect(&config.database_url("keys")).await?;
        db.migrate("keys", &store::MIGRATIONS).await?;
        let store = store::open(db);
        KeysService::load(store.as_ref(), &kek).await
    }

    async fn load(store: &dyn KeyStore, kek: &SealingKey) -> anyhow::Result<KeysService> {
        let mut published = store.published().await?;
        if !published.iter().any(|k| k.state == KeyState::Active) {
            let key = keyring::generate(kek, KeyState::Active)?;
            store.insert(&key).await?;
            tracing::info!(kid = %key.kid, "created the first signing key (RSA-2048, RS512)");
            // Re-read: a replica starting at the same moment may have stored its own key
            // first, and every replica must pick the same one (the oldest).
            published = store.published().await?;
        }
        let active = published
            .iter()
            .find(|k| k.state == KeyState::Active)
            .context("no active signing key after creating one")?;
        Ok(KeysService {
            active: SigningKey::open(active, kek)?,
            jwks: published.iter().map(keyring::jwk).collect(),
            verifying: published.iter().map(VerifyingKey::new).collect::<anyhow::Result<_>>()?,
        })
    }

    /// Signs a claims set (a JSON object) with the active key; returns the JWS and its kid.
    pub fn sign(&self, claims_json: &[u8]) -> Result<(String, String), Status> {
        let trimmed = claims_json.trim_ascii_start();
        if !trimmed.starts_with(b"{") || serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_err() {
            return Err(Status::invalid_argument("claims_json must be a JSON object"));
        }
        let jws = self.active.sign(claims_json).map_err(|e| Status::internal(e.to_string()))?;
        Ok((jws, self.active.kid.clone()))
    }

    /// Checks a token this server issued: its claims and the kid that signed it.
    pub fn verify(&self, jws: &str) -> Result<(Vec<u8>, String), OAuthError> {
        keyring::verify(&self.verifying, jws).map_err(|e| OAuthError::new(ErrorCode::InvalidToken, e.to_string()))
    }

    pub fn jwks(&self) -> &[Jwk] {
        &self.jwks
    }

    pub fn into_server(self: Arc<Self>) -> KeysServer<KeysService> {
        KeysServer::from_arc(self)
    }
}
