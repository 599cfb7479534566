//! Signing keys in memory: the active key (parsed once, at start-up) and the published JWKS.
use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA512, RsaKeyPair};
use aws_lc_rs::{digest, rand::SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nmos_auth_proto::Jwk;

use crate::store::StoredKey;
use nmos_auth_core::sealing::SealingKey as KeyEncryptionKey;

/// Generates a new RSA-2048 key for `generation`, signing from `activate_at`, encrypted for
/// storage, with a self-signed certificate. Its kid is the RFC 7638 JWK thumbprint, so it is
/// stable and derived from the key itself.
pub fn generate(kek: &KeyEncryptionKey, generation: i64, activate_at: i64) -> anyhow::Result<StoredKey> {
    stored(kek, &generate_pkcs8()?, None, generation, activate_at)
}

/// A new RSA-2048 private key as PKCS#8 DER. This takes tens to hundreds of milliseconds of
/// one core (finding primes): off the async runtime's threads, call it on the blocking pool.
pub fn generate_pkcs8() -> anyhow::Result<Vec<u8>> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let pkcs8 = pair.as_der().map_err(|_| anyhow::anyhow!("PKCS#8 encoding failed"))?;
    Ok(pkcs8.as_ref().to_vec())
}

/// A key to store from its PKCS#8 DER: `chain` is its certificate chain (base64 DER, leaf
/// first), or none for a self-signed certificate made here.
pub fn stored(
    kek: &KeyEncryptionKey,
    pkcs8: &[u8],
    chain: Option<Vec<String>>,
    generation: i64,
    activate_at: i64,
) -> anyhow::Result<StoredKey> {
    let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("not an RSA private key: {e}"))?;
    anyhow::ensure!(pair.public_modulus_len() >= 256, "RSA keys must have at least 2048 bits");
    let (n, e) = public_components(&pair);
    let kid = thumbprint(&n, &e);
    let x5c = match chain {
        Some(chain) => {
            // RFC 7517 §4.7: the first certificate must hold this very key.
            use base64::engine::general_purpose::STANDARD;
            let leaf = chain.first().and_then(|c| STANDARD.decode(c).ok()).unwrap_or_default();
            let modulus = pair.public_key().modulus().big_endian_without_leading_zero().to_vec();
            anyhow::ensure!(
                leaf.windows(modulus.len()).any(|w| w == modulus.as_slice()),
                "the first certificate of the chain is not for this key"
            );
            chain
        }
        None => vec![self_signed_certificate(pkcs8, &kid)?],
    };
    let now = nmos_auth_core::now_unix();
    Ok(StoredKey {
        encrypted_private_key: kek.seal(kid.as_bytes(), pkcs8)?,
        kid,
        n,
        e,
        created_at: now,
        generation,
        activate_at,
        remove_at: None,
        removed_by_operator: false,
        x5c,
        kek_id: kek.id().to_owned(),
    })
}

/// A self-signed X.509 certificate for a signing key (base64 DER), for clients that want keys
/// as certificates (the JWK `x5c`, and the `certs` route the seed's clients read).
fn self_signed_certificate(pkcs8: &[u8], kid: &str) -> anyhow::Result<String> {
    use base64::engine::general_purpose::STANDARD;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("nmos-auth token signing key {kid}"));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(5 * 365);
    let cert = params.self_signed(&key)?;
    Ok(STANDARD.encode(cert.der()))
}

fn public_components(pair: &RsaKeyPair) -> (String, String) {
    let public = pair.public_key();
    (
        URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    )
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, base64url.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// The key that signs, ready to use.
pub struct SigningKey {
    pub kid: String,
    pair: RsaKeyPair,
    /// base64url of the JOSE header, computed once.
    encoded_header: String,
    rng: SystemRandom,
}

impl SigningKey {
    pub fn open(stored: &StoredKey, kek: &KeyEncryptionKey) -> anyhow::Result<SigningKey> {
        let pkcs8 = kek
            .open(stored.kid.as_bytes(), &stored.encrypted_private_key)
            .with_context(|| format!("signing key {}", stored.kid))?;
        let pair = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))?;
        anyhow::ensure!(
            public_components(&pair) == (stored.n.clone(), stored.e.clone()),
            "signing key {} does not match its public key",
            stored.kid
        );
        let header = serde_json::json!({"typ": "JWT", "alg": "RS512", "kid": stored.kid});
        Ok(SigningKey {
            kid: stored.kid.clone(),
            pair,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            rng: SystemRandom::new(),
        })
    }

    /// A compact JWS (RFC 7515 §7.1) over `claims_json` with RS512.
    pub fn sign(&self, claims_json: &[u8]) -> anyhow::Result<String> {
        let mut jws = String::with_capacity(self.encoded_header.len() + claims_json.len() * 4 / 3 + 350);
        jws.push_str(&self.encoded_header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut jws);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA512, &self.rng, jws.as_bytes(), &mut signature)
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jws);
        Ok(jws)
    }
}

/// A published public key, decoded once, for verifying tokens.
pub struct VerifyingKey {
    pub kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl VerifyingKey {
    pub fn new(stored: &StoredKey) -> anyhow::Result<VerifyingKey> {
        Ok(VerifyingKey {
            kid: stored.kid.clone(),
            n: URL_SAFE_NO_PAD.decode(&stored.n).context("modulus")?,
            e: URL_SAFE_NO_PAD.decode(&stored.e).context("exponent")?,
        })
    }
}

/// Why a token did not verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("only RS512 tokens are issued here")]
    Algorithm,
    #[error("signed by no published key")]
    Signature,
}

/// Verifies a compact JWS (RS512) against `keys` and returns its payload.
pub fn verify(keys: &[VerifyingKey], jws: &str) -> Result<(Vec<u8>, String), VerifyError> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents};
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(VerifyError::Malformed)?;
    if header["alg"] != "RS512" {
        return Err(VerifyError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| VerifyError::Malformed)?;
    let signed = &jws[..jws.len() - jws.rsplit('.').next().map_or(0, str::len) - 1];
    let kid = header["kid"].as_str();
    let key = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| kid == k.kid))
        .find(|k| {
            RsaPublicKeyComponents { n: &k.n, e: &k.e }
                .verify(&RSA_PKCS1_2048_8192_SHA512, signed.as_bytes(), &signature)
                .is_ok()
        })
        .ok_or(VerifyError::Signature)?;
    let claims = URL_SAFE_NO_PAD.decode(payload).map_err(|_| VerifyError::Malformed)?;
    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&claims).is_err() {
        return Err(VerifyError::Malformed);
    }
    Ok((claims, key.kid.clone()))
}

/// The public JWK of a stored key, as IS-10 resource servers expect it (no `key_ops`).
pub fn jwk(stored: &StoredKey) -> Jwk {
    Jwk {
        kty: "RSA".into(),
        r#use: "sig".into(),
        alg: "RS512".into(),
        kid: stored.kid.clone(),
        n: stored.n.clone(),
        e: stored.e.clone(),
        x5c: stored.x5c.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn signs_verifiable_rs512_with_a_stable_kid() {
        let kek_b64 = STANDARD.encode([1u8; 32]);
        let config = nmos_auth_core::Config {
            key_encryption_key: Some(nmos_auth_core::secret::Secret::new(kek_b64)),
            ..Default::default()
        };
        let kek = config.key_encryption_key().unwrap();
        let stored = generate(&kek, 0, 0).unwrap();
        assert_eq!(stored.kid, thumbprint(&stored.n, &stored.e));
        let key = SigningKey::open(&stored, &kek).unwrap();
        let jws = key.sign(br#"{"sub":"x"}"#).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "RS512", "kid": stored.kid}));
        let n = URL_SAFE_NO_PAD.decode(&stored.n).unwrap();
        let e = URL_SAFE_NO_PAD.decode(&stored.e).unwrap();
        let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public.verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512, signed.as_bytes(), &sig).unwrap();
        assert_eq!(n.len(), 256, "RSA-2048");

        let keys = [VerifyingKey::new(&stored).unwrap()];
        assert_eq!(verify(&keys, &jws).unwrap(), (br#"{"sub":"x"}"#.to_vec(), stored.kid.clone()));
        let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(br#"{"sub":"y"}"#), parts[2]);
        assert_eq!(verify(&keys, &tampered), Err(VerifyError::Signature));
        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(verify(&keys, &none_alg), Err(VerifyError::Algorithm));
        assert_eq!(verify(&keys, "a.b"), Err(VerifyError::Malformed));
        let other = SigningKey::open(&generate(&kek, 1, 0).unwrap(), &kek).unwrap();
        assert_eq!(verify(&keys, &other.sign(b"{}").unwrap()), Err(VerifyError::Signature));
    }
}
