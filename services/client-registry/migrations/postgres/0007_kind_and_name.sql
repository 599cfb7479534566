-- The operator's console searches every client by kind and name, in the database (a page at a
-- time, however many clients there are): both are kept beside the metadata they come from.
-- machine (the client_credentials grant), public (no secret: PKCE) or confidential.
ALTER TABLE clients_clients ADD COLUMN kind TEXT NOT NULL DEFAULT 'confidential';
-- The client_name, lower-cased for searching.
ALTER TABLE clients_clients ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE clients_clients SET
    name = LOWER(COALESCE(metadata::jsonb ->> 'client_name', '')),
    kind = CASE
        WHEN metadata::jsonb ->> 'token_endpoint_auth_method' = 'none' THEN 'public'
        WHEN (metadata::jsonb -> 'grant_types') ? 'client_credentials' THEN 'machine'
        ELSE 'confidential'
    END;
CREATE INDEX clients_clients_kind ON clients_clients (kind);
CREATE INDEX clients_clients_issued_at ON clients_clients (issued_at);
