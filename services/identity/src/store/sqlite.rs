// SQLite runs one write statement at a time: INSERT ... WHERE NOT EXISTS is atomic as it is.
super::user_store_impl!(SqliteUserStore, sqlx::SqlitePool, None);
