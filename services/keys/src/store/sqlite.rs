super::key_store_impl!(SqliteKeyStore, sqlx::SqlitePool);
