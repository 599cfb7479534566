super::token_store_impl!(PostgresTokenStore, sqlx::PgPool, sqlx::PgConnection);

impl PostgresTokenStore {
    pub fn new(pool: sqlx::PgPool) -> PostgresTokenStore {
        let options = (*pool.connect_options()).clone();
        let audit = nmos_auth_core::db::Dedicated::new(options, nmos_auth_core::db::POSTGRES_ACQUIRE_TIMEOUT);
        PostgresTokenStore(pool, audit)
    }

    /// A batch as one statement, so one round trip rather than one for each row and two more
    /// for a transaction around them: each column travels as one array, unnested by Postgres in
    /// the batch's order (the order of the rows' ids).
    async fn write_audit(conn: &mut sqlx::PgConnection, entries: &[super::AuditEntry]) -> sqlx::Result<()> {
        fn column(entries: &[super::AuditEntry], field: fn(&super::AuditEntry) -> &String) -> Vec<&str> {
            entries.iter().map(|e| field(e).as_str()).collect()
        }
        sqlx::query(
            "INSERT INTO tokens_audit (at, event, grant_type, client_id, subject, scope, jti) \
             SELECT at, event, grant_type, client_id, subject, scope, jti \
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[]) \
             WITH ORDINALITY AS batch (at, event, grant_type, client_id, subject, scope, jti, n) ORDER BY n",
        )
        .bind(entries.iter().map(|e| e.at).collect::<Vec<i64>>())
        .bind(column(entries, |e| &e.event))
        .bind(column(entries, |e| &e.grant_type))
        .bind(column(entries, |e| &e.client_id))
        .bind(column(entries, |e| &e.subject))
        .bind(column(entries, |e| &e.scope))
        .bind(column(entries, |e| &e.jti))
        .execute(conn)
        .await?;
        Ok(())
    }
}
