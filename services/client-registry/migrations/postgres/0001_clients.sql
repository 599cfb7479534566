CREATE TABLE clients_clients (
    client_id TEXT PRIMARY KEY,
    -- SHA-256 of the client secret; NULL for public clients.
    secret_digest BYTEA,
    -- The registered RFC 7591 metadata, as JSON.
    metadata TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);

CREATE TABLE clients_initial_access_tokens (
    -- SHA-256 of the token; the token itself is shown once and never stored.
    digest BYTEA PRIMARY KEY,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- NULL: never expires.
    expires_at BIGINT
);
