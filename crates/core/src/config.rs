//! The one configuration every service reads: a TOML file, then `NMOS_AUTH_*` environment
//! variables and command-line flags on top (applied by the `nmos-auth` command).
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::api::Scope;
use crate::secret::Secret;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?} (text, json)")),
        }
    }
}

/// How a client that brings no initial access token may register. With a token (or as a
/// signed-in web user) registration always works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationMode {
    /// Not at all (the default).
    #[default]
    InitialAccessToken,
    /// Clients that use only the authorization_code grant (never client_credentials).
    Open,
    /// Anyone, but the client stays pending, and gets no token, until an administrator
    /// approves it.
    Approval,
}

impl std::str::FromStr for RegistrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<RegistrationMode, String> {
        match s {
            "initial-access-token" => Ok(RegistrationMode::InitialAccessToken),
            "open" => Ok(RegistrationMode::Open),
            "approval" => Ok(RegistrationMode::Approval),
            _ => Err(format!("unknown registration mode {s:?} (initial-access-token, open, approval)")),
        }
    }
}

/// The grants of the seed's README that IS-10 forbids or discourages, each off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegacyGrants {
    pub password: bool,
    pub implicit: bool,
}

/// How the services of one process reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InternalTransport {
    /// Each call handed straight to the callee's gRPC server in memory.
    #[default]
    InProcess,
    /// Each service on its own gRPC server on a loopback port, called over HTTP/2.
    Loopback,
}

impl std::str::FromStr for InternalTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<InternalTransport, String> {
        match s {
            "in-process" => Ok(InternalTransport::InProcess),
            "loopback" => Ok(InternalTransport::Loopback),
            _ => Err(format!("unknown internal transport {s:?} (in-process, loopback)")),
        }
    }
}

/// Serializing leaves the secrets out: a written config file never holds one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the one-process server keeps its SQLite files and generated key-encryption key.
    pub data_dir: PathBuf,
    /// The gateway's HTTP(S) listen address.
    pub listen: SocketAddr,
    /// The externally visible base URL (scheme, host, port); derived from `listen` if unset.
    pub public_url: Option<String>,
    /// PEM certificate chain and private key; with both set the gateway serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `postgres://...` to use Postgres; unset means one SQLite file per service in `data_dir`.
    #[serde(skip_serializing)]
    pub database_url: Option<Secret>,
    /// Base64 of 32 random bytes that encrypts the signing keys at rest.
    #[serde(skip_serializing)]
    pub key_encryption_key: Option<Secret>,
    /// File holding the key-encryption key; generated (mode 0600) when absent.
    pub key_encryption_key_file: Option<PathBuf>,
    /// Base64 of 32 random bytes that seals browser session cookies.
    #[serde(skip_serializing)]
    pub cookie_key: Option<Secret>,
    /// File holding the cookie key; generated (mode 0600) when absent.
    pub cookie_key_file: Option<PathBuf>,
    /// Access token lifetime in seconds (IS-10: between 30 s and 1 h).
    pub access_token_lifetime: u64,
    /// Signing keys rotate this often (seconds); 0 rotates only on command.
    pub key_rotation_period: u64,
    /// A new key is published in the JWKS this long before it signs: at least the time Nodes
    /// take to refresh their key cache (BCP-003-02: about a day), never less than IS-10's 2 h
    /// in production. Shorter values are for testing.
    pub key_publish_lead: u64,
    /// A retired key stays published this long after the last token it signed has expired
    /// (Nodes keep keys 36-48 h).
    pub key_retire_grace: u64,
    /// How often expired codes, refresh families and remembered token ids are purged (seconds).
    pub housekeeping_interval: u64,
    /// Rows deleted per statement when purging.
    pub housekeeping_batch: u32,
    /// Refresh token lifetime in seconds; rotation never extends it.
    pub refresh_token_lifetime: u64,
    /// The `aud` claim of every access token: FQDNs or wildcard domains, no port or path.
    pub audience: Vec<String>,
    /// The NMOS API scopes this server issues tokens for.
    pub scopes: String,
    /// The scopes the client_credentials grant may carry (BCP-003-02: registration, events).
    pub client_credentials_scopes: String,
    /// Who may register without an initial access token (RFC 7591 §3; IS-10 §4.2).
    pub registration: RegistrationMode,
    /// Let anyone create an account on the sign-up page (the first account, an administrator,
    /// can always be created there).
    pub open_signup: bool,
    /// The password grant (RFC 6749 §4.3), which IS-10 discourages: off unless switched on.
    pub legacy_password_grant: bool,
    /// The implicit grant (RFC 6749 §4.2), which IS-10 forbids: off unless switched on.
    pub legacy_implicit_grant: bool,
    /// PEM certificates trusted (besides the system's) when fetching private_key_jwt clients'
    /// jwks_uri over https.
    pub jwks_ca_bundle: Option<PathBuf>,
    /// Advertise the gateway over mDNS as `_nmos-auth._tcp` while `serve` runs.
    pub mdns: bool,
    /// The DNS-SD instance name; default `nmos-auth-<hostname>`.
    pub dns_sd_instance: Option<String>,
    /// The host name in the SRV record; default the public URL's host, or `<hostname>.local`.
    pub dns_sd_host: Option<String>,
    /// The addresses of that host; default the public URL's address, or (mDNS) every interface's.
    pub dns_sd_addresses: Vec<std::net::IpAddr>,
    /// TXT `pri`: 0-99 for live systems (0 is highest), 100+ for development.
    pub dns_sd_priority: u32,
    /// The unicast DNS zone the records belong to, e.g. `plant.example.com`.
    pub dns_sd_domain: Option<String>,
    /// A DNS server (address:port) that accepts RFC 2136 updates of `dns_sd_domain`: when set,
    /// the records are kept there while the gateway answers, signed with the TSIG key.
    pub dns_sd_update_server: Option<SocketAddr>,
    /// The TSIG key's name, as the DNS server knows it.
    pub dns_sd_tsig_key: Option<String>,
    /// hmac-sha256 (the default), hmac-sha384 or hmac-sha512.
    pub dns_sd_tsig_algorithm: String,
    /// The TSIG key's secret, base64 (as in BIND and Knot key files).
    #[serde(skip_serializing)]
    pub dns_sd_tsig_secret: Option<Secret>,
    /// File holding that base64 secret.
    pub dns_sd_tsig_secret_file: Option<PathBuf>,
    /// TTL of the updated records, in seconds: how long a withdrawn record may stay cached.
    pub dns_sd_ttl: u32,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// How `serve` connects its services: in memory, or over loopback gRPC.
    pub internal_transport: InternalTransport,
    /// Split deployment: where this service's gRPC server listens.
    pub grpc_listen: SocketAddr,
    /// Split deployment: a plain-text gRPC listener serving only grpc.health.v1, for probes
    /// that cannot present a client certificate (Kubernetes gRPC probes).
    pub health_listen: Option<SocketAddr>,
    /// Split deployment: where the other services are, e.g. `https://keys:50051`.
    pub keys_url: Option<String>,
    pub identity_url: Option<String>,
    pub client_registry_url: Option<String>,
    pub token_issuer_url: Option<String>,
    /// Split deployment: mutual TLS between services. The CA that issued every service's
    /// certificate (PEM) ...
    pub grpc_ca: Option<PathBuf>,
    /// ... and this service's certificate and key (PEM), whose DNS name says which service it
    /// is (`<service>.nmos-auth.internal`; `nmos-auth dev-ca` makes them).
    pub grpc_cert: Option<PathBuf>,
    pub grpc_key: Option<PathBuf>,
    /// Split deployment without mutual TLS: development only, never with untrusted neighbours.
    pub grpc_plaintext: bool,
    /// Split deployment: whether a gRPC caller without a client certificate may authenticate
    /// with an administrator's access token from this server (scope `nmos-auth:admin`). Off by
    /// default: on, every service's TLS handshake lets certificate-less callers as far as the
    /// token check.
    pub grpc_admin_tokens: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("nmos-auth-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 4999)),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            database_url: None,
            key_encryption_key: None,
            key_encryption_key_file: None,
            cookie_key: None,
            cookie_key_file: None,
            access_token_lifetime: 60,
            refresh_token_lifetime: 24 * 3600,
            key_rotation_period: 30 * 24 * 3600,
            key_publish_lead: 24 * 3600,
            key_retire_grace: 48 * 3600,
            housekeeping_interval: 300,
            housekeeping_batch: 1000,
            audience: vec!["*".to_owned()],
            scopes: Scope::all().to_string(),
            client_credentials_scopes: "registration events".to_owned(),
            registration: RegistrationMode::InitialAccessToken,
            open_signup: false,
            legacy_password_grant: false,
            legacy_implicit_grant: false,
            jwks_ca_bundle: None,
            mdns: true,
            dns_sd_instance: None,
            dns_sd_host: None,
            dns_sd_addresses: Vec::new(),
            dns_sd_priority: 100,
            dns_sd_domain: None,
            dns_sd_update_server: None,
            dns_sd_tsig_key: None,
            dns_sd_tsig_algorithm: "hmac-sha256".to_owned(),
            dns_sd_tsig_secret: None,
            dns_sd_tsig_secret_file: None,
            dns_sd_ttl: 120,
            max_body_bytes: 16 * 1024,
            log_format: LogFormat::Text,
            internal_transport: InternalTransport::InProcess,
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            health_listen: None,
            keys_url: None,
            identity_url: None,
            client_registry_url: None,
            token_issuer_url: None,
            grpc_ca: None,
            grpc_cert: None,
            grpc_key: None,
            grpc_plaintext: false,
            grpc_admin_tokens: false,
        }
    }
}

impl Config {
    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Checks the values that cannot be checked by their type alone.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(30..=3600).contains(&self.access_token_lifetime) {
            bail!(
                "access_token_lifetime must be between 30 and 3600 seconds (IS-10), not {}",
                self.access_token_lifetime
            );
        }
        if self.refresh_token_lifetime <= self.access_token_lifetime {
            bail!("refresh_token_lifetime must be longer than access_token_lifetime");
        }
        if self.key_rotation_period > 0 && self.key_publish_lead >= self.key_rotation_period {
            bail!("key_publish_lead must be shorter than key_rotation_period");
        }
        if self.housekeeping_interval == 0 || self.housekeeping_batch == 0 {
            bail!("housekeeping_interval and housekeeping_batch must be positive");
        }
        if self.audience.is_empty() {
            bail!("audience must name at least one resource server host or wildcard domain");
        }
        for aud in &self.audience {
            let host = aud.strip_prefix("https://").or_else(|| aud.strip_prefix("http://")).unwrap_or(aud);
            if host.is_empty() || host.contains([':', '/', '?', '#', ' ']) {
                bail!("audience entry {aud:?} must be a host name or wildcard domain without port, path or query");
            }
        }
        let scopes = self.scopes()?;
        if scopes.is_empty() {
            bail!("scopes must name at least one NMOS API");
        }
        if !self.client_credentials_scopes()?.is_subset_of(&scopes) {
            bail!("client_credentials_scopes must be a subset of scopes");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key must be set together");
        }
        self.public_base()?;
        if self.dns_sd_update_server.is_some() {
            if self.dns_sd_domain.is_none() || self.dns_sd_tsig_key.is_none() {
                bail!("dns_sd_update_server needs dns_sd_domain and dns_sd_tsig_key");
            }
            if self.dns_sd_tsig_secret.is_none() == self.dns_sd_tsig_secret_file.is_none() {
                bail!("dns_sd_update_server needs one of dns_sd_tsig_secret and dns_sd_tsig_secret_file");
            }
        }
        Ok(())
    }

    pub fn scopes(&self) -> anyhow::Result<Scope> {
        Scope::parse(&self.scopes).context("scopes")
    }

    pub fn client_credentials_scopes(&self) -> anyhow::Result<Scope> {
        Scope::parse(&self.client_credentials_scopes).context("client_credentials_scopes")
    }

    pub fn legacy_grants(&self) -> LegacyGrants {
        LegacyGrants { password: self.legacy_password_grant, implicit: self.legacy_implicit_grant }
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The public base URL without a trailing slash, e.g. `https://auth.example.com:4999`.
    pub fn public_base(&self) -> anyhow::Result<String> {
        let base = match &self.public_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if self.tls_enabled() { "https" } else { "http" };
                let ip = self.listen.ip();
                let host = if ip.is_unspecified() {
                    "localhost".to_owned()
                } else if ip.is_ipv6() {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                format!("{scheme}://{host}:{}", self.listen.port())
            }
        };
        let url = Url::parse(&base).with_context(|| format!("public_url {base:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("public_url {base:?} must be an http or https URL with a host");
        }
        if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
            bail!("public_url {base:?} must have no path, query or fragment");
        }
        Ok(base.trim_end_matches('/').to_owned())
    }

    /// The RFC 8414 issuer identifier; also the `iss` of every token, byte for byte.
    pub fn issuer(&self) -> anyhow::Result<String> {
        Ok(format!("{}{}", self.public_base()?, crate::AUTH_API_BASE))
    }

    /// The host name of `public_url`: the `aud` of administrators' tokens, which this
    /// server's own services accept.
    pub fn public_host(&self) -> anyhow::Result<String> {
        let base = self.public_base()?;
        let url = Url::parse(&base)?;
        Ok(url.host_str().unwrap_or_default().to_owned())
    }

    /// The key that encrypts signing keys at rest.
    pub fn key_encryption_key(&self) -> anyhow::Result<crate::sealing::SealingKey> {
        let file = self.key_encryption_key_file.clone().unwrap_or_else(|| self.data_dir.join("key-encryption-key"));
        crate::sealing::SealingKey::load(self.key_encryption_key.as_ref(), file, "key-encryption key")
    }

    /// The key that seals browser session cookies.
    pub fn cookie_key(&self) -> anyhow::Result<crate::sealing::SealingKey> {
        let file = self.cookie_key_file.clone().unwrap_or_else(|| self.data_dir.join("cookie-key"));
        crate::sealing::SealingKey::load(self.cookie_key.as_ref(), file, "cookie key")
    }

    /// The database URL one service uses.
    pub fn database_url(&self, service: &str) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join(format!("{service}.sqlite")).display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_derive_the_issuer() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.issuer().unwrap(), "http://127.0.0.1:4999/x-nmos/auth/v1.0");
        assert_eq!(c.public_host().unwrap(), "127.0.0.1");
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            Config { access_token_lifetime: 10, ..Config::default() },
            Config { audience: vec!["*.example.com:443".into()], ..Config::default() },
            Config { audience: vec![], ..Config::default() },
            Config { scopes: "registration bogus".into(), ..Config::default() },
            Config { scopes: "query".into(), ..Config::default() },
            Config { public_url: Some("https://a.example.com/x".into()), ..Config::default() },
            Config { tls_cert: Some("c.pem".into()), ..Config::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be rejected");
        }
    }

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_fail() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:443\"\naudience = [\"*.plant.example\"]").unwrap();
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.access_token_lifetime, 60);
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
