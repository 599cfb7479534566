-- Registered with no initial access token, signed-in user or approval (`registration = open`):
-- its redirect URIs are the anonymous registrant's say-so, so the authorization endpoint sends
-- it errors only after someone signs in. Clients registered before this column existed count as
-- vouched for.
ALTER TABLE clients_clients ADD COLUMN registered_openly BOOLEAN NOT NULL DEFAULT FALSE;
