-- Access tokens issued within a refresh-token family, so that revoking the family (a replayed
-- code, a reused refresh token, an explicit revocation) revokes them too.
CREATE TABLE tokens_family_access_tokens (
    jti TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES tokens_refresh_families (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

CREATE INDEX tokens_family_access_tokens_family ON tokens_family_access_tokens (family_id);
