//! Storage of clients and initial access tokens: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresClientStore;
pub use sqlite::SqliteClientStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_clients.sql") }],
    postgres: &[Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_clients.sql") }],
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_digest: Option<Vec<u8>>,
    pub metadata: String,
    pub issued_at: i64,
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert_client(&self, client: &ClientRow) -> anyhow::Result<()>;
    async fn get_client(&self, client_id: &str) -> anyhow::Result<Option<ClientRow>>;
    async fn insert_initial_access_token(
        &self,
        digest: &[u8],
        description: &str,
        created_at: i64,
        expires_at: Option<i64>,
    ) -> anyhow::Result<()>;
    /// The expiry of the initial access token with this digest: `Some(None)` for one that
    /// never expires, `None` when there is no such token.
    async fn initial_access_token_expiry(&self, digest: &[u8]) -> anyhow::Result<Option<Option<i64>>>;
}

pub fn open(db: Db) -> Arc<dyn ClientStore> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteClientStore(pool)),
        Db::Postgres(pool) => Arc::new(PostgresClientStore(pool)),
    }
}

/// The queries are the same on both backends (both take `$n` placeholders); only the
/// migrations differ. Each backend instantiates this with its own pool type.
macro_rules! client_store_impl {
    ($store:ident, $pool:ty) => {
        pub struct $store(pub $pool);

        #[async_trait::async_trait]
        impl super::ClientStore for $store {
            async fn insert_client(&self, client: &super::ClientRow) -> anyhow::Result<()> {
                sqlx::query(
                    "INSERT INTO clients_clients (client_id, secret_digest, metadata, issued_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&client.client_id)
                .bind(&client.secret_digest)
                .bind(&client.metadata)
                .bind(client.issued_at)
                .execute(&self.0)
                .await?;
                Ok(())
            }

            async fn get_client(&self, client_id: &str) -> anyhow::Result<Option<super::ClientRow>> {
                let row: Option<(String, Option<Vec<u8>>, String, i64)> = sqlx::query_as(
                    "SELECT client_id, secret_digest, metadata, issued_at FROM clients_clients WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.0)
                .await?;
                Ok(row.map(|(client_id, secret_digest, metadata, issued_at)| super::ClientRow {
                    client_id,
                    secret_digest,
                    metadata,
                    issued_at,
                }))
            }

            async fn insert_initial_access_token(
                &self,
                digest: &[u8],
                description: &str,
                created_at: i64,
                expires_at: Option<i64>,
            ) -> anyhow::Result<()> {
                sqlx::query(
                    "INSERT INTO clients_initial_access_tokens (digest, description, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(digest)
                .bind(description)
                .bind(created_at)
                .bind(expires_at)
                .execute(&self.0)
                .await?;
                Ok(())
            }

            async fn initial_access_token_expiry(&self, digest: &[u8]) -> anyhow::Result<Option<Option<i64>>> {
                Ok(sqlx::query_scalar("SELECT expires_at FROM clients_initial_access_tokens WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&self.0)
                    .await?)
            }
        }
    };
}
use client_store_impl;
