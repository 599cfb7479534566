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

/// The level of the one log line per token issued (the audit table has every token whatever
/// this says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenLog {
    Info,
    #[default]
    Debug,
}

impl std::str::FromStr for TokenLog {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenLog, String> {
        match s {
            "info" => Ok(TokenLog::Info),
            "debug" => Ok(TokenLog::Debug),
            _ => Err(format!("unknown token log level {s:?} (info, debug)")),
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

/// Declares every setting once, in the order of the README's table: its TOML key (a field of
/// [`Config`]), its type, its default and its help. A `secret` is read from the config file or
/// the environment only (never a flag, visible in `ps`), and never written or shown. The flag
/// (`--key-name`) and the environment variable (`NMOS_AUTH_KEY_NAME`) follow from the name;
/// `=> "..."` says what the default is where the value alone does not (an unset value that
/// means something). [`SETTINGS`] lists them for the command line, `nmos-auth config` and the
/// test that holds the README's table to them.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $kind:ident $name:ident: $ty:ty = $default:expr $(=> $means:literal)?;
    )*) => {
        /// Every setting of every service. Serializing leaves the secrets out: a written config
        /// file never holds one.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Config {
            fn default() -> Config {
                Config { $( $name: $default, )* }
            }
        }

        impl Serialize for Config {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let config = self;
                let mut fields = serializer.serialize_struct("Config", SETTINGS.len())?;
                $( settings!(@serialize $kind fields config $name); )*
                fields.end()
            }
        }

        /// Every setting, in the README's order.
        pub static SETTINGS: &[Setting] = &[
            $( Setting {
                name: stringify!($name),
                secret: settings!(@secret $kind),
                help: &[$($doc),*],
                means: settings!(@means $($means)?),
            }, )*
        ];

        impl Config {
            /// Sets one setting from its text form (an environment variable's or a flag's).
            pub fn set(&mut self, name: &str, text: &str) -> Result<(), String> {
                match name {
                    $( stringify!($name) => self.$name = SettingValue::parse_setting(text)?, )*
                    _ => return Err(format!("no setting {name:?}")),
                }
                Ok(())
            }

            /// One setting's value as TOML, `None` when it is unset; a secret that is set shows
            /// as `"[redacted]"`.
            pub fn shown(&self, name: &str) -> Option<toml::Value> {
                let config = self;
                match name {
                    $( stringify!($name) => settings!(@show $kind config $name), )*
                    _ => None,
                }
            }
        }
    };
    (@serialize setting $fields:ident $config:ident $name:ident) => {
        $fields.serialize_field(stringify!($name), &$config.$name)?
    };
    (@serialize secret $fields:ident $config:ident $name:ident) => {
        $fields.skip_field(stringify!($name))?
    };
    (@show setting $config:ident $name:ident) => {
        toml::Value::try_from(&$config.$name).ok()
    };
    (@show secret $config:ident $name:ident) => {
        $config.$name.as_ref().map(|_| toml::Value::String("[redacted]".to_owned()))
    };
    (@secret setting) => { false };
    (@secret secret) => { true };
    (@means) => { None };
    (@means $means:literal) => { Some($means) };
}

/// One setting, as [`settings!`] declares it.
#[derive(Debug)]
pub struct Setting {
    /// Its TOML key.
    pub name: &'static str,
    /// Read from the file or the environment only, never a flag, never shown.
    pub secret: bool,
    /// Its doc comment, line by line.
    pub help: &'static [&'static str],
    /// What its default means, where its value alone does not say.
    pub means: Option<&'static str>,
}

impl Setting {
    /// Its environment variable, `NMOS_AUTH_` and the key in capitals.
    pub fn env(&self) -> String {
        format!("NMOS_AUTH_{}", self.name.to_ascii_uppercase())
    }

    /// Its command-line flag (none for a secret): `--` and the key with dashes.
    pub fn flag(&self) -> Option<String> {
        (!self.secret).then(|| format!("--{}", self.name.replace('_', "-")))
    }

    /// Its help on one line.
    pub fn help_line(&self) -> String {
        self.help.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ")
    }

    /// Its default as the README shows it: what it means, or the value in backticks (a
    /// string without its quotes), or "unset".
    pub fn default_shown(&self) -> String {
        if let Some(means) = self.means {
            return means.to_owned();
        }
        match Config::default().shown(self.name) {
            Some(toml::Value::String(s)) => format!("`{s}`"),
            Some(value) => format!("`{value}`"),
            None => "unset".to_owned(),
        }
    }
}

/// A setting's type, read from text: an environment variable or a flag. Lists are
/// comma-separated; an empty value leaves an optional setting unset.
pub trait SettingValue: Sized {
    fn parse_setting(text: &str) -> Result<Self, String>;
}

macro_rules! setting_from_str {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse_setting(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("{e}"))
            }
        }
    )*};
}
setting_from_str!(
    u32,
    u64,
    usize,
    bool,
    String,
    PathBuf,
    SocketAddr,
    std::net::IpAddr,
    RegistrationMode,
    LogFormat,
    TokenLog,
    InternalTransport
);

impl SettingValue for Secret {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
}

impl<T: SettingValue> SettingValue for Option<T> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        if text.is_empty() { Ok(None) } else { T::parse_setting(text).map(Some) }
    }
}

impl<T: SettingValue> SettingValue for Vec<T> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(T::parse_setting).collect()
    }
}

settings! {
    /// Where the one-process server keeps its SQLite files and generated key-encryption key.
    setting data_dir: PathBuf = PathBuf::from("nmos-auth-data");
    /// The gateway's HTTP(S) listen address.
    setting listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 4999));
    /// The externally visible base URL (scheme, host, port); derived from `listen` if unset.
    setting public_url: Option<String> = None => "from `listen`";
    /// PEM certificate chain; with `tls_key` set too the gateway serves HTTPS.
    setting tls_cert: Option<PathBuf> = None;
    /// The PEM private key of `tls_cert`.
    setting tls_key: Option<PathBuf> = None;
    /// `postgres://...` to use Postgres; unset means one SQLite file per service in `data_dir`.
    secret database_url: Option<Secret> = None;
    /// Base64 of 32 random bytes that encrypts the signing keys at rest.
    secret key_encryption_key: Option<Secret> = None;
    /// File holding the key-encryption key; generated (mode 0600) when absent.
    setting key_encryption_key_file: Option<PathBuf> = None => "`<data_dir>/key-encryption-key`";
    /// Base64 of 32 random bytes that seals browser session cookies.
    secret cookie_key: Option<Secret> = None;
    /// File holding the cookie key; generated (mode 0600) when absent.
    setting cookie_key_file: Option<PathBuf> = None => "`<data_dir>/cookie-key`";
    /// Access token lifetime in seconds (IS-10: between 30 s and 1 h).
    setting access_token_lifetime: u64 = 60;
    /// Refresh token lifetime in seconds; rotation never extends it.
    setting refresh_token_lifetime: u64 = 24 * 3600;
    /// The `aud` claim of every access token: FQDNs or wildcard domains, no port or path.
    setting audience: Vec<String> = vec!["*".to_owned()];
    /// Reverse proxies in front of the gateway (an Ingress controller, a load balancer), as
    /// addresses or CIDR networks. A request from one of them is taken to come from the last
    /// address in its `X-Forwarded-For` that is not one of them: that is the address sign-in
    /// limits count. Empty: every request comes from its connection's address, whatever it says.
    setting trusted_proxies: Vec<String> = Vec::new();
    /// The NMOS API scopes this server issues tokens for.
    setting scopes: String = Scope::all().to_string();
    /// The scopes the client_credentials grant may carry (BCP-003-02: registration, events).
    setting client_credentials_scopes: String = "registration events".to_owned();
    /// Who may register without an initial access token (RFC 7591 §3; IS-10 §4.2).
    setting registration: RegistrationMode = RegistrationMode::InitialAccessToken;
    /// Let anyone create an account on the sign-up page (the first account, an administrator,
    /// can always be created there).
    setting open_signup: bool = false;
    /// The password grant (RFC 6749 §4.3), which IS-10 discourages: off unless switched on.
    setting legacy_password_grant: bool = false;
    /// The implicit grant (RFC 6749 §4.2), which IS-10 forbids: off unless switched on.
    setting legacy_implicit_grant: bool = false;
    /// PEM certificates trusted (besides the system's) when fetching private_key_jwt clients'
    /// jwks_uri over https.
    setting jwks_ca_bundle: Option<PathBuf> = None;
    /// Advertise the gateway over mDNS as `_nmos-auth._tcp` while `serve` runs.
    setting mdns: bool = true;
    /// The DNS-SD instance name.
    setting dns_sd_instance: Option<String> = None => "`nmos-auth-<hostname>`";
    /// The host name in the SRV record.
    setting dns_sd_host: Option<String> = None => "the public URL's host, or `<hostname>.local`";
    /// The addresses of that host.
    setting dns_sd_addresses: Vec<std::net::IpAddr> = Vec::new() => "the public URL's address, or every interface's";
    /// TXT `pri`: 0-99 for live systems (0 is highest), 100+ for development.
    setting dns_sd_priority: u32 = 100;
    /// The unicast DNS zone the records belong to, e.g. `plant.example.com`.
    setting dns_sd_domain: Option<String> = None;
    /// A DNS server (address:port) that accepts RFC 2136 updates of `dns_sd_domain`: when set,
    /// the records are kept there while the gateway answers, signed with the TSIG key.
    setting dns_sd_update_server: Option<SocketAddr> = None;
    /// The TSIG key's name, as the DNS server knows it.
    setting dns_sd_tsig_key: Option<String> = None;
    /// hmac-sha256 (the default), hmac-sha384 or hmac-sha512.
    setting dns_sd_tsig_algorithm: String = "hmac-sha256".to_owned();
    /// The TSIG key's secret, base64 (as in BIND and Knot key files).
    secret dns_sd_tsig_secret: Option<Secret> = None;
    /// File holding that base64 secret.
    setting dns_sd_tsig_secret_file: Option<PathBuf> = None;
    /// TTL of the updated records, in seconds: how long a withdrawn record may stay cached.
    setting dns_sd_ttl: u32 = 120;
    /// Signing keys rotate this often (seconds); 0 rotates only on command.
    setting key_rotation_period: u64 = 30 * 24 * 3600;
    /// A new key is published in the JWKS this long before it signs: at least the time Nodes
    /// take to refresh their key cache (BCP-003-02: about a day), never less than IS-10's 2 h
    /// in production. Shorter values are for testing.
    setting key_publish_lead: u64 = 24 * 3600;
    /// A retired key stays published this long after the last token it signed has expired
    /// (Nodes keep keys 36-48 h).
    setting key_retire_grace: u64 = 48 * 3600;
    /// Days the audit trail (one row per token issued, and every service's events: registrations,
    /// approvals, administrators' changes, sign-ins) is kept before housekeeping deletes it; 0
    /// keeps it for ever. 90 days covers a quarter's incident reviews; at 1,000
    /// Nodes refreshing every 30 s that is about 260 million rows.
    setting audit_retention_days: u64 = 90;
    /// How often expired codes, refresh families, remembered token ids and audit rows past their
    /// retention are purged (seconds).
    setting housekeeping_interval: u64 = 300;
    /// Rows deleted per statement when purging.
    setting housekeeping_batch: u32 = 1000;
    /// Largest accepted request body, in bytes.
    setting max_body_bytes: usize = 16 * 1024;
    /// Log format: text or json.
    setting log_format: LogFormat = LogFormat::Text;
    /// The level of the line logged for each token issued: debug (the default: shown only with
    /// `RUST_LOG=debug`; the audit table records every token) or info.
    setting token_log_level: TokenLog = TokenLog::Debug;
    /// Split deployment: where this service's gRPC server listens.
    setting grpc_listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 50051));
    /// Split deployment: a plain-text gRPC listener serving only grpc.health.v1, for probes
    /// that cannot present a client certificate (Kubernetes gRPC probes).
    setting health_listen: Option<SocketAddr> = None;
    /// Where Prometheus scrapes this process's metrics (`GET /metrics`, plain HTTP, apart from
    /// the OAuth routes); off when unset.
    setting metrics_listen: Option<SocketAddr> = None;
    /// Split deployment: where the keys service is, e.g. `https://keys:50051`.
    setting keys_url: Option<String> = None;
    /// Split deployment: where the identity service is.
    setting identity_url: Option<String> = None;
    /// Split deployment: where the client registry is.
    setting client_registry_url: Option<String> = None;
    /// Split deployment: where the token issuer is.
    setting token_issuer_url: Option<String> = None;
    /// Split deployment: the CA that issued every service's certificate (PEM), for mutual TLS.
    setting grpc_ca: Option<PathBuf> = None;
    /// Split deployment: this service's certificate (PEM), whose DNS name says which service it
    /// is (`<service>.nmos-auth.internal`; `nmos-auth dev-ca` makes them).
    setting grpc_cert: Option<PathBuf> = None;
    /// Split deployment: this service's private key (PEM).
    setting grpc_key: Option<PathBuf> = None;
    /// Split deployment: whether a gRPC caller without a client certificate may authenticate
    /// with an administrator's access token from this server (scope `nmos-auth:admin`). Off by
    /// default: on, every service's TLS handshake lets certificate-less callers as far as the
    /// token check.
    setting grpc_admin_tokens: bool = false;
    /// Split deployment without mutual TLS: development only, never with untrusted neighbours.
    setting grpc_plaintext: bool = false;
    /// How `serve` connects its services: in memory (in-process), or over loopback gRPC.
    setting internal_transport: InternalTransport = InternalTransport::InProcess;
}

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Environment,
    Flag,
}

/// A configuration, and where each of its settings came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: std::collections::HashMap<&'static str, Source>,
}

impl Config {
    /// The defaults, then the TOML file, then `overrides` in order (each a setting's text, as an
    /// environment variable or a flag gives it), checked as a whole.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: impl IntoIterator<Item = (&'static Setting, String, Source)>,
    ) -> anyhow::Result<Loaded> {
        let mut sources: std::collections::HashMap<&'static str, Source> =
            SETTINGS.iter().map(|s| (s.name, Source::Default)).collect();
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let table: toml::Table =
                    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                for key in table.keys() {
                    if let Some(source) = sources.get_mut(key.as_str()) {
                        *source = Source::File;
                    }
                }
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        for (setting, text, source) in overrides {
            config.set(setting.name, &text).map_err(|e| {
                let given = match source {
                    Source::Flag => setting.flag().unwrap_or_default(),
                    _ => setting.env(),
                };
                anyhow::anyhow!("{given}: {e}")
            })?;
            sources.insert(setting.name, source);
        }
        config.validate()?;
        Ok(Loaded { config, sources })
    }

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
        self.trusted_proxies()?;
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

    /// `trusted_proxies` as networks (an address alone is a network of one).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        let parse = |entry: &String| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| anyhow::anyhow!("trusted_proxies entry {entry:?} is not an IP address or CIDR network"))
        };
        self.trusted_proxies.iter().map(parse).collect()
    }

    pub fn scopes(&self) -> anyhow::Result<Scope> {
        Scope::parse(&self.scopes).context("scopes")
    }

    pub fn client_credentials_scopes(&self) -> anyhow::Result<Scope> {
        Scope::parse(&self.client_credentials_scopes).context("client_credentials_scopes")
    }

    /// How long the audit log and the audit events are kept, in seconds; `None` (a setting of
    /// 0 days) keeps them for ever.
    pub fn audit_retention_secs(&self) -> Option<i64> {
        (self.audit_retention_days > 0)
            .then(|| i64::try_from(self.audit_retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX))
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

    /// The README's configuration table, row by row: (key, environment, default) cells.
    fn readme_table() -> Vec<(String, String, String)> {
        let readme = include_str!("../../../README.md");
        let header = "| key | environment | default | meaning |\n|---|---|---|---|\n";
        let start = readme.find(header).expect("the README has the configuration table") + header.len();
        readme[start..]
            .lines()
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
                assert_eq!(cells.len(), 4, "a row of four cells: {line}");
                (cells[0].to_owned(), cells[1].to_owned(), cells[2].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_readme_table_is_the_settings() {
        let rows = readme_table();
        for setting in SETTINGS {
            let key = format!("`{}`", setting.name);
            let Some((_, env, default)) = rows.iter().find(|(k, _, _)| *k == key) else {
                panic!("the README has no row for {key}");
            };
            let expected_env = format!("`{}`{}", setting.env(), if setting.secret { " (no flag)" } else { "" });
            assert_eq!(*env, expected_env, "{key}'s environment variable");
            let shown = setting.default_shown();
            assert!(
                *default == shown || default.starts_with(&format!("{shown} (")),
                "{key}'s default is {shown} in the code, {default} in the README"
            );
        }
        for (key, _, _) in &rows {
            assert!(SETTINGS.iter().any(|s| format!("`{}`", s.name) == *key), "the README's {key} is no setting");
        }
        assert_eq!(rows.len(), SETTINGS.len(), "one row per setting");
    }

    #[test]
    fn every_setting_has_a_flag_and_a_variable_and_parses_its_own_default() {
        let defaults = Config::default();
        let mut flags = std::collections::HashSet::new();
        for setting in SETTINGS {
            assert!(setting.env().starts_with("NMOS_AUTH_") && !setting.help.is_empty(), "{setting:?}");
            assert_eq!(setting.flag().is_none(), setting.secret, "{setting:?}: a flag unless a secret");
            if let Some(flag) = setting.flag() {
                assert!(flags.insert(flag), "{} twice", setting.name);
            }
            // The text form round-trips: what `nmos-auth config` shows can be given back.
            if let Some(value) = defaults.shown(setting.name).filter(|_| !setting.secret) {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned).unwrap_or(i.to_string()))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                let mut config = Config::default();
                config.set(setting.name, &text).unwrap_or_else(|e| panic!("{}: {text:?}: {e}", setting.name));
                assert_eq!(config.shown(setting.name), defaults.shown(setting.name), "{}", setting.name);
            }
        }
    }

    #[test]
    fn values_come_from_the_file_then_the_overrides() {
        let dir = std::env::temp_dir().join(format!("nmos-auth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("nmos-auth.toml");
        std::fs::write(&file, "key_publish_lead = 7200\naudience = [\"*.plant.example\"]\nmdns = false\n").unwrap();
        let setting = |name| SETTINGS.iter().find(|s| s.name == name).unwrap();
        let overrides = [
            (setting("mdns"), "true".to_owned(), Source::Environment),
            (setting("audience"), "a.plant.example, b.plant.example".to_owned(), Source::Flag),
            (setting("database_url"), "postgres://db/nmos".to_owned(), Source::Environment),
        ];
        let loaded = Config::load(Some(&file), overrides).unwrap();
        let c = &loaded.config;
        assert_eq!((c.key_publish_lead, c.mdns), (7200, true));
        assert_eq!(c.audience, ["a.plant.example", "b.plant.example"]);
        assert_eq!(c.database_url.as_ref().map(Secret::expose), Some("postgres://db/nmos"));
        let source = |name| loaded.sources[name];
        assert_eq!(source("key_publish_lead"), Source::File);
        assert_eq!(source("mdns"), Source::Environment);
        assert_eq!(source("audience"), Source::Flag);
        assert_eq!(source("listen"), Source::Default);
        assert_eq!(c.shown("database_url"), Some(toml::Value::String("[redacted]".into())));
        assert!(!toml::to_string(c).unwrap().contains("postgres://db"), "a written config holds no secret");

        let bad = [(setting("access_token_lifetime"), "soon".to_owned(), Source::Flag)];
        let e = Config::load(None, bad).unwrap_err().to_string();
        assert!(e.starts_with("--access-token-lifetime: "), "{e}");
        let invalid = [(setting("access_token_lifetime"), "5".to_owned(), Source::Environment)];
        assert!(Config::load(None, invalid).is_err(), "checked as a whole");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_fail() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:443\"\naudience = [\"*.plant.example\"]").unwrap();
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.access_token_lifetime, 60);
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
