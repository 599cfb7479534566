-- The operator's console: when each client last got a token and how many in the last hour
-- (the newest of a client's rows, found without reading the others), and every refresh-token
-- family of a client, to end them when it is disabled.
CREATE INDEX tokens_audit_client_at ON tokens_audit (client_id, at);
CREATE INDEX tokens_refresh_families_client ON tokens_refresh_families (client_id);
