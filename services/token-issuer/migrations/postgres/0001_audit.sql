-- IS-10 §4.6: every authorization is logged with its time, client and user; never a secret.
CREATE TABLE tokens_audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    grant_type TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    jti TEXT NOT NULL
);
