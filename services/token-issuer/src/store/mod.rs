//! Storage of the token issuer's audit log: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresTokenStore;
pub use sqlite::SqliteTokenStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_audit.sql") }],
    postgres: &[Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_audit.sql") }],
};

/// One audited authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub event: String,
    pub grant_type: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub jti: String,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Appends entries in one transaction.
    async fn audit(&self, entries: &[AuditEntry]) -> anyhow::Result<()>;
    /// The newest entries first.
    async fn recent_audit(&self, limit: i64) -> anyhow::Result<Vec<AuditEntry>>;
}

pub fn open(db: Db) -> Arc<dyn TokenStore> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteTokenStore(pool)),
        Db::Postgres(pool) => Arc::new(PostgresTokenStore(pool)),
    }
}

/// The queries are the same on both backends (both take `$n` placeholders); only the
/// migrations differ. Each backend instantiates this with its own pool type.
macro_rules! token_store_impl {
    ($store:ident, $pool:ty) => {
        pub struct $store(pub $pool);

        #[async_trait::async_trait]
        impl super::TokenStore for $store {
            async fn audit(&self, entries: &[super::AuditEntry]) -> anyhow::Result<()> {
                let mut tx = self.0.begin().await?;
                for e in entries {
                    sqlx::query(
                        "INSERT INTO tokens_audit (at, event, grant_type, client_id, subject, scope, jti) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(e.at)
                    .bind(&e.event)
                    .bind(&e.grant_type)
                    .bind(&e.client_id)
                    .bind(&e.subject)
                    .bind(&e.scope)
                    .bind(&e.jti)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn recent_audit(&self, limit: i64) -> anyhow::Result<Vec<super::AuditEntry>> {
                let rows: Vec<(i64, String, String, String, String, String, String)> = sqlx::query_as(
                    "SELECT at, event, grant_type, client_id, subject, scope, jti FROM tokens_audit \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.0)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at, event, grant_type, client_id, subject, scope, jti)| super::AuditEntry {
                        at,
                        event,
                        grant_type,
                        client_id,
                        subject,
                        scope,
                        jti,
                    })
                    .collect())
            }
        }
    };
}
use token_store_impl;
