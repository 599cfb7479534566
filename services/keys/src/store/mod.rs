//! Storage of signing keys: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresKeyStore;
pub use sqlite::SqliteKeyStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_signing_keys.sql") }],
    postgres: &[Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_signing_keys.sql") }],
};

/// A signing key as stored: public parts in the clear, the private key encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub state: KeyState,
    pub n: String,
    pub e: String,
    pub encrypted_private_key: Vec<u8>,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published in the JWKS, not yet used for signing.
    Next,
    /// Signs new tokens.
    Active,
    /// No longer published.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    fn parse(s: &str) -> anyhow::Result<KeyState> {
        match s {
            "next" => Ok(KeyState::Next),
            "active" => Ok(KeyState::Active),
            "retired" => Ok(KeyState::Retired),
            _ => anyhow::bail!("unknown key state {s:?}"),
        }
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; a key with the same kid already there is left as it is.
    async fn insert(&self, key: &StoredKey) -> anyhow::Result<()>;
    /// Every key that is not retired, oldest first.
    async fn published(&self) -> anyhow::Result<Vec<StoredKey>>;
}

pub fn open(db: Db) -> Arc<dyn KeyStore> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteKeyStore(pool)),
        Db::Postgres(pool) => Arc::new(PostgresKeyStore(pool)),
    }
}

/// The queries are the same on both backends (both take `$n` placeholders); only the
/// migrations differ. Each backend instantiates this with its own pool type.
macro_rules! key_store_impl {
    ($store:ident, $pool:ty) => {
        pub struct $store(pub $pool);

        #[async_trait::async_trait]
        impl super::KeyStore for $store {
            async fn insert(&self, key: &super::StoredKey) -> anyhow::Result<()> {
                sqlx::query(
                    "INSERT INTO keys_signing_keys (kid, state, n, e, encrypted_private_key, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kid) DO NOTHING",
                )
                .bind(&key.kid)
                .bind(key.state.as_str())
                .bind(&key.n)
                .bind(&key.e)
                .bind(&key.encrypted_private_key)
                .bind(key.created_at)
                .execute(&self.0)
                .await?;
                Ok(())
            }

            async fn published(&self) -> anyhow::Result<Vec<super::StoredKey>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT kid, state, n, e, encrypted_private_key, created_at FROM keys_signing_keys \
                     WHERE state <> 'retired' ORDER BY created_at, kid",
                )
                .fetch_all(&self.0)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(super::StoredKey {
                            kid: row.try_get("kid")?,
                            state: super::KeyState::parse(row.try_get("state")?)?,
                            n: row.try_get("n")?,
                            e: row.try_get("e")?,
                            encrypted_private_key: row.try_get("encrypted_private_key")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}
use key_store_impl;
