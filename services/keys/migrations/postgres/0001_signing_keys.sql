CREATE TABLE keys_signing_keys (
    kid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    n TEXT NOT NULL,
    e TEXT NOT NULL,
    -- AES-256-GCM under the key-encryption key: 12-byte nonce, then ciphertext and tag; the kid is the AAD.
    encrypted_private_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
