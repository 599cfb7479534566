super::token_store_impl!(SqliteTokenStore, sqlx::SqlitePool, sqlx::SqliteConnection);

impl SqliteTokenStore {
    pub fn new(pool: sqlx::SqlitePool) -> SqliteTokenStore {
        // The pool's file and settings, with a page cache of 256 KiB rather than 2 MiB: appending
        // rows touches only the last pages of the table and its indexes. A file in this process
        // opens in milliseconds, even on a loaded machine.
        let options = (*pool.connect_options()).clone().pragma("cache_size", "-256");
        let audit = nmos_auth_core::db::Dedicated::new(options, std::time::Duration::from_secs(2));
        SqliteTokenStore(pool, audit)
    }

    /// A batch as one statement, so one hand-off to the connection's thread rather than one for
    /// each row and two more for a transaction around them: the rows travel as one JSON array
    /// of arrays, which SQLite unpacks itself, in the batch's order (the order of the rows'
    /// ids). The statement text never changes, so it is prepared once.
    async fn write_audit(conn: &mut sqlx::SqliteConnection, entries: &[super::AuditEntry]) -> sqlx::Result<()> {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| (e.at, &e.event, &e.grant_type, &e.client_id, &e.subject, &e.scope, &e.jti))
            .collect();
        let rows = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query(
            "INSERT INTO tokens_audit (at, event, grant_type, client_id, subject, scope, jti) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
             FROM json_each($1) ORDER BY key",
        )
        .bind(rows)
        .execute(conn)
        .await?;
        Ok(())
    }
}
