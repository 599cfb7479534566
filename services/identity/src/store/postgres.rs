super::user_store_impl!(PostgresUserStore, sqlx::PgPool);
