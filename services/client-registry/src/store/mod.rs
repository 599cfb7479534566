//! Storage of clients and initial access tokens: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresClientStore;
pub use sqlite::SqliteClientStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_clients.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/sqlite/0002_owner.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/sqlite/0003_status.sql") },
        Migration { version: 4, sql: include_str!("../../migrations/sqlite/0004_assertions.sql") },
        Migration { version: 5, sql: include_str!("../../migrations/sqlite/0005_policy.sql") },
        Migration { version: 6, sql: include_str!("../../migrations/sqlite/0006_registration_token.sql") },
        Migration { version: 7, sql: include_str!("../../migrations/sqlite/0007_kind_and_name.sql") },
        Migration { version: 8, sql: nmos_auth_core::events_table!(sqlite, "clients") },
        Migration { version: 9, sql: include_str!("../../migrations/sqlite/0009_registered_how.sql") },
    ],
    postgres: &[
        Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_clients.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/postgres/0002_owner.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/postgres/0003_status.sql") },
        Migration { version: 4, sql: include_str!("../../migrations/postgres/0004_assertions.sql") },
        Migration { version: 5, sql: include_str!("../../migrations/postgres/0005_policy.sql") },
        Migration { version: 6, sql: include_str!("../../migrations/postgres/0006_registration_token.sql") },
        Migration { version: 7, sql: include_str!("../../migrations/postgres/0007_kind_and_name.sql") },
        Migration { version: 8, sql: nmos_auth_core::events_table!(postgres, "clients") },
        Migration { version: 9, sql: include_str!("../../migrations/postgres/0009_registered_how.sql") },
    ],
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_digest: Option<Vec<u8>>,
    pub metadata: String,
    pub issued_at: i64,
    /// The web user who registered it; empty for dynamic registrations.
    pub owner: String,
    /// "approved", "pending" or "disabled".
    pub status: String,
    /// "machine", "confidential" or "public", from the metadata (for searching).
    pub kind: String,
    /// The client_name, lower-cased (for searching).
    pub name: String,
    /// An administrator's policy, as JSON.
    pub policy: Option<String>,
    /// RFC 7592: the digest of the registration access token, for dynamic registrations.
    pub registration_token_digest: Option<Vec<u8>>,
    /// How it was registered: "token", "page", "approval" or "open" (empty: before this was
    /// kept).
    pub registered_how: String,
}

/// An administrator's search of every client; empty strings match anything.
#[derive(Clone, Debug, Default)]
pub struct ClientSearch {
    pub kind: String,
    pub status: String,
    /// Part of the lower-cased name.
    pub name: String,
    pub offset: i64,
    pub limit: i64,
}

impl ClientSearch {
    /// The name as a LIKE pattern: its `%`, `_` and `\` match themselves; control characters
    /// go, as they went from the stored names.
    fn name_pattern(&self) -> String {
        let mut pattern = String::from("%");
        for c in self.name.chars().filter(|c| !c.is_control()).flat_map(char::to_lowercase) {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert_client(&self, client: &ClientRow) -> nmos_auth_core::db::StoreResult<()>;
    async fn get_client(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<Option<ClientRow>>;
    /// A user's clients, newest first.
    async fn list_clients(&self, owner: &str) -> nmos_auth_core::db::StoreResult<Vec<ClientRow>>;
    /// Clients waiting for approval, oldest first.
    async fn list_pending(&self) -> nmos_auth_core::db::StoreResult<Vec<ClientRow>>;
    /// The clients a search matches, newest first, a page at a time, and how many match in all.
    async fn search(&self, search: &ClientSearch) -> nmos_auth_core::db::StoreResult<(Vec<ClientRow>, i64)>;
    /// Clients whose kind and name are not filled in yet (registered before they were kept):
    /// their ids and metadata.
    async fn unlisted(&self) -> nmos_auth_core::db::StoreResult<Vec<(String, String)>>;
    /// Fills in a client's kind and name.
    async fn set_listing(&self, client_id: &str, kind: &str, name: &str) -> nmos_auth_core::db::StoreResult<()>;
    /// Moves a client from status `from` to `to`; false when there is no such client in `from`.
    async fn set_status(&self, client_id: &str, from: &str, to: &str) -> nmos_auth_core::db::StoreResult<bool>;
    /// How many clients there are in each status.
    async fn count_by_status(&self) -> nmos_auth_core::db::StoreResult<Vec<(String, i64)>>;
    /// Marks a pending client approved; false when there is no such pending client.
    async fn approve(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<bool>;
    /// False when there is no such client.
    async fn delete_client(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<bool>;
    /// Replaces a client's metadata and secret digest (RFC 7592 read and update); false when
    /// there is no such client.
    async fn update_client(
        &self,
        client_id: &str,
        metadata: &str,
        kind: &str,
        name: &str,
        secret_digest: Option<&[u8]>,
    ) -> nmos_auth_core::db::StoreResult<bool>;
    /// Replaces a client's secret digest only; false when there is no such client.
    async fn set_secret(&self, client_id: &str, secret_digest: Option<&[u8]>) -> nmos_auth_core::db::StoreResult<bool>;
    /// Sets or clears a client's policy, and with `drop_registration_token` its RFC 7592
    /// registration access token; false when there is no such client.
    async fn set_policy(
        &self,
        client_id: &str,
        policy: Option<&str>,
        drop_registration_token: bool,
    ) -> nmos_auth_core::db::StoreResult<bool>;
    /// Records an assertion id until it expires; false if it was already seen (a replay).
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> nmos_auth_core::db::StoreResult<bool>;
    async fn insert_initial_access_token(
        &self,
        digest: &[u8],
        description: &str,
        created_at: i64,
        expires_at: Option<i64>,
    ) -> nmos_auth_core::db::StoreResult<()>;
    /// The expiry of the initial access token with this digest: `Some(None)` for one that
    /// never expires, `None` when there is no such token.
    async fn initial_access_token_expiry(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<Option<i64>>>;
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
        use nmos_auth_core::db::BeginWrite as _;

        pub struct $store(pub $pool);

        const CLIENT_COLUMNS: &str =
            "client_id, secret_digest, metadata, issued_at, owner, status, policy, registration_token_digest, kind, name, \
             registered_how";
        /// A search's conditions ($1 kind, $2 status, $3 name pattern; an empty string matches anything).
        const SEARCH_WHERE: &str = "($1 = '' OR kind = $1) AND ($2 = '' OR status = $2) AND name LIKE $3 ESCAPE '\\'";

        fn client_row<R: sqlx::Row>(row: R) -> nmos_auth_core::db::StoreResult<super::ClientRow>
        where
            for<'a> &'a str: sqlx::ColumnIndex<R>,
            for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        {
            Ok(super::ClientRow {
                client_id: row.try_get("client_id")?,
                secret_digest: row.try_get("secret_digest")?,
                metadata: row.try_get("metadata")?,
                issued_at: row.try_get("issued_at")?,
                owner: row.try_get("owner")?,
                status: row.try_get("status")?,
                policy: row.try_get("policy")?,
                registration_token_digest: row.try_get("registration_token_digest")?,
                kind: row.try_get("kind")?,
                name: row.try_get("name")?,
                registered_how: row.try_get("registered_how")?,
            })
        }

        #[async_trait::async_trait]
        impl super::ClientStore for $store {
            async fn insert_client(&self, client: &super::ClientRow) -> nmos_auth_core::db::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO clients_clients (client_id, secret_digest, metadata, issued_at, owner, status, policy, \
                     registration_token_digest, kind, name, registered_how) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&client.client_id)
                .bind(&client.secret_digest)
                .bind(&client.metadata)
                .bind(client.issued_at)
                .bind(&client.owner)
                .bind(&client.status)
                .bind(&client.policy)
                .bind(&client.registration_token_digest)
                .bind(&client.kind)
                .bind(&client.name)
                .bind(&client.registered_how)
                .execute(&self.0)
                .await?;
                Ok(())
            }

            async fn get_client(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<Option<super::ClientRow>> {
                sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients_clients WHERE client_id = $1"))
                    .bind(client_id)
                    .fetch_optional(&self.0)
                    .await?
                    .map(client_row)
                    .transpose()
            }

            async fn list_clients(&self, owner: &str) -> nmos_auth_core::db::StoreResult<Vec<super::ClientRow>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients_clients WHERE owner = $1 ORDER BY issued_at DESC, client_id"
                ))
                .bind(owner)
                .fetch_all(&self.0)
                .await?;
                rows.into_iter().map(client_row).collect()
            }

            async fn list_pending(&self) -> nmos_auth_core::db::StoreResult<Vec<super::ClientRow>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients_clients WHERE status = 'pending' ORDER BY issued_at, client_id"
                ))
                .fetch_all(&self.0)
                .await?;
                rows.into_iter().map(client_row).collect()
            }

            async fn search(&self, search: &super::ClientSearch) -> nmos_auth_core::db::StoreResult<(Vec<super::ClientRow>, i64)> {
                let pattern = search.name_pattern();
                let rows = sqlx::query(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients_clients WHERE {SEARCH_WHERE} \
                     ORDER BY issued_at DESC, client_id LIMIT $4 OFFSET $5"
                ))
                .bind(&search.kind)
                .bind(&search.status)
                .bind(&pattern)
                .bind(search.limit)
                .bind(search.offset)
                .fetch_all(&self.0)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM clients_clients WHERE {SEARCH_WHERE}"))
                    .bind(&search.kind)
                    .bind(&search.status)
                    .bind(&pattern)
                    .fetch_one(&self.0)
                    .await?;
                Ok((rows.into_iter().map(client_row).collect::<Result<_, _>>()?, total))
            }

            async fn unlisted(&self) -> nmos_auth_core::db::StoreResult<Vec<(String, String)>> {
                Ok(sqlx::query_as("SELECT client_id, metadata FROM clients_clients WHERE kind = ''")
                    .fetch_all(&self.0)
                    .await?)
            }

            async fn set_listing(&self, client_id: &str, kind: &str, name: &str) -> nmos_auth_core::db::StoreResult<()> {
                sqlx::query("UPDATE clients_clients SET kind = $1, name = $2 WHERE client_id = $3")
                    .bind(kind)
                    .bind(name)
                    .bind(client_id)
                    .execute(&self.0)
                    .await?;
                Ok(())
            }

            async fn set_status(&self, client_id: &str, from: &str, to: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("UPDATE clients_clients SET status = $1 WHERE client_id = $2 AND status = $3")
                    .bind(to)
                    .bind(client_id)
                    .bind(from)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn count_by_status(&self) -> nmos_auth_core::db::StoreResult<Vec<(String, i64)>> {
                Ok(sqlx::query_as("SELECT status, COUNT(*) FROM clients_clients GROUP BY status ORDER BY status")
                    .fetch_all(&self.0)
                    .await?)
            }

            async fn approve(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("UPDATE clients_clients SET status = 'approved' WHERE client_id = $1 AND status = 'pending'")
                    .bind(client_id)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn update_client(
                &self,
                client_id: &str,
                metadata: &str,
                kind: &str,
                name: &str,
                secret_digest: Option<&[u8]>,
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE clients_clients SET metadata = $1, secret_digest = $2, kind = $4, name = $5 WHERE client_id = $3",
                )
                    .bind(metadata)
                    .bind(secret_digest)
                    .bind(client_id)
                    .bind(kind)
                    .bind(name)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn set_secret(&self, client_id: &str, secret_digest: Option<&[u8]>) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("UPDATE clients_clients SET secret_digest = $1 WHERE client_id = $2")
                    .bind(secret_digest)
                    .bind(client_id)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn set_policy(
                &self,
                client_id: &str,
                policy: Option<&str>,
                drop_registration_token: bool,
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let sql = if drop_registration_token {
                    "UPDATE clients_clients SET policy = $1, registration_token_digest = NULL WHERE client_id = $2"
                } else {
                    "UPDATE clients_clients SET policy = $1 WHERE client_id = $2"
                };
                let n = sqlx::query(sql)
                    .bind(policy)
                    .bind(client_id)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn remember_assertion(&self, client_id: &str, jti: &str, expires_at: i64) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                // Ids past their expiry can never be replayed: purge them as we go.
                sqlx::query("DELETE FROM clients_assertion_jtis WHERE expires_at < $1")
                    .bind(nmos_auth_core::now_unix())
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query(
                    "INSERT INTO clients_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (client_id, jti) DO NOTHING",
                )
                .bind(client_id)
                .bind(jti)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn delete_client(&self, client_id: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("DELETE FROM clients_clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn insert_initial_access_token(
                &self,
                digest: &[u8],
                description: &str,
                created_at: i64,
                expires_at: Option<i64>,
            ) -> nmos_auth_core::db::StoreResult<()> {
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

            async fn initial_access_token_expiry(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<Option<i64>>> {
                Ok(sqlx::query_scalar("SELECT expires_at FROM clients_initial_access_tokens WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&self.0)
                    .await?)
            }
        }
    };
}
use client_store_impl;
