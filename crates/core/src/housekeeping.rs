//! Purging rows that can no longer matter (expired codes, refresh families, remembered token
//! ids) in bounded batches, so that no statement holds locks for long, and so that several
//! replicas doing it at once only share the work.
use std::time::Duration;

use crate::db::Db;

/// One kind of expired row: `sql` deletes at most `$2` rows whose time is before `$1`.
#[derive(Clone, Copy)]
pub struct Purge {
    pub table: &'static str,
    pub sql: &'static str,
    /// How long after its own expiry a row is still needed (seconds).
    pub keep_for: i64,
}

/// Deletes every row `purge` selects, `batch` at a time; returns how many went.
pub async fn purge(db: &Db, purge: &Purge, now: i64, batch: u32) -> anyhow::Result<u64> {
    let before = now - purge.keep_for;
    let mut total = 0;
    loop {
        let removed = match db {
            Db::Sqlite(pool) => {
                sqlx::query(purge.sql).bind(before).bind(i64::from(batch)).execute(pool).await?.rows_affected()
            }
            Db::Postgres(pool) => {
                sqlx::query(purge.sql).bind(before).bind(i64::from(batch)).execute(pool).await?.rows_affected()
            }
        };
        total += removed;
        if removed < u64::from(batch) {
            return Ok(total);
        }
        // Let requests have the database between batches.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `purges` every `interval` until the process ends; logs and counts what went.
pub fn run(service: &'static str, db: Db, purges: Vec<Purge>, interval: Duration, batch: u32) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let now = crate::now_unix();
            for p in &purges {
                match purge(&db, p, now, batch).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(service, table = p.table, removed = n, "housekeeping");
                        crate::telemetry::housekeeping_removed(p.table, n);
                    }
                    Err(e) => {
                        tracing::warn!(service, table = p.table, error = %format!("{e:#}"), "housekeeping failed")
                    }
                }
            }
        }
    });
}
