// Two transactions could both see an empty table: lock it for the first user.
super::user_store_impl!(PostgresUserStore, sqlx::PgPool, Some("LOCK TABLE identity_users IN SHARE ROW EXCLUSIVE MODE"));
