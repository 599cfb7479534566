super::user_store_impl!(SqliteUserStore, sqlx::SqlitePool);
