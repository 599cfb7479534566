super::key_store_impl!(PostgresKeyStore, sqlx::PgPool);
