//! `nmos-auth dev-ca`: a development CA and one certificate per service for the internal mutual
//! TLS of a split deployment. Production plants issue the same names from their own PKI (or
//! cert-manager); see README "Split deployment".
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use nmos_auth_core::mtls::Service;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

fn write(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Writes `ca.pem` (and `ca-key.pem`) and `<service>.pem` with `<service>-key.pem` for every
/// service and for `admin` (an operator's client certificate) into `dir`. Keys are ECDSA
/// P-256, private files mode 0600; service certificates are valid for a year.
pub fn create(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "nmos-auth development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(3 * 365);
    let ca_key = KeyPair::generate()?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), 0o600)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    write(&dir.join("ca.pem"), &ca.pem(), 0o644)?;
    let mut written = vec!["ca.pem".to_owned(), "ca-key.pem".to_owned()];

    for service in Service::ALL {
        let mut params = CertificateParams::new(vec![service.dns_name()])?;
        params.distinguished_name.push(DnType::CommonName, service.dns_name());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        let name = service.name();
        write(&dir.join(format!("{name}.pem")), &cert.pem(), 0o644)?;
        write(&dir.join(format!("{name}-key.pem")), &key.serialize_pem(), 0o600)?;
        written.push(format!("{name}.pem"));
        written.push(format!("{name}-key.pem"));
    }
    Ok(written)
}
