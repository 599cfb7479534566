-- Authorization codes (RFC 6749 §4.1.2): stored as SHA-256 digests, single use, bound to the
-- client, the redirect URI, the scope and the PKCE challenge.
CREATE TABLE tokens_authorization_codes (
    digest BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    -- Whether the authorization request named the redirect URI (then the token request must too).
    redirect_uri_sent BOOLEAN NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    expires_at BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);

-- A refresh-token family: every token rotated from one authorization. Reuse of a rotated
-- token revokes the whole family.
CREATE TABLE tokens_refresh_families (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    -- The code the family was issued from, so that a replayed code revokes it.
    code_digest BYTEA,
    created_at BIGINT NOT NULL,
    -- Rotation never extends this.
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE tokens_refresh_tokens (
    digest BYTEA PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES tokens_refresh_families (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX tokens_refresh_tokens_family ON tokens_refresh_tokens (family_id);
CREATE INDEX tokens_refresh_families_code ON tokens_refresh_families (code_digest);

-- Revoked access tokens (by jti), kept until they expire.
CREATE TABLE tokens_revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
