//! Storage of the token issuer's audit log: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::ClientId;
use nmos_auth_core::db::{Db, Migration, Migrations};

pub use postgres::PostgresTokenStore;
pub use sqlite::SqliteTokenStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_audit.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/sqlite/0002_codes_and_refresh_tokens.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/sqlite/0003_family_access_tokens.sql") },
        Migration { version: 4, sql: include_str!("../../migrations/sqlite/0004_code_access_tokens.sql") },
        Migration { version: 5, sql: include_str!("../../migrations/sqlite/0005_audit_retention.sql") },
        Migration { version: 6, sql: include_str!("../../migrations/sqlite/0006_console.sql") },
        Migration { version: 7, sql: nmos_auth_core::events_table!(sqlite, "tokens") },
    ],
    postgres: &[
        Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_audit.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/postgres/0002_codes_and_refresh_tokens.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/postgres/0003_family_access_tokens.sql") },
        Migration { version: 4, sql: include_str!("../../migrations/postgres/0004_code_access_tokens.sql") },
        Migration { version: 5, sql: include_str!("../../migrations/postgres/0005_audit_retention.sql") },
        Migration { version: 6, sql: include_str!("../../migrations/postgres/0006_console.sql") },
        Migration { version: 7, sql: nmos_auth_core::events_table!(postgres, "tokens") },
    ],
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

/// An issued authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    pub digest: Vec<u8>,
    pub client_id: ClientId,
    pub username: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub expires_at: i64,
}

/// What presenting a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeUse {
    /// Its first use: the caller may exchange it.
    First(CodeRow),
    /// A replay: the code is marked, and what was issued from it so far is revoked (what
    /// its first use issues later is revoked as it is recorded, see [`TokenStore::record_issued`]).
    Replayed(CodeRow),
}

/// An access token just issued, and what it was issued from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedFrom<'a> {
    pub jti: &'a str,
    pub expires_at: i64,
    /// The digest of the authorization code it was exchanged for.
    pub code_digest: Option<&'a [u8]>,
    /// The refresh-token family it belongs to.
    pub family_id: Option<&'a str>,
}

/// A refresh-token family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRow {
    pub id: String,
    pub client_id: ClientId,
    pub username: String,
    pub scope: String,
    pub code_digest: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

/// What a presented refresh token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshLookup {
    pub family: FamilyRow,
    /// Already rotated: presenting it again is reuse.
    pub used: bool,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_code(&self, code: &CodeRow) -> nmos_auth_core::db::StoreResult<()>;
    /// Marks a code used, in one transaction with what a replay revokes; `None` for an
    /// unknown code.
    async fn consume_code(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<CodeUse>>;
    /// Stores a new family with its first refresh token.
    async fn create_family(&self, family: &FamilyRow, token_digest: &[u8]) -> nmos_auth_core::db::StoreResult<()>;
    async fn find_refresh_token(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<RefreshLookup>>;
    /// Marks `old` used and adds `new` to the same family; false if `old` was already used.
    async fn rotate_refresh_token(
        &self,
        old: &[u8],
        new: &[u8],
        family_id: &str,
        now: i64,
    ) -> nmos_auth_core::db::StoreResult<bool>;
    /// Revokes a family: its refresh tokens and the access tokens issued within it.
    async fn revoke_family(&self, family_id: &str) -> nmos_auth_core::db::StoreResult<()>;
    /// Gives back a code whose exchange failed on an outage before a token was issued from it,
    /// with the family started for it, so that the client's retry is not taken for a replay;
    /// false (nothing changed) when it was replayed or a token was recorded meanwhile.
    async fn release_code(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<bool>;
    /// Undoes a rotation whose refresh failed on an outage before its token was issued: `old`
    /// is current again and `new` is gone, unless the family was revoked meanwhile.
    async fn release_rotation(&self, old: &[u8], new: &[u8]) -> nmos_auth_core::db::StoreResult<bool>;
    /// Remembers an access token with the code and the family it came from, so that a replay
    /// of the code or a revocation of the family revokes it; if either happened meanwhile, it
    /// is revoked at once (and with a replayed code, its family too).
    async fn record_issued(&self, issued: &IssuedFrom<'_>) -> nmos_auth_core::db::StoreResult<()>;
    async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> nmos_auth_core::db::StoreResult<()>;
    async fn is_access_token_revoked(&self, jti: &str) -> nmos_auth_core::db::StoreResult<bool>;

    /// Appends entries in one statement (all or none), on a connection kept for the audit writer.
    async fn audit(&self, entries: &[AuditEntry]) -> nmos_auth_core::db::StoreResult<()>;
    /// The newest entries first.
    async fn recent_audit(&self, limit: i64) -> nmos_auth_core::db::StoreResult<Vec<AuditEntry>>;
    /// When a client last got a token (`None`: none in the audit log), and how many since `since`.
    async fn client_activity(&self, client_id: &str, since: i64)
    -> nmos_auth_core::db::StoreResult<(Option<i64>, i64)>;
    /// The tokens issued in a window, counted per client, subject and grant, the busiest first;
    /// and how many in all.
    async fn token_summary(&self, filter: &SummaryFilter) -> nmos_auth_core::db::StoreResult<(Vec<SummaryRow>, i64)>;
    /// Revokes every live refresh-token family of a client, as [`Self::revoke_family`] does
    /// one; how many were live.
    async fn revoke_client_families(&self, client_id: &str, now: i64) -> nmos_auth_core::db::StoreResult<u64>;
}

/// Which audit rows a token summary counts; empty strings match anything.
#[derive(Clone, Debug, Default)]
pub struct SummaryFilter {
    pub since: i64,
    pub until: i64,
    pub client_id: String,
    pub subject: String,
    pub limit: i64,
}

/// The tokens of one client, subject and grant in a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub client_id: String,
    pub subject: String,
    pub grant_type: String,
    pub issued: i64,
    pub first_at: i64,
    pub last_at: i64,
}

pub fn open(db: Db) -> Arc<dyn TokenStore> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteTokenStore::new(pool)),
        Db::Postgres(pool) => Arc::new(PostgresTokenStore::new(pool)),
    }
}

/// The queries are the same on both backends (both take `$n` placeholders), except the audit
/// writer's batch (`sqlite.rs`, `postgres.rs`); the migrations differ. Each backend
/// instantiates this with its own pool and connection types.
macro_rules! token_store_impl {
    ($store:ident, $pool:ty, $conn:ty) => {
        use nmos_auth_core::db::BeginWrite as _;

        /// The pool, and the audit writer's own connection.
        pub struct $store(pub $pool, pub(super) nmos_auth_core::db::Dedicated<$conn>);

        /// Puts the access tokens issued within a family on the revocation list.
        async fn revoke_family_access_tokens(
            tx: &mut sqlx::Transaction<'static, <$pool as nmos_auth_core::db::BeginWrite>::Database>,
            family_id: &str,
        ) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO tokens_revoked_access_tokens (jti, expires_at) SELECT jti, expires_at \
                 FROM tokens_family_access_tokens WHERE family_id = $1 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(family_id)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl super::TokenStore for $store {
            /// On the writer's own connection. When a connection kept from its last use turns
            /// out to be gone (the server restarted since), the batch is written once more on a
            /// new one: a batch that had reached the server just before may then be stored
            /// twice, so the audit log errs towards a row too many, never one too few.
            async fn audit(&self, entries: &[super::AuditEntry]) -> nmos_auth_core::db::StoreResult<()> {
                let mut retried = false;
                loop {
                    let mut conn = self.1.borrow().await?;
                    let written = nmos_auth_core::db::bounded(Self::write_audit(&mut conn, entries)).await;
                    match written.map_err(nmos_auth_core::db::StoreError::from) {
                        Ok(()) => {
                            conn.done();
                            return Ok(());
                        }
                        Err(e) if !retried && conn.retry_on_a_new_connection(&e) => {
                            tracing::debug!(error = %e, "the audit writer's connection was gone; writing on a new one");
                            retried = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }

            async fn insert_code(&self, c: &super::CodeRow) -> nmos_auth_core::db::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO tokens_authorization_codes (digest, client_id, username, redirect_uri, \
                     redirect_uri_sent, scope, code_challenge, code_challenge_method, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.digest)
                .bind(c.client_id.as_str())
                .bind(&c.username)
                .bind(&c.redirect_uri)
                .bind(c.redirect_uri_sent)
                .bind(&c.scope)
                .bind(&c.code_challenge)
                .bind(&c.code_challenge_method)
                .bind(c.expires_at)
                .execute(&self.0)
                .await?;
                Ok(())
            }

            async fn consume_code(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<super::CodeUse>> {
                type Row = (String, String, String, bool, String, Option<String>, Option<String>, i64);
                const COLUMNS: &str = "client_id, username, redirect_uri, redirect_uri_sent, scope, code_challenge, \
                                       code_challenge_method, expires_at";
                let code = |(client_id, username, redirect_uri, redirect_uri_sent, scope, code_challenge, code_challenge_method, expires_at): Row| {
                    super::CodeRow {
                        digest: digest.to_vec(),
                        client_id: nmos_auth_core::ClientId::new(client_id),
                        username,
                        redirect_uri,
                        redirect_uri_sent,
                        scope,
                        code_challenge,
                        code_challenge_method,
                        expires_at,
                    }
                };
                let mut tx = self.0.begin_write().await?;
                let first: Option<Row> = sqlx::query_as(&format!(
                    "UPDATE tokens_authorization_codes SET used = TRUE WHERE digest = $1 AND used = FALSE \
                     RETURNING {COLUMNS}"
                ))
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = first {
                    tx.commit().await?;
                    return Ok(Some(super::CodeUse::First(code(row))));
                }
                let replayed: Option<Row> = sqlx::query_as(&format!(
                    "UPDATE tokens_authorization_codes SET replayed = TRUE WHERE digest = $1 RETURNING {COLUMNS}"
                ))
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = replayed else {
                    return Ok(None);
                };
                // RFC 6749 §4.1.2: revoke what the code's first use issued. Rows are locked in
                // one order everywhere, the code, then its family, then the revocation list (a
                // revocation list entry is locked by its insert), so that no two transactions
                // can wait on each other.
                let families: Vec<String> = sqlx::query_scalar(
                    "UPDATE tokens_refresh_families SET revoked = TRUE WHERE code_digest = $1 RETURNING id",
                )
                .bind(digest)
                .fetch_all(&mut *tx)
                .await?;
                for family in &families {
                    revoke_family_access_tokens(&mut tx, family).await?;
                }
                sqlx::query(
                    "INSERT INTO tokens_revoked_access_tokens (jti, expires_at) SELECT access_jti, access_expires_at \
                     FROM tokens_authorization_codes WHERE digest = $1 AND access_jti IS NOT NULL \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(digest)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(super::CodeUse::Replayed(code(row))))
            }

            async fn create_family(&self, f: &super::FamilyRow, token_digest: &[u8]) -> nmos_auth_core::db::StoreResult<()> {
                let mut tx = self.0.begin_write().await?;
                sqlx::query(
                    "INSERT INTO tokens_refresh_families (id, client_id, username, scope, code_digest, created_at, \
                     expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&f.id)
                .bind(f.client_id.as_str())
                .bind(&f.username)
                .bind(&f.scope)
                .bind(&f.code_digest)
                .bind(f.created_at)
                .bind(f.expires_at)
                .bind(f.revoked)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO tokens_refresh_tokens (digest, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(token_digest)
                    .bind(&f.id)
                    .bind(f.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_refresh_token(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<Option<super::RefreshLookup>> {
                let row: Option<(bool, String, String, String, String, Option<Vec<u8>>, i64, i64, bool)> = sqlx::query_as(
                    "SELECT t.used, f.id, f.client_id, f.username, f.scope, f.code_digest, f.created_at, f.expires_at, \
                     f.revoked FROM tokens_refresh_tokens t JOIN tokens_refresh_families f ON f.id = t.family_id \
                     WHERE t.digest = $1",
                )
                .bind(digest)
                .fetch_optional(&self.0)
                .await?;
                Ok(row.map(|(used, id, client_id, username, scope, code_digest, created_at, expires_at, revoked)| {
                    super::RefreshLookup {
                        family: super::FamilyRow { id, client_id: nmos_auth_core::ClientId::new(client_id), username, scope, code_digest, created_at, expires_at, revoked },
                        used,
                    }
                }))
            }

            async fn rotate_refresh_token(&self, old: &[u8], new: &[u8], family_id: &str, now: i64) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                let rotated = sqlx::query("UPDATE tokens_refresh_tokens SET used = TRUE WHERE digest = $1 AND used = FALSE")
                    .bind(old)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if !rotated {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO tokens_refresh_tokens (digest, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(new)
                    .bind(family_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_family(&self, family_id: &str) -> nmos_auth_core::db::StoreResult<()> {
                let mut tx = self.0.begin_write().await?;
                sqlx::query("UPDATE tokens_refresh_families SET revoked = TRUE WHERE id = $1")
                    .bind(family_id)
                    .execute(&mut *tx)
                    .await?;
                revoke_family_access_tokens(&mut tx, family_id).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn release_code(&self, digest: &[u8]) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                let released = sqlx::query(
                    "UPDATE tokens_authorization_codes SET used = FALSE \
                     WHERE digest = $1 AND used = TRUE AND replayed = FALSE AND access_jti IS NULL",
                )
                .bind(digest)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if released {
                    // Its refresh token was never handed out.
                    sqlx::query("DELETE FROM tokens_refresh_families WHERE code_digest = $1")
                        .bind(digest)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(released)
            }

            async fn release_rotation(&self, old: &[u8], new: &[u8]) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                let released = sqlx::query(
                    "UPDATE tokens_refresh_tokens SET used = FALSE WHERE digest = $1 AND used = TRUE AND family_id IN \
                     (SELECT id FROM tokens_refresh_families WHERE revoked = FALSE)",
                )
                .bind(old)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if released {
                    sqlx::query("DELETE FROM tokens_refresh_tokens WHERE digest = $1").bind(new).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(released)
            }

            async fn record_issued(&self, issued: &super::IssuedFrom<'_>) -> nmos_auth_core::db::StoreResult<()> {
                // The code row first, then the family row: the order a replay locks them in.
                let mut tx = self.0.begin_write().await?;
                let mut replayed = false;
                if let Some(code) = issued.code_digest {
                    let flag: Option<bool> = sqlx::query_scalar(
                        "UPDATE tokens_authorization_codes SET access_jti = $1, access_expires_at = $2 \
                         WHERE digest = $3 RETURNING replayed",
                    )
                    .bind(issued.jti)
                    .bind(issued.expires_at)
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?;
                    replayed = flag.unwrap_or(false);
                }
                let mut revoked = replayed;
                if let Some(family) = issued.family_id {
                    sqlx::query("INSERT INTO tokens_family_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)")
                        .bind(issued.jti)
                        .bind(family)
                        .bind(issued.expires_at)
                        .execute(&mut *tx)
                        .await?;
                    let family_revoked: Option<bool> = sqlx::query_scalar(
                        "UPDATE tokens_refresh_families SET revoked = (revoked OR $1) WHERE id = $2 RETURNING revoked",
                    )
                    .bind(replayed)
                    .bind(family)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if family_revoked == Some(true) {
                        revoke_family_access_tokens(&mut tx, family).await?;
                    }
                    revoked |= family_revoked.unwrap_or(false);
                }
                if revoked {
                    sqlx::query(
                        "INSERT INTO tokens_revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                         ON CONFLICT (jti) DO NOTHING",
                    )
                    .bind(issued.jti)
                    .bind(issued.expires_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> nmos_auth_core::db::StoreResult<()> {
                sqlx::query("INSERT INTO tokens_revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                    .bind(jti)
                    .bind(expires_at)
                    .execute(&self.0)
                    .await?;
                Ok(())
            }

            async fn is_access_token_revoked(&self, jti: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let found: Option<String> = sqlx::query_scalar("SELECT jti FROM tokens_revoked_access_tokens WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&self.0)
                    .await?;
                Ok(found.is_some())
            }

            async fn client_activity(&self, client_id: &str, since: i64) -> nmos_auth_core::db::StoreResult<(Option<i64>, i64)> {
                // Two lookups in the (client_id, at) index: the newest row, and the rows since.
                Ok(sqlx::query_as(
                    "SELECT (SELECT MAX(at) FROM tokens_audit WHERE client_id = $1), \
                     (SELECT COUNT(*) FROM tokens_audit WHERE client_id = $1 AND at >= $2)",
                )
                .bind(client_id)
                .bind(since)
                .fetch_one(&self.0)
                .await?)
            }

            async fn token_summary(&self, f: &super::SummaryFilter) -> nmos_auth_core::db::StoreResult<(Vec<super::SummaryRow>, i64)> {
                // Only the conditions asked for, so that a client's rows are found through the
                // (client_id, at) index rather than by reading the whole window.
                let mut conditions = String::from("at >= $1 AND at < $2");
                let mut values: Vec<&str> = Vec::new();
                for (column, value) in [("client_id", &f.client_id), ("subject", &f.subject)] {
                    if !value.is_empty() {
                        values.push(value);
                        conditions.push_str(&format!(" AND {column} = ${}", values.len() + 2));
                    }
                }
                let rows_sql = format!(
                    "SELECT client_id, subject, grant_type, COUNT(*), MIN(at), MAX(at) FROM tokens_audit WHERE {conditions} \
                     GROUP BY client_id, subject, grant_type ORDER BY COUNT(*) DESC, client_id, subject, grant_type LIMIT ${}",
                    values.len() + 3
                );
                let mut rows = sqlx::query_as::<_, (String, String, String, i64, i64, i64)>(&rows_sql).bind(f.since).bind(f.until);
                for value in &values {
                    rows = rows.bind(*value);
                }
                let rows = rows.bind(f.limit).fetch_all(&self.0).await?;
                let total_sql = format!("SELECT COUNT(*) FROM tokens_audit WHERE {conditions}");
                let mut total = sqlx::query_scalar::<_, i64>(&total_sql).bind(f.since).bind(f.until);
                for value in &values {
                    total = total.bind(*value);
                }
                let total = total.fetch_one(&self.0).await?;
                let rows = rows
                    .into_iter()
                    .map(|(client_id, subject, grant_type, issued, first_at, last_at)| super::SummaryRow {
                        client_id,
                        subject,
                        grant_type,
                        issued,
                        first_at,
                        last_at,
                    })
                    .collect();
                Ok((rows, total))
            }

            async fn revoke_client_families(&self, client_id: &str, now: i64) -> nmos_auth_core::db::StoreResult<u64> {
                let mut tx = self.0.begin_write().await?;
                let live: Vec<String> = sqlx::query_scalar(
                    "UPDATE tokens_refresh_families SET revoked = TRUE \
                     WHERE client_id = $1 AND NOT revoked AND expires_at > $2 RETURNING id",
                )
                .bind(client_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for family_id in &live {
                    revoke_family_access_tokens(&mut tx, family_id).await?;
                }
                tx.commit().await?;
                Ok(live.len() as u64)
            }

            async fn recent_audit(&self, limit: i64) -> nmos_auth_core::db::StoreResult<Vec<super::AuditEntry>> {
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
