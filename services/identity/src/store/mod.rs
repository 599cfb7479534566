//! Storage of users and their rights: a trait with a SQLite and a Postgres implementation.
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use nmos_auth_core::db::{Db, Migration, Migrations};
use nmos_auth_core::{Access, AccessRights, NmosApi};

pub use postgres::PostgresUserStore;
pub use sqlite::SqliteUserStore;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_users.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/sqlite/0002_setup_codes.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/sqlite/0003_sessions.sql") },
        Migration { version: 4, sql: nmos_auth_core::events_table!(sqlite, "identity") },
    ],
    postgres: &[
        Migration { version: 1, sql: include_str!("../../migrations/postgres/0001_users.sql") },
        Migration { version: 2, sql: include_str!("../../migrations/postgres/0002_setup_codes.sql") },
        Migration { version: 3, sql: include_str!("../../migrations/postgres/0003_sessions.sql") },
        Migration { version: 4, sql: nmos_auth_core::events_table!(postgres, "identity") },
    ],
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub rights: AccessRights,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user with its rights; false when the username is taken.
    async fn create(&self, user: &UserRecord) -> nmos_auth_core::db::StoreResult<bool>;
    /// Inserts a user only if there are no users at all and `setup_code` (a digest) is one of
    /// the stored setup codes made after `made_after` (unix seconds), atomically (the first
    /// administrator); then deletes every setup code. False otherwise.
    async fn create_first(
        &self,
        user: &UserRecord,
        setup_code: &str,
        made_after: i64,
    ) -> nmos_auth_core::db::StoreResult<bool>;
    /// Stores a setup code's digest, made at `at`, and deletes the codes made before
    /// `expired_before`.
    async fn add_setup_code(&self, digest: &str, at: i64, expired_before: i64) -> nmos_auth_core::db::StoreResult<()>;
    async fn get(&self, username: &str) -> nmos_auth_core::db::StoreResult<Option<UserRecord>>;
    async fn list(&self) -> nmos_auth_core::db::StoreResult<Vec<UserRecord>>;
    /// False when there is no such user.
    async fn set_admin(&self, username: &str, admin: bool) -> nmos_auth_core::db::StoreResult<bool>;
    /// Sets the listed APIs' access; false when there is no such user.
    async fn set_rights(&self, username: &str, rights: &[(NmosApi, Access)]) -> nmos_auth_core::db::StoreResult<bool>;
    /// False when there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool) -> nmos_auth_core::db::StoreResult<bool>;
    /// Removes a user and their rights; false when there is no such user.
    async fn delete(&self, username: &str) -> nmos_auth_core::db::StoreResult<bool>;
    async fn count(&self) -> nmos_auth_core::db::StoreResult<i64>;
    /// Replaces a user's password hash and ends all their sessions; false when there is no
    /// such user.
    async fn set_password(&self, username: &str, password_hash: &str) -> nmos_auth_core::db::StoreResult<bool>;
    /// Records a session (its id's digest), first removing every session that has expired, so
    /// that the table holds at most the sessions of one lifetime.
    async fn start_session(
        &self,
        id_digest: &str,
        username: &str,
        now: i64,
        expires_at: i64,
    ) -> nmos_auth_core::db::StoreResult<()>;
    /// The user of a session that has not expired at `now`.
    async fn session_user(&self, id_digest: &str, now: i64) -> nmos_auth_core::db::StoreResult<Option<String>>;
    /// Ends one session; false when there was none.
    async fn end_session(&self, id_digest: &str) -> nmos_auth_core::db::StoreResult<bool>;
    /// Ends all of a user's sessions; how many there were.
    async fn end_sessions(&self, username: &str) -> nmos_auth_core::db::StoreResult<u64>;
}

pub fn open(db: Db) -> Arc<dyn UserStore> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteUserStore(pool)),
        Db::Postgres(pool) => Arc::new(PostgresUserStore(pool)),
    }
}

fn rights_from_rows(rows: impl Iterator<Item = (String, String)>) -> AccessRights {
    let mut rights = AccessRights::default();
    for (api, access) in rows {
        // Rows for APIs this build does not know are kept in the table but not granted.
        if let (Some(api), Some(access)) = (NmosApi::parse(&api), Access::parse(&access)) {
            rights.set(api, access);
        }
    }
    rights
}

/// The queries are the same on both backends (both take `$n` placeholders); only the
/// migrations differ, and the lock that makes "the first user" atomic (`$first_lock`: a
/// statement run first in that transaction, where a single INSERT is not enough on its own).
/// Each backend instantiates this with its own pool type.
macro_rules! user_store_impl {
    ($store:ident, $pool:ty, $first_lock:expr) => {
        use nmos_auth_core::db::BeginWrite as _;

        pub struct $store(pub $pool);

        const USER_COLUMNS: &str = "username, password_hash, admin, disabled, created_at";

        fn user_from_row<R: sqlx::Row>(
            row: &R,
            rights: nmos_auth_core::AccessRights,
        ) -> nmos_auth_core::db::StoreResult<super::UserRecord>
        where
            for<'a> &'a str: sqlx::ColumnIndex<R>,
            for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        {
            Ok(super::UserRecord {
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                admin: row.try_get("admin")?,
                disabled: row.try_get("disabled")?,
                created_at: row.try_get("created_at")?,
                rights,
            })
        }

        impl $store {
            /// Runs `sql` (an INSERT of the user that may insert nothing) after `lock`, and if it
            /// inserted the user, the user's rights, in one transaction.
            async fn insert_user(
                &self,
                user: &super::UserRecord,
                sql: &str,
                lock: Option<&str>,
                setup_code: Option<(&str, i64)>,
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let mut insert = sqlx::query(sql)
                    .bind(&user.username)
                    .bind(&user.password_hash)
                    .bind(user.admin)
                    .bind(user.disabled)
                    .bind(user.created_at);
                if let Some((code, made_after)) = setup_code {
                    insert = insert.bind(code).bind(made_after);
                }
                let inserted = insert.execute(&mut *tx).await?.rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                if setup_code.is_some() {
                    // The first administrator exists: no code may make another.
                    sqlx::query("DELETE FROM identity_setup_codes").execute(&mut *tx).await?;
                }
                for api in nmos_auth_core::NmosApi::ALL {
                    let access = user.rights.get(api);
                    if access != nmos_auth_core::Access::None {
                        sqlx::query("INSERT INTO identity_rights (username, api, access) VALUES ($1, $2, $3)")
                            .bind(&user.username)
                            .bind(api.as_str())
                            .bind(access.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }

        #[async_trait::async_trait]
        impl super::UserStore for $store {
            async fn create(&self, user: &super::UserRecord) -> nmos_auth_core::db::StoreResult<bool> {
                let sql = "INSERT INTO identity_users (username, password_hash, admin, disabled, created_at) \
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING";
                self.insert_user(user, sql, None, None).await
            }

            async fn create_first(
                &self,
                user: &super::UserRecord,
                setup_code: &str,
                made_after: i64,
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let sql = "INSERT INTO identity_users (username, password_hash, admin, disabled, created_at) \
                           SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM identity_users) \
                           AND EXISTS (SELECT 1 FROM identity_setup_codes WHERE digest = $6 AND created_at > $7)";
                self.insert_user(user, sql, $first_lock, Some((setup_code, made_after))).await
            }

            async fn add_setup_code(
                &self,
                digest: &str,
                at: i64,
                expired_before: i64,
            ) -> nmos_auth_core::db::StoreResult<()> {
                let mut tx = self.0.begin_write().await?;
                sqlx::query("DELETE FROM identity_setup_codes WHERE created_at < $1")
                    .bind(expired_before)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO identity_setup_codes (digest, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(digest)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get(&self, username: &str) -> nmos_auth_core::db::StoreResult<Option<super::UserRecord>> {
                let Some(row) = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM identity_users WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.0)
                    .await?
                else {
                    return Ok(None);
                };
                let rights: Vec<(String, String)> =
                    sqlx::query_as("SELECT api, access FROM identity_rights WHERE username = $1")
                        .bind(username)
                        .fetch_all(&self.0)
                        .await?;
                Ok(Some(user_from_row(&row, super::rights_from_rows(rights.into_iter()))?))
            }

            async fn list(&self) -> nmos_auth_core::db::StoreResult<Vec<super::UserRecord>> {
                let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM identity_users ORDER BY username"))
                    .fetch_all(&self.0)
                    .await?;
                let rights: Vec<(String, String, String)> =
                    sqlx::query_as("SELECT username, api, access FROM identity_rights").fetch_all(&self.0).await?;
                rows.iter()
                    .map(|row| {
                        use sqlx::Row;
                        let username: String = row.try_get("username")?;
                        let own = rights
                            .iter()
                            .filter(|(u, _, _)| *u == username)
                            .map(|(_, api, access)| (api.clone(), access.clone()));
                        user_from_row(row, super::rights_from_rows(own))
                    })
                    .collect()
            }

            async fn set_admin(&self, username: &str, admin: bool) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("UPDATE identity_users SET admin = $1 WHERE username = $2")
                    .bind(admin)
                    .bind(username)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn set_disabled(&self, username: &str, disabled: bool) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("UPDATE identity_users SET disabled = $1 WHERE username = $2")
                    .bind(disabled)
                    .bind(username)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn delete(&self, username: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                sqlx::query("DELETE FROM identity_rights WHERE username = $1").bind(username).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM identity_sessions WHERE username = $1").bind(username).execute(&mut *tx).await?;
                let n = sqlx::query("DELETE FROM identity_users WHERE username = $1")
                    .bind(username)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn count(&self) -> nmos_auth_core::db::StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM identity_users").fetch_one(&self.0).await?)
            }

            async fn set_password(&self, username: &str, password_hash: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                let n = sqlx::query("UPDATE identity_users SET password_hash = $1 WHERE username = $2")
                    .bind(password_hash)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM identity_sessions WHERE username = $1").bind(username).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn start_session(
                &self,
                id_digest: &str,
                username: &str,
                now: i64,
                expires_at: i64,
            ) -> nmos_auth_core::db::StoreResult<()> {
                let mut tx = self.0.begin_write().await?;
                sqlx::query("DELETE FROM identity_sessions WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO identity_sessions (id_digest, username, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id_digest)
                .bind(username)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session_user(&self, id_digest: &str, now: i64) -> nmos_auth_core::db::StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT username FROM identity_sessions WHERE id_digest = $1 AND expires_at > $2")
                    .bind(id_digest)
                    .bind(now)
                    .fetch_optional(&self.0)
                    .await?)
            }

            async fn end_session(&self, id_digest: &str) -> nmos_auth_core::db::StoreResult<bool> {
                let n = sqlx::query("DELETE FROM identity_sessions WHERE id_digest = $1")
                    .bind(id_digest)
                    .execute(&self.0)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn end_sessions(&self, username: &str) -> nmos_auth_core::db::StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM identity_sessions WHERE username = $1")
                    .bind(username)
                    .execute(&self.0)
                    .await?
                    .rows_affected())
            }

            async fn set_rights(
                &self,
                username: &str,
                rights: &[(nmos_auth_core::NmosApi, nmos_auth_core::Access)],
            ) -> nmos_auth_core::db::StoreResult<bool> {
                let mut tx = self.0.begin_write().await?;
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT username FROM identity_users WHERE username = $1")
                        .bind(username)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                for (api, access) in rights {
                    if *access == nmos_auth_core::Access::None {
                        sqlx::query("DELETE FROM identity_rights WHERE username = $1 AND api = $2")
                            .bind(username)
                            .bind(api.as_str())
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        sqlx::query(
                            "INSERT INTO identity_rights (username, api, access) VALUES ($1, $2, $3) \
                             ON CONFLICT (username, api) DO UPDATE SET access = excluded.access",
                        )
                        .bind(username)
                        .bind(api.as_str())
                        .bind(access.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
use user_store_impl;
