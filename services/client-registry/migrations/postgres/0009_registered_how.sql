-- How the client was registered: 'token' (an initial access token), 'page' (a signed-in user on
-- the web pages), 'approval' (anonymously, for an administrator to approve), 'open' (anonymously
-- under `registration = open`). An 'open' client's redirect URIs are nobody's word, so the
-- authorization endpoint sends it errors only after someone signs in; an 'approval' client's
-- name, which the administrator approved it by, cannot change through RFC 7592.
ALTER TABLE clients_clients ADD COLUMN registered_how TEXT NOT NULL DEFAULT '';
-- Clients registered before: from the owner, and from each registration's audit event (which
-- ends with how it was registered; a client name cannot come last). A client whose event has
-- been purged (audit_retention_days) stays '' and counts as vouched for.
UPDATE clients_clients SET registered_how = 'page' WHERE owner <> '';
UPDATE clients_clients SET registered_how = 'open' WHERE owner = '' AND client_id IN (SELECT client_id
    FROM clients_events WHERE event = 'client_registered' AND detail LIKE '%, registered openly (authorization code only)');
UPDATE clients_clients SET registered_how = 'approval' WHERE owner = '' AND client_id IN (SELECT client_id
    FROM clients_events WHERE event = 'client_registered' AND detail LIKE '%, registered waiting for approval');
UPDATE clients_clients SET registered_how = 'token' WHERE owner = '' AND client_id IN (SELECT client_id
    FROM clients_events WHERE event = 'client_registered' AND detail LIKE '%, registered with an initial access token');
