-- private_key_jwt (RFC 7523): the assertion ids seen, kept until the assertion expires so that
-- a replay fails.
CREATE TABLE clients_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
