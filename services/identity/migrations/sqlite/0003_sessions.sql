-- People's signed-in sessions on the web pages (OWASP session management: a session ends on
-- the server, not only in the browser). The browser holds the id; this table its digest.
CREATE TABLE identity_sessions (
    id_digest TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX identity_sessions_username ON identity_sessions (username);
CREATE INDEX identity_sessions_expires_at ON identity_sessions (expires_at);
