super::client_store_impl!(SqliteClientStore, sqlx::SqlitePool);
