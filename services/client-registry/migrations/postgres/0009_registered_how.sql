-- How the client was registered: 'token' (an initial access token), 'page' (a signed-in user on
-- the web pages), 'approval' (anonymously, then approved by an administrator), 'open' (anonymously
-- under `registration = open`). Empty for clients registered before this column existed.
-- An 'open' client's redirect URIs are nobody's word, so the authorization endpoint sends it
-- errors only after someone signs in; an approved client's name, which the administrator saw
-- when approving it, cannot change through RFC 7592.
ALTER TABLE clients_clients ADD COLUMN registered_how TEXT NOT NULL DEFAULT '';
