-- approved, or pending until an administrator approves it (registration = approval).
ALTER TABLE clients_clients ADD COLUMN status TEXT NOT NULL DEFAULT 'approved';
CREATE INDEX clients_clients_status ON clients_clients (status);
