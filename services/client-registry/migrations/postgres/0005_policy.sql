-- An administrator's policy for a machine client (JSON: scope, permissions, audience); NULL = defaults.
ALTER TABLE clients_clients ADD COLUMN policy TEXT;
