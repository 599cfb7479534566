-- RFC 7592: the SHA-256 digest of the client's registration access token; NULL for clients
-- registered on the web pages, which are managed there instead.
ALTER TABLE clients_clients ADD COLUMN registration_token_digest BYTEA;
