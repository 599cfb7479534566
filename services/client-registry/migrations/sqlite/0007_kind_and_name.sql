-- The operator's console searches every client by kind and name, in the database (a page at a
-- time, however many clients there are): both are kept beside the metadata they come from.
-- machine (the client_credentials grant), public (no secret: PKCE) or confidential; '' until the
-- registry fills it in from the metadata when it opens (one rule, in Rust, for old rows and new).
ALTER TABLE clients_clients ADD COLUMN kind TEXT NOT NULL DEFAULT '';
-- The client_name, lower-cased and without control characters, for searching.
ALTER TABLE clients_clients ADD COLUMN name TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_clients_kind ON clients_clients (kind);
CREATE INDEX clients_clients_issued_at ON clients_clients (issued_at);
