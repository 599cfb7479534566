-- Key lifecycle: each key's place in the rotation (generation, unique, so that replicas agree on
-- one next key), when it starts signing, when it leaves the JWKS, whether an operator removed it,
-- its X.509 certificate chain (x5c, JSON array of base64 DER) and which key-encryption key sealed it.
ALTER TABLE keys_signing_keys ADD COLUMN generation INTEGER;
ALTER TABLE keys_signing_keys ADD COLUMN activate_at INTEGER;
ALTER TABLE keys_signing_keys ADD COLUMN remove_at INTEGER;
ALTER TABLE keys_signing_keys ADD COLUMN removed_by_operator BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE keys_signing_keys ADD COLUMN x5c TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys_signing_keys ADD COLUMN kek_id TEXT NOT NULL DEFAULT '';
UPDATE keys_signing_keys SET
    generation = (SELECT COUNT(*) FROM keys_signing_keys k2
                  WHERE k2.created_at < keys_signing_keys.created_at
                     OR (k2.created_at = keys_signing_keys.created_at AND k2.kid < keys_signing_keys.kid)),
    activate_at = created_at;
UPDATE keys_signing_keys SET remove_at = created_at WHERE state = 'retired';
CREATE UNIQUE INDEX keys_signing_keys_generation ON keys_signing_keys (generation);
