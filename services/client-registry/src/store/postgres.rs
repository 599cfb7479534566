super::client_store_impl!(PostgresClientStore, sqlx::PgPool);
