-- One-time codes that let the first account on a new server become its administrator
-- (SHA-256 digests, hex). All are deleted when the first administrator is created.
CREATE TABLE identity_setup_codes (
    digest TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
