//! Storage of signing keys: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresKeyStore;
pub use sqlite::SqliteKeyStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_signing_keys.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/sqlite/0002_lifecycle.sql") },
        Migration { version: 3, sql: nmos_auth_core::events_table!(sqlite, "keys") },
    ],
    postgres: &[
        Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_signing_keys.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/postgres/0002_lifecycle.sql") },
        Migration { version: 3, sql: nmos_auth_core::events_table!(postgres, "keys") },
    ],
};

/// A signing key as stored: public parts in the clear, the private key encrypted, and its
/// place in the rotation. Its state at any moment follows from the times (see `schedule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub n: String,
    pub e: String,
    pub encrypted_private_key: Vec<u8>,
    pub created_at: i64,
    /// Its place in the rotation: one key per generation, each replacing the one before.
    pub generation: i64,
    /// When it starts signing (it is published from `created_at`).
    pub activate_at: i64,
    /// When it leaves the JWKS; none while no successor has been planned.
    pub remove_at: Option<i64>,
    /// Removed at once by an operator (compromised), not by the schedule.
    pub removed_by_operator: bool,
    /// Its certificate chain, leaf first: base64 DER (the JWK `x5c`).
    pub x5c: Vec<String>,
    /// The fingerprint of the key-encryption key that sealed it.
    pub kek_id: String,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; false (and nothing stored) when its kid or generation is taken, as
    /// when another replica planned the same rotation first.
    async fn insert(&self, key: &StoredKey) -> nmos_auth_core::db::StoreResult<bool>;
    /// Every key, oldest generation first.
    async fn all(&self) -> nmos_auth_core::db::StoreResult<Vec<StoredKey>>;
    /// An operator's removal: brings a key's removal forward to `remove_at` (never later) and
    /// marks it the operator's, which the schedule never moves; false when nothing changed.
    async fn remove_by_operator(&self, kid: &str, remove_at: i64) -> nmos_auth_core::db::StoreResult<bool>;
    /// Sets the schedule's removal time of a key still published at `now` that no operator
    /// removed, later as well as earlier (its successor was removed before it signed).
    async fn schedule_removal(&self, kid: &str, remove_at: i64, now: i64) -> nmos_auth_core::db::StoreResult<bool>;
    /// Replaces every key's sealed private key (key-encryption key rotation), in one transaction.
    async fn reseal(&self, sealed: &[(String, Vec<u8>)], kek_id: &str) -> nmos_auth_core::db::StoreResult<()>;
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
        use nmos_auth_core::db::BeginWrite as _;

        pub struct $store(pub $pool);

        #[async_trait::async_trait]
        impl super::KeyStore for $store {
            async fn insert(&self, key: &super::StoredKey) -> nmos_auth_core::db::StoreResult<bool> {
                let state = if key.activate_at <= nmos_auth_core::now_unix() { "active" } else { "next" };
                let n = sqlx::query(
                    "INSERT INTO keys_signing_keys (kid, state, n, e, encrypted_private_key, created_at, generation, \
                     activate_at, remove_at, removed_by_operator, x5c, kek_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                )
                .bind(&key.kid)
                .bind(state)
                .bind(&key.n)
                .bind(&key.e)
                .bind(&key.encrypted_private_key)
                .bind(key.created_at)
                .bind(key.generation)
                .bind(key.activate_at)
                .bind(key.remove_at)
                .bind(key.removed_by_operator)
                .bind(serde_json::to_string(&key.x5c)?)
                .bind(&key.kek_id)
                .execute(&self.0)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn all(&self) -> nmos_auth_core::db::StoreResult<Vec<super::StoredKey>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT kid, n, e, encrypted_private_key, created_at, generation, activate_at, remove_at, \
                     removed_by_operator, x5c, kek_id FROM keys_signing_keys ORDER BY generation",
                )
                .fetch_all(&self.0)
                .await?;
                rows.iter()
                    .map(|row| {
                        let x5c: String = row.try_get("x5c")?;
                        Ok(super::StoredKey {
                            kid: row.try_get("kid")?,
                            n: row.try_get("n")?,
                            e: row.try_get("e")?,
                            encrypted_private_key: row.try_get("encrypted_private_key")?,
                            created_at: row.try_get("created_at")?,
                            generation: row.try_get("generation")?,
                            activate_at: row.try_get("activate_at")?,
                            remove_at: row.try_get("remove_at")?,
                            removed_by_operator: row.try_get("removed_by_operator")?,
                            x5c: serde_json::from_str(&x5c)?,
                            kek_id: row.try_get("kek_id")?,
                        })
                    })
                    .collect()
            }

            async fn remove_by_operator(&self, kid: &str, remove_at: i64) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE keys_signing_keys SET remove_at = $1, removed_by_operator = TRUE \
                     WHERE kid = $2 AND (remove_at IS NULL OR remove_at > $1)",
                )
                .bind(remove_at)
                .bind(kid)
                .execute(&self.0)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn schedule_removal(
                &self,
                kid: &str,
                remove_at: i64,
                now: i64,
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE keys_signing_keys SET remove_at = $1 \
                     WHERE kid = $2 AND NOT removed_by_operator AND (remove_at IS NULL OR remove_at > $3)",
                )
                .bind(remove_at)
                .bind(kid)
                .bind(now)
                .execute(&self.0)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn reseal(&self, sealed: &[(String, Vec<u8>)], kek_id: &str) -> nmos_auth_core::db::StoreResult<()> {
                let mut tx = self.0.begin_write().await?;
                for (kid, encrypted) in sealed {
                    let n = sqlx::query(
                        "UPDATE keys_signing_keys SET encrypted_private_key = $1, kek_id = $2 WHERE kid = $3",
                    )
                    .bind(encrypted)
                    .bind(kek_id)
                    .bind(kid)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        return Err(nmos_auth_core::db::StoreError::Conflict(format!(
                            "key {kid} disappeared during the re-encryption"
                        )));
                    }
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
use key_store_impl;
