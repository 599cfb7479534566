//! AES-256-GCM keys from configuration: the key-encryption key that protects signing keys at
//! rest, and the key that seals browser session cookies.
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use crate::secret::{Secret, random_bytes};
use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub struct SealingKey {
    key: LessSafeKey,
    /// A short public fingerprint, to tell which key sealed what (never the key itself).
    id: String,
}

impl SealingKey {
    /// The key given inline (base64), else the one in `file`, else a new one written to
    /// `file` with mode 0600. `what` names it in messages.
    pub fn load(inline: Option<&Secret>, file: PathBuf, what: &str) -> anyhow::Result<SealingKey> {
        if let Some(inline) = inline {
            return SealingKey::from_base64(inline.expose()).with_context(|| what.to_owned());
        }
        let path = file;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the {what} file is readable by other users; chmod 600 it");
                }
                SealingKey::from_base64(text.trim()).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match SealingKey::create(&path, what)? {
                Some(key) => Ok(key),
                // Another process (a second replica starting at the same moment) made it
                // first; it appeared complete (see `create`), so read that one.
                None => SealingKey::load(None, path, what),
            },
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes a new key to `path`, or returns `None` if another process created the file
    /// first. The key is written to a temporary file and then linked into place, so the file
    /// never exists half-written.
    fn create(path: &std::path::Path, what: &str) -> anyhow::Result<Option<SealingKey>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let encoded = STANDARD.encode(random_bytes::<32>());
        let nonce: String = random_bytes::<6>().iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension(format!("tmp-{}-{nonce}", std::process::id()));
        let written = (|| -> anyhow::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            file.write_all(encoded.as_bytes())?;
            file.sync_all()?;
            Ok(())
        })();
        let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        });
        let _ = std::fs::remove_file(&tmp);
        if !linked? {
            return Ok(None);
        }
        tracing::info!(path = %path.display(), "generated a new {what}; keep it safe and back it up");
        SealingKey::from_base64(&encoded).map(Some)
    }

    fn from_base64(text: &str) -> anyhow::Result<SealingKey> {
        let bytes = STANDARD.decode(text.trim()).context("not base64")?;
        if bytes.len() != 32 {
            bail!("must be 32 bytes (base64 of 32 random bytes), not {}", bytes.len());
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| anyhow::anyhow!("unusable AES key"))?;
        // A fingerprint under a fixed label, so it says nothing useful about the key.
        let mut labelled = b"nmos-auth sealing key id\0".to_vec();
        labelled.extend_from_slice(&bytes);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &labelled);
        let id = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(SealingKey { key: LessSafeKey::new(key), id })
    }

    /// A key given as base64 text (a file's contents, an operator's input).
    pub fn parse(text: &str) -> anyhow::Result<SealingKey> {
        SealingKey::from_base64(text)
    }

    /// The key's public fingerprint (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext`, bound to `aad`: returns nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut out)
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&out);
        Ok(sealed)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed data is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| anyhow::anyhow!("cannot decrypt: wrong key-encryption key, or the data was altered"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn replicas_starting_together_share_one_generated_key() {
        let dir = std::env::temp_dir().join(format!("nmos-auth-sealing-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("key-encryption-key");
        let loads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SealingKey::load(None, path, "test key").unwrap().id().to_owned())
            })
            .collect();
        let ids: std::collections::HashSet<String> = loads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ids.len(), 1, "every one reads the key the first one wrote");
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    use super::*;

    #[test]
    fn seals_and_detects_tampering() {
        let kek = SealingKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = kek.seal(b"kid", b"secret").unwrap();
        assert_eq!(kek.open(b"kid", &sealed).unwrap(), b"secret");
        assert!(kek.open(b"other-kid", &sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(kek.open(b"kid", &bad).is_err());
        let other = SealingKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(b"kid", &sealed).is_err());
        assert!(SealingKey::from_base64("c2hvcnQ=").is_err());
    }
}
