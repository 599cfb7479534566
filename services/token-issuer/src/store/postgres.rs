super::token_store_impl!(PostgresTokenStore, sqlx::PgPool);
