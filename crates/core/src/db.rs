//! Database connections and per-service migrations for the two backends.
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// How long a request waits for a Postgres connection. While the database is down, sqlx keeps
/// trying to connect until then: this bounds how soon a request learns of the outage (a 503
/// well within a second: fail fast), and is far above the wait for a connection
/// of a working pool under load (milliseconds).
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long opening a database waits for Postgres to accept connections (it may be starting
/// with us); the split deployment's services wait longer, around the whole opening.
const POSTGRES_START_WAIT: Duration = Duration::from_secs(10);

/// What a store call can fail with. Every service maps it the same way: `Unavailable` is an
/// outage (503 `temporarily_unavailable`, which clients retry), the others are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now: down, restarting, every connection busy.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row the change needed is gone, or another change came first (a unique key taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: a query or a stored value that is wrong.
    #[error("database error: {0}")]
    Other(#[source] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e)
            }
            // admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03")) => {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Other(e.into()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> StoreError {
        StoreError::Other(anyhow::anyhow!("a stored value does not parse: {e}"))
    }
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A connection pool to one of the two supported backends.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One schema change, numbered from 1.
pub struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

/// A service's migrations, written separately for each backend.
pub struct Migrations {
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

impl Db {
    /// Connects to `sqlite://path` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing the SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                // A file in this process does not hang up: no liveness check each time a
                // connection is taken (each check is a hand-off to the connection's thread).
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .context("opening the SQLite database")?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // At start-up the database may still be starting: keep trying for a while (each
            // attempt is bound by the short acquire timeout that requests get later).
            let started = std::time::Instant::now();
            loop {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await
                    .context("connecting to Postgres");
                match pool {
                    Ok(pool) => return Ok(Db::Postgres(pool)),
                    Err(e) if started.elapsed() < POSTGRES_START_WAIT && crate::error::is_unavailable(&e) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            anyhow::bail!("unsupported database URL scheme (use sqlite:// or postgres://)")
        }
    }

    /// Whether the database answers a trivial query within two seconds.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let query = async {
            match self {
                Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), query).await.context("the database did not answer")??;
        Ok(())
    }

    /// Applies the service's migrations that have not run yet, recording them in
    /// `<service>_schema_migrations`. On Postgres an advisory lock serialises replicas
    /// that start at the same time.
    pub async fn migrate(&self, service: &str, migrations: &Migrations) -> anyhow::Result<()> {
        let table = format!("{service}_schema_migrations");
        let create =
            format!("CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)");
        let select = format!("SELECT version FROM {table}");
        let insert = format!("INSERT INTO {table} (version, applied_at) VALUES ($1, $2)");
        // The same steps on either backend's transaction type; Postgres takes its lock first.
        macro_rules! apply {
            ($tx:ident, $migrations:expr) => {{
                sqlx::query(&create).execute(&mut *$tx).await?;
                let applied: Vec<i64> = sqlx::query_scalar(&select).fetch_all(&mut *$tx).await?;
                for m in $migrations.iter().filter(|m| !applied.contains(&m.version)) {
                    sqlx::raw_sql(m.sql)
                        .execute(&mut *$tx)
                        .await
                        .with_context(|| format!("{service} migration {}", m.version))?;
                    sqlx::query(&insert).bind(m.version).bind(crate::now_unix()).execute(&mut *$tx).await?;
                }
                $tx.commit().await?;
            }};
        }
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                apply!(tx, migrations.sqlite);
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_key(service)).execute(&mut *tx).await?;
                apply!(tx, migrations.postgres);
            }
        }
        Ok(())
    }
}

/// A connection of its own for one writer that runs statement after statement, the token
/// issuer's audit log: taken from the pool, a connection costs a liveness check as it is taken
/// and another as it is given back (sqlx pings both ways), each a round trip to Postgres or a
/// hand-off to SQLite's connection thread, which on the token path cost more than the
/// statement itself. This one is checked only after it has been idle for a second (a restarted
/// Postgres has closed it), and dropped after any error, so that the next use opens a new one;
/// its user may retry a statement that failed on a connection kept unchecked
/// ([`Borrowed::retry_on_a_new_connection`]).
pub struct Dedicated<C: sqlx::Connection> {
    options: Arc<C::Options>,
    within: Duration,
    slot: tokio::sync::Mutex<Option<(C, Instant)>>,
}

/// How long a [`Dedicated`] connection may sit unused before it is checked again.
const DEDICATED_IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long one statement on a [`Dedicated`] connection may take: well above a busy commit,
/// and below the calls' deadline (5 s), so that callers waiting on it get a prompt outage.
const DEDICATED_STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);

/// An outage: the database did not answer `what` in time.
fn timed_out(what: &str, after: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the database did not answer {what} within {after:?}"),
    ))
}

/// Runs one statement on a [`Borrowed`] connection, bounded: a connection that does not answer
/// in time (a peer cut off without a reset, which TCP notices only after many minutes) fails
/// the call as an outage, and is dropped with the `Borrowed`, rather than holding up every
/// caller queued behind its one writer.
pub async fn bounded<T>(statement: impl Future<Output = sqlx::Result<T>>) -> sqlx::Result<T> {
    tokio::time::timeout(DEDICATED_STATEMENT_TIMEOUT, statement)
        .await
        .map_err(|_| timed_out("a statement", DEDICATED_STATEMENT_TIMEOUT))?
}

impl<C: sqlx::Connection> Dedicated<C> {
    /// Connects with `options` at first use. Opening the connection fails as an outage after
    /// `within`; a check that fails or takes longer opens a new connection instead.
    pub fn new(options: C::Options, within: Duration) -> Dedicated<C> {
        Dedicated { options: Arc::new(options), within, slot: tokio::sync::Mutex::new(None) }
    }

    /// The connection, for one use; [`Borrowed::done`] keeps it for the next.
    pub async fn borrow(&self) -> sqlx::Result<Borrowed<'_, C>> {
        use sqlx::ConnectOptions as _;
        let mut slot = self.slot.lock().await;
        let kept = match slot.take() {
            Some((mut conn, used)) if used.elapsed() >= DEDICATED_IDLE_CHECK => {
                match tokio::time::timeout(self.within, conn.ping()).await {
                    Ok(Ok(())) => Some(conn),
                    _ => None,
                }
            }
            kept => kept.map(|(conn, _)| conn),
        };
        let unchecked = kept.is_some();
        let conn = match kept {
            Some(conn) => conn,
            None => tokio::time::timeout(self.within, self.options.connect())
                .await
                .map_err(|_| timed_out("a new connection", self.within))??,
        };
        Ok(Borrowed { slot, conn, unchecked })
    }
}

/// A [`Dedicated`] connection in use. Dropped without [`Borrowed::done`] (an error), the
/// connection is closed, and the next borrow opens a new one.
pub struct Borrowed<'a, C> {
    slot: tokio::sync::MutexGuard<'a, Option<(C, Instant)>>,
    conn: C,
    unchecked: bool,
}

impl<C> Borrowed<'_, C> {
    /// Keeps the connection for the next use.
    pub fn done(self) {
        let Borrowed { mut slot, conn, .. } = self;
        *slot = Some((conn, Instant::now()));
    }

    /// Whether a statement that failed as an outage on this connection is worth another try on
    /// a new one: the connection was kept from its last use less than a second ago, unchecked,
    /// and the server may have ended it since (a restart, a fail-over) while being up now. A
    /// new connection that fails means the outage is real. A statement that timed out is not
    /// retried: a peer that went silent (a partition, a dead host) would make the caller wait
    /// for a new connection's bound on top of the statement's, past its own deadline.
    pub fn retry_on_a_new_connection(&self, error: &StoreError) -> bool {
        let timed_out =
            matches!(error, StoreError::Unavailable(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut);
        self.unchecked && error.is_unavailable() && !timed_out
    }
}

impl<C> std::ops::Deref for Borrowed<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> std::ops::DerefMut for Borrowed<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// Transactions that write. On SQLite (WAL) a transaction begun the default way, deferred,
/// takes its snapshot at its first read and asks for the write lock only at its first write;
/// if another connection committed in between, that write fails at once with SQLITE_BUSY
/// (or SQLITE_BUSY_SNAPSHOT), which no busy timeout retries: "database is locked" under
/// concurrent requests. `BEGIN IMMEDIATE` takes the write lock first, waiting its turn under
/// the busy timeout, so a read-then-write transaction cannot be overtaken. On Postgres rows
/// are locked as they are written, and a transaction begins as usual.
pub trait BeginWrite {
    type Database: sqlx::Database;

    fn begin_write(&self) -> impl Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Database>>> + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;

    fn begin_write(&self) -> impl Future<Output = sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;

    fn begin_write(&self) -> impl Future<Output = sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>>> + Send {
        self.begin()
    }
}

/// A stable advisory-lock key per service (FNV-1a of its name).
fn lock_key(service: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in service.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, OAuthError};

    #[test]
    fn store_errors_are_outages_or_faults_everywhere_alike() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for outage in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::Io(refused)] {
            let e = StoreError::from(outage);
            assert!(e.is_unavailable(), "{e}");
            assert_eq!(OAuthError::from(e).code, ErrorCode::TemporarilyUnavailable);
        }
        for fault in [StoreError::from(sqlx::Error::RowNotFound), StoreError::Conflict("gone".into())] {
            assert!(!fault.is_unavailable(), "{fault}");
            assert_eq!(OAuthError::from(fault).code, ErrorCode::ServerError);
        }
        // Through anyhow (the keys service's own errors) the outage is still recognised.
        let wrapped = anyhow::Error::from(StoreError::from(sqlx::Error::PoolTimedOut)).context("re-reading the keys");
        assert!(crate::error::is_unavailable(&wrapped));
    }
}
