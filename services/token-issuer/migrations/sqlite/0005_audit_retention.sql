-- The audit trail is kept for audit_retention_days; housekeeping deletes the oldest rows by time.
CREATE INDEX tokens_audit_at ON tokens_audit (at);
