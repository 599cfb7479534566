CREATE TABLE identity_users (
    username TEXT PRIMARY KEY,
    -- argon2id, PHC string format
    password_hash TEXT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE identity_rights (
    username TEXT NOT NULL REFERENCES identity_users (username) ON DELETE CASCADE,
    api TEXT NOT NULL,
    access TEXT NOT NULL CHECK (access IN ('read', 'write')),
    PRIMARY KEY (username, api)
);
