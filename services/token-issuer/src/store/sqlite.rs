super::token_store_impl!(SqliteTokenStore, sqlx::SqlitePool);
