-- A replayed code must revoke what was issued from it (RFC 6749 §4.1.2), also when the replay
-- races the first exchange: the replay marks the code, and the first exchange records the
-- access token it issued on the code, each under the code row's lock, so whichever comes
-- second sees the other and the token ends up revoked.
ALTER TABLE tokens_authorization_codes ADD COLUMN replayed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tokens_authorization_codes ADD COLUMN access_jti TEXT;
ALTER TABLE tokens_authorization_codes ADD COLUMN access_expires_at INTEGER;
