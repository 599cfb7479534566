//! The `nmos-auth` command.
#![forbid(unsafe_code)]

// mimalloc: the token path allocates many small short-lived buffers; glibc malloc cost ~6 % of a token.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nmos_auth::Server;
use nmos_auth::split::Role;
use nmos_auth_core::config::{self as settings, Source};
use nmos_auth_core::{AccessRights, Config, NmosApi};
use nmos_auth_proto as pb;
use tokio::signal::unix::{SignalKind, signal};

/// An AMWA NMOS IS-10 Authorization Server.
///
/// Every setting is a TOML key of the config file, an `NMOS_AUTH_*` environment variable and a
/// flag (secrets: the file or the environment only); `nmos-auth config` shows the effective one.
#[derive(Parser)]
#[command(name = "nmos-auth", version, about)]
struct Cli {
    /// TOML config file; the environment and then the flags override it.
    #[arg(long, global = true, env = "NMOS_AUTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The command line: [`Cli`] and a flag, with its environment variable, for every setting
/// that is not a secret (`nmos_auth_core::config::SETTINGS`).
fn command_line() -> clap::Command {
    settings::SETTINGS.iter().fold(Cli::command(), |command, setting| match setting.flag() {
        Some(flag) => command.arg(
            clap::Arg::new(setting.name)
                .long(flag.trim_start_matches("--").to_owned())
                .env(setting.env())
                .global(true)
                .value_name("VALUE")
                .help(setting.help_line()),
        ),
        None => command,
    })
}

/// The defaults, then the config file, then the environment and the flags.
fn load_config(cli: &Cli, matches: &clap::ArgMatches) -> anyhow::Result<settings::Loaded> {
    let mut overrides = Vec::new();
    for setting in settings::SETTINGS {
        if setting.secret {
            // Never a flag (visible in `ps`): the file or the environment only.
            if let Ok(value) = std::env::var(setting.env()) {
                overrides.push((setting, value, Source::Environment));
            }
            continue;
        }
        let source = match matches.value_source(setting.name) {
            Some(clap::parser::ValueSource::CommandLine) => Source::Flag,
            Some(clap::parser::ValueSource::EnvVariable) => Source::Environment,
            _ => continue,
        };
        if let Some(value) = matches.get_one::<String>(setting.name) {
            overrides.push((setting, value.clone(), source));
        }
    }
    Config::load(cli.config.as_deref(), overrides)
}

/// `nmos-auth config`: every setting's effective value, as TOML, and where it came from.
fn print_config(loaded: &settings::Loaded, file: Option<&std::path::Path>) {
    println!("# The effective configuration: each setting, and where its value came from.");
    for setting in settings::SETTINGS {
        let source = match loaded.sources.get(setting.name).copied().unwrap_or(Source::Default) {
            Source::Default => "default".to_owned(),
            Source::File => format!("file {}", file.map(|f| f.display().to_string()).unwrap_or_default()),
            Source::Environment => format!("environment {}", setting.env()),
            Source::Flag => format!("flag {}", setting.flag().unwrap_or_default()),
        };
        match loaded.config.shown(setting.name) {
            Some(_) if setting.secret => println!("# {} is set (a secret, not shown)  # {source}", setting.name),
            Some(value) => println!("{} = {value}  # {source}", setting.name),
            None => match setting.means {
                Some(means) => println!("# {} is unset: {means}  # {source}", setting.name),
                None => println!("# {} is unset  # {source}", setting.name),
            },
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process (SQLite under --data-dir unless NMOS_AUTH_DATABASE_URL is set).
    Serve,
    /// Split deployment: the keys service alone (signing keys, JWKS).
    Keys,
    /// Split deployment: the identity service alone (users and their rights).
    Identity,
    /// Split deployment: the client registry alone.
    ClientRegistry,
    /// Split deployment: the token issuer alone.
    TokenIssuer,
    /// Split deployment: the HTTP gateway alone.
    Gateway,
    /// Create a development CA and a certificate per service for internal mutual TLS.
    DevCa {
        /// Where to write ca.pem, <service>.pem and <service>-key.pem.
        #[arg(long)]
        out: PathBuf,
        /// Do nothing when OUT already holds a CA (for an init container that runs every time).
        #[arg(long)]
        if_missing: bool,
    },
    /// Print the effective configuration: every setting's value (secrets redacted) and where it
    /// came from (default, file, environment, flag).
    Config,
    /// Exit 0 when this process is alive (container health checks): grpc.health.v1 `liveness`
    /// on health_listen when it is set, otherwise GET /healthz on the gateway's listen port.
    /// Liveness is the process's own: it never fails for a peer or the database.
    Healthcheck {
        /// Check readiness instead: the service's own database answers (grpc.health.v1 ""), or
        /// for the gateway GET /readyz.
        #[arg(long)]
        ready: bool,
    },
    /// Operator commands that work on the stores directly.
    #[command(subcommand)]
    Admin(Admin),
    /// DNS-SD: what this server advertises.
    #[command(subcommand, name = "dns-sd")]
    DnsSd(DnsSd),
    /// The discovery sidecar alone: advertise over mDNS while the gateway answers, withdraw while
    /// it does not (for a gateway run separately, e.g. in Kubernetes with host networking).
    Discovery {
        /// What to poll; default the metadata at the listen address.
        #[arg(long)]
        health_url: Option<String>,
    },
    /// Check any authorization server (this one or another) against IS-10 v1.0 and the RFCs it
    /// builds on, from outside: one line per check, PASS, FAIL, WARN or SKIP, with the clause
    /// it checks. Exit status 0 only when nothing FAILs.
    Check {
        /// The server's base URL, its issuer, or its metadata URL.
        url: String,
        /// An initial access token, so that a client can be registered (RFC 7591) and tokens checked.
        #[arg(long, env = "NMOS_AUTH_CHECK_INITIAL_ACCESS_TOKEN", hide_env_values = true)]
        initial_access_token: Option<String>,
        /// An existing client_credentials client, ID:SECRET, for the token checks.
        #[arg(long, env = "NMOS_AUTH_CHECK_CLIENT", hide_env_values = true)]
        client: Option<String>,
        /// A PEM file of CA certificates to trust besides the system's (the plant's CA).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// table for people; json or junit (JUnit XML) for CI systems.
        #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
        format: CheckFormat,
        /// Write the report here rather than to standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Browse mDNS this many seconds for the server's _nmos-auth._tcp advertisement (the
        /// checker's machine must share a link with the server).
        #[arg(long, value_name = "SECONDS")]
        mdns: Option<u64>,
        /// Check the authorization code flow with a person: the checker prints an address to
        /// open in a browser on this machine, where they sign in and approve twice; the browser
        /// comes back to the checker's loopback port. Waits this many seconds for each approval.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "300")]
        sign_in: Option<u64>,
        /// Look up the server's unicast DNS-SD advertisement (_nmos-auth._tcp.DOMAIN: PTR, SRV,
        /// TXT), which IS-10 prefers to mDNS.
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// The DNS server for --domain, ADDRESS or ADDRESS:PORT (default: the first nameserver
        /// of /etc/resolv.conf).
        #[arg(long, value_name = "ADDRESS")]
        dns_server: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Table,
    Json,
    Junit,
}

/// `nmos-auth check`: exit status 0 when nothing failed, 1 when a check failed, 2 when the
/// command could not run.
async fn check(
    mut options: nmos_auth_check::Options,
    client: Option<String>,
    ca: Option<PathBuf>,
    format: CheckFormat,
    output: Option<PathBuf>,
) -> std::process::ExitCode {
    let client = match client.map(|c| c.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned()))) {
        Some(None) => {
            eprintln!("nmos-auth check: --client takes ID:SECRET");
            return std::process::ExitCode::from(2);
        }
        Some(Some(pair)) => Some(pair),
        None => None,
    };
    let ca_pem = match ca.map(std::fs::read).transpose() {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("nmos-auth check: --ca: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    options.client = client;
    options.ca_pem = ca_pem;
    let report = nmos_auth_check::run(&options).await;
    let text = match format {
        CheckFormat::Table => report.table(),
        CheckFormat::Json => format!("{:#}\n", report.json()),
        CheckFormat::Junit => report.junit(),
    };
    let written = match &output {
        Some(path) => std::fs::write(path, &text),
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("nmos-auth check: writing the report: {e}");
        return std::process::ExitCode::from(2);
    }
    if report.failed() { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS }
}

#[derive(Subcommand)]
enum DnsSd {
    /// Print the PTR, SRV, TXT and A records for a unicast DNS zone (IS-10 prefers unicast DNS-SD).
    Zone {
        /// The zone's domain, e.g. plant.example.com (default: dns_sd_domain)
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(Subcommand)]
enum Admin {
    /// Users, clients and initial access tokens (their stores only).
    #[command(flatten)]
    Stores(StoreCommand),
    /// The token signing keys (these need the key-encryption key).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
#[allow(clippy::enum_variant_names)] // the names are the CLI's command names
enum StoreCommand {
    /// Create an initial access token for RFC 7591 registration; it is the last line printed.
    CreateInitialAccessToken {
        /// Seconds until it expires; 0 for never.
        #[arg(long, default_value_t = 86400)]
        lifetime: i64,
        /// What the token is for (kept with its digest).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add a user; the password is read from the first line of standard input.
    AddUser {
        #[arg(allow_hyphen_values = true)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Access per API, e.g. registration=write,query=read (none, read, write).
        #[arg(long, default_value = "")]
        rights: String,
    },
    /// Set a user's password, read from the first line of standard input; every session of
    /// theirs on the pages ends.
    SetPassword {
        #[arg(allow_hyphen_values = true)]
        username: String,
    },
    /// Sign a user out of the pages everywhere: every session of theirs ends.
    SignOut {
        #[arg(allow_hyphen_values = true)]
        username: String,
    },
    /// Give a user administrator rights (or take them away with --revoke).
    MakeAdmin {
        #[arg(allow_hyphen_values = true)]
        username: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Set a user's access to some APIs; APIs not named keep their access.
    SetRights {
        #[arg(allow_hyphen_values = true)]
        username: String,
        /// e.g. registration=write,query=read,node=none
        #[arg(long)]
        rights: String,
    },
    /// List users and their rights.
    ListUsers,
    /// List the clients waiting for approval (registration = approval).
    ListPending,
    /// Approve a pending client: it may then get tokens.
    ApproveClient { client_id: String },
    /// Reject a pending client: it is deleted.
    RejectClient { client_id: String },
    /// List every client, newest first, a page of 50 at a time.
    ListClients {
        /// machine, confidential or public.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(pb::ClientKind::NAMED.map(|(_, n)| n)))]
        kind: Option<String>,
        /// approved, pending or disabled.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(pb::ClientStatus::NAMED.map(|(_, n)| n)))]
        status: Option<String>,
        /// Part of the name, any case.
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        page: u32,
    },
    /// Disable a client: it gets no tokens, and its refresh tokens are revoked.
    DisableClient { client_id: String },
    /// Enable a disabled client: it gets tokens again.
    EnableClient { client_id: String },
    /// Give a confidential client a new secret, printed once; the old one stops working.
    RotateClientSecret { client_id: String },
    /// Set a machine client's policy for its next client_credentials tokens (or --clear it).
    SetClientPolicy {
        client_id: String,
        /// The scopes it may get, e.g. "registration events".
        #[arg(long, required_unless_present_any = ["clear", "admin", "introspect"])]
        scope: Option<String>,
        /// A read path for an API, as API=PATH (repeatable), e.g. --read 'connection=*'.
        #[arg(long)]
        read: Vec<String>,
        /// A write path for an API, as API=PATH (repeatable), e.g. --write 'connection=single/senders/*'.
        #[arg(long)]
        write: Vec<String>,
        /// The aud of its tokens (repeatable), e.g. --audience '*.studio-a.example'.
        #[arg(long)]
        audience: Vec<String>,
        /// It may also get an administrator's token (scope nmos-auth:admin, asked for on its
        /// own), which the services' gRPC APIs accept from callers without a certificate.
        #[arg(long)]
        admin: bool,
        /// It may introspect tokens issued to other clients (RFC 7662), as a resource server
        /// that checks tokens at the introspection endpoint does; otherwise only its own.
        #[arg(long)]
        introspect: bool,
        /// Go back to the server's defaults.
        #[arg(long, conflicts_with_all = ["scope", "read", "write", "audience", "admin", "introspect"])]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every signing key with its state (next, active, retired, removed) and times.
    List,
    /// Plan the next key now: published at once, signing after key_publish_lead.
    Rotate,
    /// Take a compromised key out of the JWKS at once (a new key signs if it was signing).
    Remove {
        /// Its kid (a base64url thumbprint: it may start with '-').
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Import an RSA private key (PEM, PKCS#8 or PKCS#1) with its certificate chain (PEM, leaf
    /// first; published as x5c): published at once, signing after key_publish_lead.
    Import {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        chain: PathBuf,
    },
    /// Re-encrypt every signing key under a new key-encryption key (a file with its base64).
    /// Then give every keys replica the new key (key_encryption_key_file or the variable).
    RotateKek {
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

fn time(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

async fn keys_command(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    use base64::Engine;
    use rustls_pki_types::pem::PemObject;
    let show = |key: &pb::SigningKey| {
        let removal = if key.remove_at == 0 { "-".to_owned() } else { time(key.remove_at) };
        let by = if key.removed_by_operator { " (by an operator)" } else { "" };
        println!(
            "{}\t{}\tgeneration {}\tsigns from {}\tpublished until {removal}{by}",
            key.kid,
            key.state,
            key.generation,
            time(key.activate_at)
        );
    };
    if let KeysCommand::RotateKek { new_key_file } = command {
        return rotate_kek(&config, &new_key_file).await;
    }
    let mut keys =
        nmos_auth::operators::connect(&config, nmos_auth::operators::Needs { keys: true, token_issuer: false })
            .await?
            .keys
            .context("no keys service")?;
    match command {
        KeysCommand::List => {
            for key in keys.list_keys(pb::ListKeysRequest::default()).await.map_err(refused)?.into_inner().keys {
                show(&key);
            }
        }
        KeysCommand::Rotate => {
            show(&keys.rotate_key(pb::RotateKeyRequest::default()).await.map_err(refused)?.into_inner())
        }
        KeysCommand::Remove { kid } => {
            keys.remove_key(pb::RemoveKeyRequest { kid: kid.clone(), requested_by: None }).await.map_err(refused)?;
            println!("removed {kid}: it is out of the JWKS now; resource servers drop it at their next fetch");
        }
        KeysCommand::Import { key, chain } => {
            let pem = std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
            let private = rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| anyhow::anyhow!("{}: no private key: {e:?}", key.display()))?;
            let pkcs8 = match &private {
                rustls_pki_types::PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
                rustls_pki_types::PrivateKeyDer::Pkcs1(der) => {
                    use aws_lc_rs::encoding::AsDer;
                    let pair = aws_lc_rs::rsa::KeyPair::from_der(der.secret_pkcs1_der())
                        .map_err(|e| anyhow::anyhow!("not an RSA key: {e}"))?;
                    pair.as_der().map_err(|_| anyhow::anyhow!("PKCS#8 encoding failed"))?.as_ref().to_vec()
                }
                _ => anyhow::bail!("{}: only RSA keys sign RS512 tokens", key.display()),
            };
            let pem = std::fs::read(&chain).with_context(|| format!("reading {}", chain.display()))?;
            let certs: Vec<String> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .map(|c| c.map(|c| base64::engine::general_purpose::STANDARD.encode(c.as_ref())))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", chain.display()))?;
            anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", chain.display());
            let imported = keys.import_key(pb::ImportKeyRequest { pkcs8, chain: certs }).await.map_err(refused)?;
            show(&imported.into_inner());
        }
        // Handled first, on the keys store itself.
        KeysCommand::RotateKek { .. } => {}
    }
    Ok(())
}

/// Re-encrypts every stored signing key under a new key-encryption key. This one works on the
/// keys store itself, with both key-encryption keys: it is maintenance of the data at rest,
/// after which every keys replica must restart with the new key anyway.
async fn rotate_kek(config: &Config, new_key_file: &std::path::Path) -> anyhow::Result<()> {
    config.validate()?;
    nmos_auth::prepare_data_dir(config)?;
    let keys = nmos_auth_keys::KeysService::open(config).await.context("keys store")?;
    let text = std::fs::read_to_string(new_key_file).with_context(|| format!("reading {}", new_key_file.display()))?;
    let new = nmos_auth_core::sealing::SealingKey::parse(&text).context("the new key-encryption key")?;
    let n = keys.rotate_kek(&new).await?;
    println!(
        "re-encrypted {n} signing keys under key-encryption key {}; now give every keys replica that key",
        new.id()
    );
    Ok(())
}

/// A service's refusal, as the operator reads it.
fn refused(status: tonic::Status) -> anyhow::Error {
    match nmos_auth_core::OAuthError::from_status_detail(&status) {
        Some(error) => anyhow::anyhow!("{}", error.description.unwrap_or_else(|| error.code.as_str().to_owned())),
        None => anyhow::anyhow!("{}", status.message()),
    }
}

/// A password from the first line of standard input (never from the command line, where other
/// users of the machine could read it).
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

fn policy_from_args(
    scope: String,
    read: &[String],
    write: &[String],
    audience: Vec<String>,
    admin: bool,
    introspect: bool,
) -> anyhow::Result<nmos_auth_proto::ClientPolicy> {
    let mut permissions: Vec<nmos_auth_proto::ApiPermission> = Vec::new();
    for (list, is_write) in [(read, false), (write, true)] {
        for pair in list {
            let (api, path) = pair.split_once('=').with_context(|| format!("{pair:?} is not API=PATH"))?;
            let entry = match permissions.iter().position(|p| p.api == api) {
                Some(i) => &mut permissions[i],
                None => {
                    permissions.push(nmos_auth_proto::ApiPermission {
                        api: api.to_owned(),
                        read: vec![],
                        write: vec![],
                    });
                    permissions.last_mut().context("just pushed")?
                }
            };
            if is_write { entry.write.push(path.to_owned()) } else { entry.read.push(path.to_owned()) }
        }
    }
    Ok(nmos_auth_proto::ClientPolicy { scope, permissions, audience, admin, introspect })
}

/// The rights named in `text` (`registration=write,query=none`): only those are changed; an
/// explicit "none" removes access.
fn rights_list(text: &str) -> anyhow::Result<Vec<pb::ApiRight>> {
    let rights = AccessRights::parse_list(text).map_err(anyhow::Error::msg)?;
    let named: Vec<NmosApi> =
        text.split(',').filter_map(|p| p.split_once('=').and_then(|(api, _)| NmosApi::parse(api.trim()))).collect();
    let all = rights.to_proto();
    Ok(named.into_iter().filter_map(|api| all.iter().find(|r| r.api == api.as_str()).cloned()).collect())
}

fn print_user(user: &pb::User) {
    let rights = AccessRights::from_proto(&user.rights);
    let rights: Vec<String> =
        NmosApi::ALL.into_iter().map(|api| format!("{api}={}", rights.get(api).as_str())).collect();
    println!(
        "{}{}{} {}",
        user.username,
        if user.admin { " (admin)" } else { "" },
        if user.disabled { " (disabled)" } else { "" },
        rights.join(",")
    );
}

async fn admin(config: Config, command: Admin) -> anyhow::Result<()> {
    match command {
        Admin::Stores(command) => store_command(config, command).await,
        Admin::Keys(keys) => keys_command(config, keys).await,
    }
}

/// Users, clients and initial access tokens: RPCs of the identity service and the client
/// registry, as an operator (`nmos_auth::operators`).
async fn store_command(config: Config, command: StoreCommand) -> anyhow::Result<()> {
    // Disabling a client ends its refresh tokens, which are the token issuer's (a peer of the
    // keys service, when it is opened in this process).
    let with_token_issuer = matches!(command, StoreCommand::DisableClient { .. });
    let nmos_auth::operators::Operators { mut identity, mut clients, token_issuer, .. } =
        nmos_auth::operators::connect(
            &config,
            nmos_auth::operators::Needs { keys: false, token_issuer: with_token_issuer },
        )
        .await?;
    match command {
        StoreCommand::CreateInitialAccessToken { lifetime, description } => {
            let request =
                pb::CreateInitialAccessTokenRequest { lifetime_secs: lifetime, description, requested_by: None };
            let created = clients.create_initial_access_token(request).await.map_err(refused)?.into_inner();
            match created.expires_at {
                0 => eprintln!(
                    "Initial access token created; it never expires. Send it as 'Authorization: Bearer <token>' to the registration endpoint:"
                ),
                at => eprintln!(
                    "Initial access token created; it expires at {at} (Unix time). Send it as 'Authorization: Bearer <token>' to the registration endpoint:"
                ),
            }
            println!("{}", created.token);
        }
        StoreCommand::AddUser { username, admin, rights } => {
            let password = password_from_stdin()?;
            let rights = rights_list(&rights)?;
            let request = pb::CreateUserRequest { username, password, admin, rights, requested_by: String::new() };
            print_user(&identity.create_user(request).await.map_err(refused)?.into_inner());
        }
        StoreCommand::SetPassword { username } => {
            let new_password = password_from_stdin()?;
            let request = pb::SetPasswordRequest { username: username.clone(), new_password, ..Default::default() };
            identity.set_password(request).await.map_err(refused)?;
            println!("password set for {username}; their sessions have ended");
        }
        StoreCommand::SignOut { username } => {
            let request = pb::EndUserSessionsRequest { username: username.clone(), requested_by: String::new() };
            let ended = identity.end_user_sessions(request).await.map_err(refused)?.into_inner().ended;
            println!("{username}: {ended} session(s) ended");
        }
        StoreCommand::MakeAdmin { username, revoke } => {
            let request = pb::SetAdminRequest { username, admin: !revoke, requested_by: String::new() };
            print_user(&identity.set_admin(request).await.map_err(refused)?.into_inner())
        }
        StoreCommand::SetRights { username, rights } => {
            let request = pb::SetRightsRequest { username, rights: rights_list(&rights)?, requested_by: String::new() };
            print_user(&identity.set_rights(request).await.map_err(refused)?.into_inner())
        }
        StoreCommand::ListUsers => {
            let users = identity.list_users(pb::ListUsersRequest::default()).await.map_err(refused)?.into_inner();
            for user in users.users {
                print_user(&user);
            }
        }
        StoreCommand::ListPending => {
            let request = pb::ListClientsRequest { pending: true, ..Default::default() };
            for client in clients.list_clients(request).await.map_err(refused)?.into_inner().clients {
                let grants = client.grant_types.join(",");
                println!("{} {:?} grants={grants} scope={:?}", client.client_id, client.client_name, client.scope);
            }
        }
        StoreCommand::ApproveClient { client_id } => {
            let request = pb::ApproveClientRequest { client_id: client_id.clone(), requested_by: None };
            clients.approve_client(request).await.map_err(refused)?;
            println!("approved {client_id}");
        }
        StoreCommand::SetClientPolicy { client_id, scope, read, write, audience, admin, introspect, clear } => {
            let policy = match (clear, scope) {
                (true, _) | (false, None) if !admin && !introspect => None,
                (_, scope) => {
                    Some(policy_from_args(scope.unwrap_or_default(), &read, &write, audience, admin, introspect)?)
                }
            };
            let request = pb::SetClientPolicyRequest { client_id: client_id.clone(), policy, requested_by: None };
            let client = clients.set_client_policy(request).await.map_err(refused)?.into_inner();
            match client.policy {
                Some(p) => println!(
                    "{client_id}: scope {:?}, audience {:?}, paths for {} APIs{}{}",
                    p.scope,
                    p.audience,
                    p.permissions.len(),
                    if p.admin { ", and administrators' tokens" } else { "" },
                    if p.introspect { ", and may introspect others' tokens" } else { "" }
                ),
                None => println!("{client_id}: the server's defaults"),
            }
        }
        StoreCommand::ListClients { kind, status, name, page } => {
            const PAGE: u32 = 50;
            // clap admitted only the names these know.
            let kind = kind.as_deref().and_then(pb::ClientKind::from_name).unwrap_or(pb::ClientKind::Unspecified);
            let status =
                status.as_deref().and_then(pb::ClientStatus::from_name).unwrap_or(pb::ClientStatus::Unspecified);
            let request = pb::ListClientsRequest {
                all: true,
                kind: kind as i32,
                status: status as i32,
                name,
                offset: (page - 1).saturating_mul(PAGE),
                limit: PAGE,
                ..Default::default()
            };
            let found = clients.list_clients(request).await.map_err(refused)?.into_inner();
            for c in &found.clients {
                let status = pb::ClientStatus::try_from(c.status).ok().and_then(pb::ClientStatus::name).unwrap_or("?");
                let kind = pb::ClientKind::try_from(c.kind).ok().and_then(pb::ClientKind::name).unwrap_or("?");
                println!("{} {:?} {kind} {status} owner={:?}", c.client_id, c.client_name, c.owner);
            }
            let first = u64::from(page - 1) * u64::from(PAGE);
            eprintln!("{} of {} matching clients (page {page})", found.clients.len(), found.total);
            if first + (found.clients.len() as u64) < found.total {
                eprintln!("more: --page {}", page + 1);
            }
        }
        StoreCommand::DisableClient { client_id } => {
            let mut token_issuer = token_issuer.context("the token issuer is not reachable from here")?;
            // Disabled first, so that no refresh slips in between; then its refresh tokens end.
            let request =
                pb::SetClientDisabledRequest { client_id: client_id.clone(), disabled: true, requested_by: None };
            clients.set_client_disabled(request).await.map_err(refused)?;
            let revoke = pb::RevokeClientTokensRequest { client_id: client_id.clone(), requested_by: None };
            let families = token_issuer.revoke_client_tokens(revoke).await.map_err(refused)?.into_inner().families;
            println!("disabled {client_id}; {families} refresh-token families revoked");
        }
        StoreCommand::EnableClient { client_id } => {
            let request =
                pb::SetClientDisabledRequest { client_id: client_id.clone(), disabled: false, requested_by: None };
            clients.set_client_disabled(request).await.map_err(refused)?;
            println!("enabled {client_id}");
        }
        StoreCommand::RotateClientSecret { client_id } => {
            let request = pb::RotateClientSecretRequest { client_id, requested_by: None };
            let rotated = clients.rotate_client_secret(request).await.map_err(refused)?.into_inner();
            eprintln!("New client secret (shown only now; the old one no longer works):");
            println!("{}", rotated.client_secret);
        }
        StoreCommand::RejectClient { client_id } => {
            let request = pb::RejectClientRequest { client_id: client_id.clone(), requested_by: None };
            clients.reject_client(request).await.map_err(refused)?;
            println!("rejected and deleted {client_id}");
        }
    }
    Ok(())
}

/// The gateway's metadata at `addr` (loopback when it listens on every address): what the
/// discovery sidecar polls to know the gateway answers.
fn local_health_url(config: &Config, addr: SocketAddr) -> String {
    let scheme = if config.tls_enabled() { "https" } else { "http" };
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    format!("{scheme}://{addr}/.well-known/oauth-authorization-server")
}

async fn discovery(config: Config, health_url: Option<String>) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let ad = nmos_auth_discovery::Advertisement::from_config(&config)?;
    let announcers = nmos_auth_discovery::Announcers::from_config(&config)?;
    anyhow::ensure!(announcers.any(), "nothing to do: mdns is off and no dns_sd_update_server is set");
    let health_url = health_url.unwrap_or_else(|| local_health_url(&config, config.listen));
    let stop = async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    nmos_auth_discovery::sidecar(ad, announcers, health_url, stop).await
}

/// The container health check: no shell or curl in the image, so the binary asks itself.
async fn healthcheck(config: &Config, ready: bool) -> anyhow::Result<()> {
    let within = std::time::Duration::from_secs(2);
    if let Some(addr) = config.health_listen {
        let mut addr = addr;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        let channel = nmos_auth_core::grpc::connect(addr)?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let service = if ready { "" } else { nmos_auth_core::LIVENESS };
        let check = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
        let reply = tokio::time::timeout(within, health.check(check)).await.context("no answer")??;
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        anyhow::ensure!(reply.get_ref().status == serving, "not serving");
        return Ok(());
    }
    let path = if ready { "/readyz" } else { "/healthz" };
    let url = local_health_url(config, config.listen).replace("/.well-known/oauth-authorization-server", path);
    let http = reqwest::Client::builder().timeout(within).danger_accept_invalid_certs(true).build()?;
    let status = http.get(&url).send().await.with_context(|| format!("GET {url}"))?.status();
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    Ok(())
}

/// One service of the split deployment, until SIGINT or SIGTERM.
async fn split(role: Role, config: Config) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    };
    nmos_auth::split::run(role, config, stop).await
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives while the services start must shut down cleanly.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let issuer = config.issuer()?;
    if config.listen.ip().is_unspecified() && config.public_url.is_none() {
        tracing::warn!(%issuer, "listening on every address without public_url: set public_url to the name Nodes reach this server by");
    }
    if config.legacy_password_grant {
        tracing::warn!(
            "the legacy password grant is on: IS-10 discourages it; switch it off once old clients are gone"
        );
    }
    if config.legacy_implicit_grant {
        tracing::warn!("the legacy implicit grant is on: IS-10 forbids it; switch it off once old clients are gone");
    }
    if !config.tls_enabled() {
        tracing::warn!(
            "serving plain HTTP: for development only; IS-10 requires HTTPS in production (set tls_cert and tls_key)"
        );
    }
    let announcers = nmos_auth_discovery::Announcers::from_config(&config)?;
    let advertisement =
        if announcers.any() { Some(nmos_auth_discovery::Advertisement::from_config(&config)?) } else { None };
    let health_url = local_health_url(&config, config.listen);
    let mut server = Server::start(config, listener).await?;
    // Advertised while the gateway answers; withdrawn before it stops.
    let (stop_discovery, discovery_stopped) = tokio::sync::oneshot::channel::<()>();
    let discovery = advertisement.map(|ad| {
        tokio::spawn(async move {
            let stop = async {
                let _ = discovery_stopped.await;
            };
            if let Err(e) = nmos_auth_discovery::sidecar(ad, announcers, health_url, stop).await {
                tracing::error!(error = %format!("{e:#}"), "DNS-SD advertisement stopped");
            }
        })
    });
    let withdraw = async move {
        let _ = stop_discovery.send(());
        if let Some(task) = discovery {
            let _ = task.await;
        }
    };
    tracing::info!(addr = %server.addr, %issuer, "nmos-auth is serving");
    tracing::info!(
        "create an initial access token for device registration with: nmos-auth admin create-initial-access-token"
    );
    let stop = async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let result = tokio::select! {
        result = server.wait() => result,
        _ = stop => {
            tracing::info!("shutting down");
            withdraw.await;
            return server.shutdown().await;
        }
    };
    withdraw.await;
    result
}

fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process: mimalloc asks for them on its arenas
    // (MADV_HUGEPAGE), and with THP on, each first touch of an arena's 2 MiB stretch made all
    // of it resident. Off, the resident memory after a token load falls from about 54 MB to
    // 34 MB at the same throughput (BENCHMARKS.md "Memory"). Done before the runtime starts, so
    // that its threads' heaps and stacks are made of small pages from the start.
    let _ = nix::sys::prctl::set_thp_disable(true);
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("nmos-auth: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let matches = command_line().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A client of any server: none of this server's configuration applies.
    if let Command::Check { url, initial_access_token, client, ca, format, output, mdns, sign_in, domain, dns_server } =
        cli.command
    {
        let dns_server = match dns_server.map(|a| {
            a.parse::<std::net::SocketAddr>()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        }) {
            Some(Err(_)) => {
                eprintln!("nmos-auth check: --dns-server takes ADDRESS or ADDRESS:PORT");
                return std::process::ExitCode::from(2);
            }
            Some(Ok(addr)) => Some(addr),
            None => None,
        };
        let mdns = mdns.map(std::time::Duration::from_secs);
        let person = sign_in.map(|seconds| nmos_auth_check::Person {
            open: std::sync::Arc::new(|url: &str| {
                eprintln!(
                    "nmos-auth check: open this address in a browser on this machine, sign in, and approve \
                     (the checker asks twice):\n{url}"
                )
            }),
            within: std::time::Duration::from_secs(seconds),
        });
        return check(
            nmos_auth_check::Options {
                url,
                initial_access_token,
                client: None,
                ca_pem: None,
                mdns,
                person,
                dns_sd_domain: domain,
                dns_server,
            },
            client,
            ca,
            format,
            output,
        )
        .await;
    }
    let loaded = match load_config(&cli, &matches) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("nmos-auth: configuration error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Command::Config = cli.command {
        print_config(&loaded, cli.config.as_deref());
        return std::process::ExitCode::SUCCESS;
    }
    let config = loaded.config;
    let service = match &cli.command {
        Command::Keys => "nmos-auth-keys",
        Command::Identity => "nmos-auth-identity",
        Command::ClientRegistry => "nmos-auth-client-registry",
        Command::TokenIssuer => "nmos-auth-token-issuer",
        Command::Gateway => "nmos-auth-gateway",
        Command::Discovery { .. } => "nmos-auth-discovery",
        _ => "nmos-auth",
    };
    let telemetry = nmos_auth_core::telemetry::init(config.log_format, service);
    let result = match cli.command {
        Command::Serve => serve(config).await,
        Command::Keys => split(Role::Keys, config).await,
        Command::Identity => split(Role::Identity, config).await,
        Command::ClientRegistry => split(Role::ClientRegistry, config).await,
        Command::TokenIssuer => split(Role::TokenIssuer, config).await,
        Command::Gateway => split(Role::Gateway, config).await,
        Command::DevCa { out, if_missing } if if_missing && out.join("ca.pem").exists() => {
            println!("{} already holds a CA; nothing written", out.display());
            Ok(())
        }
        Command::DevCa { out, .. } => nmos_auth::devca::create(&out).map(|files| {
            println!("wrote {} in {}", files.join(", "), out.display());
        }),
        Command::Healthcheck { ready } => healthcheck(&config, ready).await,
        Command::Config => Ok(()),
        Command::Admin(command) => admin(config, command).await,
        Command::Discovery { health_url } => discovery(config, health_url).await,
        Command::Check { .. } => Ok(()),
        Command::DnsSd(DnsSd::Zone { domain }) => match domain.or(config.dns_sd_domain.clone()) {
            Some(domain) => nmos_auth_discovery::Advertisement::from_config(&config).map(|ad| {
                print!("{}", ad.zone(&domain));
            }),
            None => Err(anyhow::anyhow!("name the zone with --domain or dns_sd_domain")),
        },
    };
    // Blocking, briefly: the last spans and metrics are sent before the process exits.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.ok();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nmos-auth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
