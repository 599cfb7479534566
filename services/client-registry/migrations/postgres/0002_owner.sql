-- Who registered a client on the web pages ('' for dynamic registrations).
ALTER TABLE clients_clients ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_clients_owner ON clients_clients (owner);
