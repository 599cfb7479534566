//! The client registry: RFC 7591 registration, client secrets (stored as SHA-256 digests and
//! compared in constant time), client authentication, and initial access tokens.
#![forbid(unsafe_code)]

mod assertion;
mod grpc;
pub mod metadata;
pub mod policy;
pub mod store;

/// The client assertion's unverified `sub`/`iss` reading, for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub use assertion::claimed_client;

use std::sync::Arc;

use nmos_auth_core::config::RegistrationMode;
use nmos_auth_core::db::Db;
use nmos_auth_core::events::{Event, EventLog};
use nmos_auth_core::metrics::{Collect, Reading, Readings};
use nmos_auth_core::secret::{digest, random_id, random_token, verify_digest};
use nmos_auth_core::{Config, ErrorCode, OAuthError, Scope};
use nmos_auth_proto::client_registry_server::ClientRegistryServer;
use serde_json::Value;

use crate::metadata::{AuthMethod, ClientMetadata, GrantType};
use crate::policy::ClientPolicy;
use crate::store::{ClientRow, ClientSearch, ClientStore};

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub issued_at: i64,
    pub metadata: ClientMetadata,
    /// The web user who registered it; empty for dynamic registrations.
    pub owner: String,
    /// Waiting for an administrator's approval: no tokens until then.
    pub pending: bool,
    /// Disabled by an administrator: no tokens until enabled again.
    pub disabled: bool,
    /// An administrator's policy for its client_credentials tokens.
    pub policy: Option<ClientPolicy>,
    /// How it was registered: [`BY_TOKEN`], [`ON_A_PAGE`], [`FOR_APPROVAL`] or [`OPENLY`] (empty
    /// for clients registered before this was kept).
    pub registered_how: String,
}

/// Registered with an initial access token.
pub const BY_TOKEN: &str = "token";
/// Registered by a signed-in user on the web pages.
pub const ON_A_PAGE: &str = "page";
/// Registered anonymously in `approval` mode, pending until an administrator approves it.
pub const FOR_APPROVAL: &str = "approval";
/// Registered anonymously in `open` mode.
pub const OPENLY: &str = "open";

const APPROVED: &str = "approved";
const PENDING: &str = "pending";
const DISABLED: &str = "disabled";

/// Fills in the kind and name of clients registered before they were kept beside their metadata
/// (the console searches them). Replicas opening together write the same values.
async fn list_existing_clients(store: &dyn ClientStore) -> anyhow::Result<()> {
    for (client_id, metadata) in store.unlisted().await? {
        let (kind, name) = match serde_json::from_str::<ClientMetadata>(&metadata) {
            Ok(metadata) => (metadata.kind(), metadata.search_name()),
            Err(e) => {
                tracing::warn!(client_id, error = %e, "a stored client's metadata does not parse: listed as confidential");
                (metadata::ClientKind::Confidential, String::new())
            }
        };
        store.set_listing(&client_id, kind.as_str(), &name).await?;
    }
    Ok(())
}

/// RFC 7592's answer for a client that is not there, or a wrong registration access token.
fn unknown_configured() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "unknown client or wrong registration access token")
}

/// The answer to a disabled client that authenticated (RFC 6749 §5.2: it may not have tokens).
fn disabled_client() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, "this client has been disabled by an administrator")
}

/// A signed-in user of the web pages, as the gateway vouches for them.
pub struct WebUser {
    pub username: String,
    pub admin: bool,
    /// When their account was created (Unix seconds; 0 for an operator).
    pub account_created_at: i64,
}

impl WebUser {
    /// Whether `client` is theirs: registered by them, not by an earlier, deleted account of
    /// the same name (accounts are dated to the second).
    fn owns(&self, client: &Client) -> bool {
        client.owner == self.username && nmos_auth_core::done_by_account(self.account_created_at, client.issued_at)
    }
}

impl From<nmos_auth_proto::WebUser> for WebUser {
    fn from(user: nmos_auth_proto::WebUser) -> WebUser {
        WebUser { username: user.username, admin: user.admin, account_created_at: user.account_created_at }
    }
}

impl Client {
    fn from_row(row: ClientRow) -> Result<Client, OAuthError> {
        let metadata = serde_json::from_str(&row.metadata).map_err(OAuthError::internal)?;
        Ok(Client {
            client_id: row.client_id,
            issued_at: row.issued_at,
            metadata,
            owner: row.owner,
            pending: row.status == PENDING,
            disabled: row.status == DISABLED,
            policy: row.policy.as_deref().map(serde_json::from_str).transpose().map_err(OAuthError::internal)?,
            registered_how: row.registered_how,
        })
    }
}

/// A client's information response (RFC 7591 §3.2.1, RFC 7592 §3): the client, and the
/// credentials issued with this response (only digests of them are stored).
pub struct Registration {
    pub client: Client,
    pub client_secret: Option<String>,
    /// For the RFC 7591 endpoint's registrations; web-page clients are managed on the pages.
    pub registration_access_token: Option<String>,
}

/// What authentication needs to know about a client.
struct KnownClient {
    client: Client,
    secret_digest: Option<Vec<u8>>,
}

/// Recently authenticated clients, so that a client asking for many tokens a second does not
/// cost a database read each time. Entries live for [`ClientCache::TTL`] (one second): a
/// change made elsewhere (the admin command, another replica) applies within that time; one
/// made through this service applies at once. Unknown ids are not cached.
#[derive(Default)]
struct ClientCache(std::sync::Mutex<std::collections::HashMap<String, (Arc<KnownClient>, std::time::Instant)>>);

impl ClientCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, client_id: &str) -> Option<Arc<KnownClient>> {
        let map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(client_id).filter(|(_, at)| at.elapsed() < Self::TTL).map(|(known, _)| known.clone())
    }

    fn forget(&self, client_id: &str) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(client_id);
    }

    fn put(&self, client_id: &str, known: Arc<KnownClient>) {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(client_id.to_owned(), (known, std::time::Instant::now()));
    }
}

/// How a client presents itself at the token endpoint.
pub enum Credential<'a> {
    /// The client secret, and how it was sent (which must be how the client registered).
    Secret(&'a str, AuthMethod),
    /// An RFC 7523 assertion signed with the client's key.
    Assertion(&'a str),
    /// Nothing: acceptable only for a public client.
    None,
}

/// Assertion ids are remembered until the assertion expires (replays fail), then purged.
static PURGES: &[nmos_auth_core::housekeeping::Purge] = &[nmos_auth_core::housekeeping::Purge {
    table: "clients_assertion_jtis",
    sql: "DELETE FROM clients_assertion_jtis WHERE (client_id, jti) IN \
          (SELECT client_id, jti FROM clients_assertion_jtis WHERE expires_at < $1 LIMIT $2)",
    keep_for: 0,
}];

pub struct ClientRegistryService {
    db: Db,
    store: Arc<dyn ClientStore>,
    cache: ClientCache,
    scopes: Scope,
    mode: RegistrationMode,
    plain_http: bool,
    assertions: assertion::AssertionVerifier,
    legacy: nmos_auth_core::config::LegacyGrants,
    /// Registrations, approvals and administrators' changes, with who made them.
    events: EventLog,
    /// How long events are kept (`None`: for ever).
    retention_secs: Option<i64>,
}

impl ClientRegistryService {
    pub async fn open(config: &Config) -> anyhow::Result<ClientRegistryService> {
        let db = Db::connect(&config.database_url("clients")).await?;
        db.migrate("clients", &store::MIGRATIONS).await?;
        list_existing_clients(store::open(db.clone()).as_ref()).await?;
        Ok(ClientRegistryService {
            events: nmos_auth_core::event_log!(db.clone(), "client-registry", "clients"),
            retention_secs: config.audit_retention_secs(),
            db: db.clone(),
            store: store::open(db),
            cache: ClientCache::default(),
            scopes: config.scopes()?,
            mode: config.registration,
            plain_http: !config.public_base()?.starts_with("https://"),
            assertions: assertion::AssertionVerifier::new(&config.issuer()?, config.jwks_ca_bundle.as_deref())?,
            legacy: config.legacy_grants(),
        })
    }

    /// RFC 7591 §3. Registration needs a valid initial access token or a signed-in web user,
    /// except that in `open` mode a client using only the authorization_code grant may register
    /// without either, and in `approval` mode anyone may, as a pending client that gets no
    /// tokens until an administrator approves it. client_credentials clients therefore always
    /// need a token, an administrator, or an approval (IS-10 §4.2).
    pub async fn register(
        &self,
        body: &Value,
        initial_access_token: Option<&str>,
        registered_by: Option<&WebUser>,
    ) -> Result<Registration, OAuthError> {
        if let Some(token) = initial_access_token {
            self.check_initial_access_token(token).await?;
        }
        let rules = metadata::Rules { scopes: &self.scopes, legacy: self.legacy, plain_http: self.plain_http };
        let mut metadata = metadata::parse(body, &rules)?;
        // An application registered on the web pages for people's sign-in (the code grant) keeps
        // them signed in with refresh tokens: it gets that grant too.
        if registered_by.is_some()
            && metadata.grant_types.contains(&GrantType::AuthorizationCode)
            && !metadata.grant_types.contains(&GrantType::RefreshToken)
        {
            metadata.grant_types.push(GrantType::RefreshToken);
        }
        let code_only =
            metadata.grant_types.iter().all(|g| matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken));
        let pending = match (initial_access_token, registered_by) {
            (Some(_), _) => false,
            (None, Some(user)) if code_only || user.admin => false,
            (None, Some(_)) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClientMetadata,
                    "only administrators may register client_credentials clients",
                ));
            }
            (None, None) if self.mode == RegistrationMode::Open && code_only => false,
            (None, None) if self.mode == RegistrationMode::Approval => true,
            (None, None) => {
                return Err(OAuthError::new(ErrorCode::InvalidToken, "registration needs an initial access token"));
            }
        };
        // Fetching a jwks_uri makes this server send requests where the client says: only for
        // registrations someone vouches for (a token, an administrator, or an approval to come).
        let vouched = initial_access_token.is_some() || registered_by.is_some_and(|u| u.admin) || pending;
        if metadata.jwks_uri.is_some() && !vouched {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                "jwks_uri needs an initial access token or an administrator; register the keys inline (jwks) instead",
            ));
        }
        let owner = registered_by.map(|u| u.username.clone()).unwrap_or_default();
        let registered_how = match (initial_access_token, registered_by) {
            (Some(_), _) => BY_TOKEN,
            (None, Some(_)) => ON_A_PAGE,
            (None, None) if pending => FOR_APPROVAL,
            (None, None) => OPENLY,
        };

        // 128 bits, as 32 hex digits (IS-10: at least 20 characters).
        let client_id = random_id::<16>();
        let secret = metadata.token_endpoint_auth_method.has_secret().then(random_token::<32>);
        // RFC 7592: a client registered through the endpoint may manage itself there.
        let registration_access_token = registered_by.is_none().then(random_token::<32>);
        let row = ClientRow {
            client_id: client_id.clone(),
            secret_digest: secret.as_deref().map(digest),
            metadata: serde_json::to_string(&metadata).map_err(OAuthError::internal)?,
            issued_at: nmos_auth_core::now_unix(),
            owner: owner.clone(),
            status: if pending { PENDING } else { APPROVED }.to_owned(),
            policy: None,
            registration_token_digest: registration_access_token.as_deref().map(digest),
            kind: metadata.kind().as_str().to_owned(),
            name: metadata.search_name(),
            registered_how: registered_how.to_owned(),
        };
        self.store.insert_client(&row).await?;
        let how = match registered_how {
            BY_TOKEN => "with an initial access token",
            FOR_APPROVAL => "waiting for approval",
            OPENLY => "openly (authorization code only)",
            _ => "on the web pages",
        };
        // Migration 0009 reads how clients registered before it from the end of this text.
        let detail = format!(
            "name \"{}\", {}, grants {}, scope \"{}\", registered {how}",
            metadata.client_name,
            metadata.kind().as_str(),
            metadata.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" "),
            metadata.scope
        );
        self.events
            .record(Event::new("client_registered", owner.clone()).client(client_id.clone()).detail(detail))
            .await;
        Ok(Registration {
            client: Client {
                client_id,
                issued_at: row.issued_at,
                metadata,
                owner,
                pending,
                disabled: false,
                policy: None,
                registered_how: row.registered_how,
            },
            client_secret: secret,
            registration_access_token,
        })
    }

    /// RFC 7592 §2: the client at the configuration endpoint, if `token` is its registration
    /// access token. An unknown client and a wrong token are the same `invalid_token`.
    async fn configured_client(&self, client_id: &str, token: &str) -> Result<ClientRow, OAuthError> {
        let row = self.store.get_client(client_id).await?;
        let stored = row.as_ref().and_then(|r| r.registration_token_digest.clone());
        // Same work whether or not the client exists, so timing does not reveal which ids exist.
        let matches = verify_digest(token, stored.as_deref().unwrap_or(&[0u8; 32])) && stored.is_some();
        match row {
            Some(row) if matches => Ok(row),
            _ => Err(unknown_configured()),
        }
    }

    /// Stores `metadata` for the client with a new secret when it authenticates with one:
    /// secrets are kept only as digests, so a configuration response (RFC 7592 §2.1 and §2.2
    /// allow it) carries a fresh secret and the previous one stops working at once. The new
    /// secret, if any; `None` when the client is gone.
    async fn store_with_new_secret(
        &self,
        client: &Client,
        metadata: Option<&ClientMetadata>,
    ) -> Result<Option<Option<String>>, OAuthError> {
        let method = metadata.unwrap_or(&client.metadata).token_endpoint_auth_method;
        let secret = method.has_secret().then(random_token::<32>);
        let digest = secret.as_deref().map(digest);
        // A read replaces the secret only, so it cannot undo an update made meanwhile.
        let updated = match metadata {
            Some(metadata) => {
                let json = serde_json::to_string(metadata).map_err(OAuthError::internal)?;
                let (kind, name) = (metadata.kind().as_str(), metadata.search_name());
                self.store.update_client(&client.client_id, &json, kind, &name, digest.as_deref()).await
            }
            None => self.store.set_secret(&client.client_id, digest.as_deref()).await,
        }?;
        if !updated {
            return Ok(None);
        }
        self.cache.forget(&client.client_id);
        self.assertions.forget(&client.client_id);
        Ok(Some(secret))
    }

    /// RFC 7592 §2.1: a client reads its registration (with a new secret, see
    /// [`Self::store_with_new_secret`]). This is how a restarted Node checks its stored client.
    pub async fn read_configuration(&self, client_id: &str, token: &str) -> Result<Registration, OAuthError> {
        let client = Client::from_row(self.configured_client(client_id, token).await?)?;
        let client_secret = self.store_with_new_secret(&client, None).await?.ok_or_else(unknown_configured)?;
        let detail = if client_secret.is_some() {
            "read its registration; a new secret was issued"
        } else {
            "read its registration"
        };
        self.events
            .record(Event::new("client_read", format!("client:{client_id}")).client(client_id).detail(detail))
            .await;
        Ok(Registration { client, client_secret, registration_access_token: None })
    }

    /// RFC 7592 §2.2: a client replaces its metadata. What its registration was vouched for
    /// (or an administrator approved) stays fixed: the grant types, the authentication method,
    /// the jwks_uri (which this server fetches), the redirect URIs; the scope may only narrow.
    /// For a client registered for an administrator's approval, its name, client_uri and
    /// logo_uri too.
    pub async fn update_configuration(
        &self,
        client_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Registration, OAuthError> {
        let row = self.configured_client(client_id, token).await?;
        let Some(object) = body.as_object() else {
            return Err(OAuthError::new(ErrorCode::InvalidClientMetadata, "the body must be a JSON object"));
        };
        if object.get("client_id").and_then(Value::as_str) != Some(client_id) {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "the body's client_id must be this client's"));
        }
        if let Some(sent) = object.get("client_secret") {
            let current = row.secret_digest.as_deref();
            if !sent.as_str().zip(current).is_some_and(|(sent, stored)| verify_digest(sent, stored)) {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "client_secret is not the current secret"));
            }
        }
        // Fields the server issues are not metadata (RFC 7592 §2.2: ignored if sent).
        let mut requested = object.clone();
        for issued in [
            "client_id",
            "client_secret",
            "client_id_issued_at",
            "client_secret_expires_at",
            "registration_access_token",
            "registration_client_uri",
        ] {
            requested.remove(issued);
        }
        let rules = metadata::Rules { scopes: &self.scopes, legacy: self.legacy, plain_http: self.plain_http };
        let metadata = metadata::parse(&Value::Object(requested), &rules)?;
        let client = Client::from_row(row)?;
        let old = &client.metadata;
        let fixed = |what: &str| {
            OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("{what} cannot change after registration; register a new client instead"),
            )
        };
        let (mut old_grants, mut new_grants) = (old.grant_types.clone(), metadata.grant_types.clone());
        old_grants.sort_by_key(|g| g.as_str());
        new_grants.sort_by_key(|g| g.as_str());
        if old_grants != new_grants {
            return Err(fixed("grant_types"));
        }
        if old.token_endpoint_auth_method != metadata.token_endpoint_auth_method {
            return Err(fixed("token_endpoint_auth_method"));
        }
        if let Some(wider) = metadata.scope.split_whitespace().find(|s| !old.scope.split_whitespace().any(|o| o == *s))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("scope {wider} was not registered; the scope cannot widen after registration"),
            ));
        }
        // Where the server fetches keys from, and where it sends people's browsers, were
        // vouched for (or approved by an administrator) as registered: never changed here.
        if metadata.jwks_uri != old.jwks_uri {
            return Err(fixed("jwks_uri"));
        }
        if metadata.redirect_uris != old.redirect_uris {
            return Err(fixed("redirect_uris"));
        }
        // An administrator approves (or approved) the client by what it said it was, and people
        // see that on the consent page. Fixed while it is pending too: a change between the
        // pending page's showing and the click would be approved unseen.
        if client.registered_how == FOR_APPROVAL {
            let approved = |what: &str| {
                OAuthError::new(
                    ErrorCode::InvalidClientMetadata,
                    format!(
                        "{what} is what an administrator approves and cannot change; register a new client instead"
                    ),
                )
            };
            if metadata.client_name != old.client_name {
                return Err(approved("client_name"));
            }
            if metadata.client_uri != old.client_uri {
                return Err(approved("client_uri"));
            }
            if metadata.logo_uri != old.logo_uri {
                return Err(approved("logo_uri"));
            }
        }
        let client_secret =
            self.store_with_new_secret(&client, Some(&metadata)).await?.ok_or_else(unknown_configured)?;
        let detail = format!("updated its registration (name {:?})", metadata.client_name);
        self.events
            .record(Event::new("client_updated", format!("client:{client_id}")).client(client_id).detail(detail))
            .await;
        Ok(Registration { client: Client { metadata, ..client }, client_secret, registration_access_token: None })
    }

    /// RFC 7592 §2.3: a client deregisters itself.
    pub async fn delete_configuration(&self, client_id: &str, token: &str) -> Result<(), OAuthError> {
        self.configured_client(client_id, token).await?;
        self.store.delete_client(client_id).await?;
        self.cache.forget(client_id);
        self.assertions.forget(client_id);
        self.events
            .record(
                Event::new("client_deleted", format!("client:{client_id}"))
                    .client(client_id)
                    .detail("deregistered itself"),
            )
            .await;
        Ok(())
    }

    async fn check_initial_access_token(&self, token: &str) -> Result<(), OAuthError> {
        let expiry = self.store.initial_access_token_expiry(&digest(token)).await?;
        match expiry {
            Some(None) => Ok(()),
            Some(Some(expires_at)) if expires_at > nmos_auth_core::now_unix() => Ok(()),
            Some(Some(_)) => Err(OAuthError::new(ErrorCode::InvalidToken, "the initial access token has expired")),
            None => Err(OAuthError::new(ErrorCode::InvalidToken, "unknown initial access token")),
        }
    }

    pub async fn get(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        let row = self.store.get_client(client_id).await?;
        row.map(Client::from_row).transpose()
    }

    /// Authenticates a client (RFC 6749 §2.3, RFC 7523). Every failure is `invalid_client`.
    pub async fn authenticate(&self, client_id: &str, credential: Credential<'_>) -> Result<Client, OAuthError> {
        if let Credential::Assertion(assertion) = credential {
            return self.authenticate_assertion(client_id, assertion).await;
        }
        let known = match self.cache.get(client_id) {
            Some(known) => Some(known),
            None => match self.store.get_client(client_id).await? {
                Some(row) => {
                    let known = Arc::new(KnownClient {
                        secret_digest: row.secret_digest.clone(),
                        client: Client::from_row(row)?,
                    });
                    self.cache.put(client_id, known.clone());
                    Some(known)
                }
                None => None,
            },
        };
        let ok = match (&known, &credential) {
            (Some(known), Credential::Secret(secret, method)) => {
                let matches = known.secret_digest.as_deref().is_some_and(|stored| verify_digest(secret, stored));
                matches && known.client.metadata.token_endpoint_auth_method == *method
            }
            // Only a public client may name itself without proof (not, say, a private_key_jwt one).
            (Some(known), Credential::None) => known.client.metadata.token_endpoint_auth_method == AuthMethod::None,
            (None, Credential::Secret(secret, _)) => {
                // Same work as for a known client, so timing does not reveal which ids exist.
                let _ = verify_digest(secret, &[0u8; 32]);
                false
            }
            (None, Credential::None) => false,
            (_, Credential::Assertion(_)) => false,
        };
        match known {
            // Said only to a client that proved who it is.
            Some(known) if ok && known.client.disabled => Err(disabled_client()),
            Some(known) if ok => Ok(known.client.clone()),
            _ => Err(OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")),
        }
    }

    /// The clients a web user registered, newest first: those of the name `owner` registered
    /// since `since` (the account's creation; 0 for all of them).
    pub async fn list(&self, owner: &str, since: i64) -> Result<Vec<Client>, OAuthError> {
        let rows = self.store.list_clients(owner).await?;
        rows.into_iter()
            .filter(|row| nmos_auth_core::done_by_account(since, row.issued_at))
            .map(Client::from_row)
            .collect()
    }

    /// Clients waiting for approval, oldest first.
    pub async fn pending(&self) -> Result<Vec<Client>, OAuthError> {
        let rows = self.store.list_pending().await?;
        rows.into_iter().map(Client::from_row).collect()
    }

    /// An administrator's search of every client: a page of them, newest first, and how many
    /// match in all.
    pub async fn search(&self, search: &ClientSearch) -> Result<(Vec<Client>, i64), OAuthError> {
        let (rows, total) = self.store.search(search).await?;
        Ok((rows.into_iter().map(Client::from_row).collect::<Result<_, _>>()?, total))
    }

    /// An administrator (`by`) disables an approved client or enables a disabled one. The client
    /// as it is now; `None` when there is no such client. A pending client is approved or
    /// rejected instead.
    pub async fn set_disabled(&self, client_id: &str, disabled: bool, by: &str) -> Result<Option<Client>, OAuthError> {
        let Some(client) = self.get(client_id).await? else { return Ok(None) };
        if client.pending {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "this client is waiting for approval: approve or reject it instead",
            ));
        }
        let (from, to) = if disabled { (APPROVED, DISABLED) } else { (DISABLED, APPROVED) };
        if self.store.set_status(client_id, from, to).await? {
            self.cache.forget(client_id);
            self.assertions.forget(client_id);
            let event = if disabled { "client_disabled" } else { "client_enabled" };
            self.events.record(Event::new(event, by).client(client_id)).await;
        }
        // Already so (twice the same click, or two administrators at once): the same outcome.
        self.get(client_id).await
    }

    /// An administrator (`by`) gives a client a new secret, returned once; the old one stops
    /// working at once. `None` when there is no such client.
    pub async fn rotate_secret(&self, client_id: &str, by: &str) -> Result<Option<Registration>, OAuthError> {
        let Some(client) = self.get(client_id).await? else { return Ok(None) };
        if !client.metadata.token_endpoint_auth_method.has_secret() {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "this client has no secret to rotate"));
        }
        let Some(secret) = self.store_with_new_secret(&client, None).await? else { return Ok(None) };
        self.events.record(Event::new("client_secret_rotated", by).client(client_id)).await;
        Ok(Some(Registration { client, client_secret: secret, registration_access_token: None }))
    }

    /// Clients by status, every status named (0 when there are none), as metrics.
    async fn readings(&self) -> Vec<Reading> {
        let counts = match self.store.count_by_status().await {
            Ok(counts) => counts,
            Err(e) => {
                nmos_auth_core::warn_limited!(error = %e, "metrics: the clients could not be counted");
                return Vec::new();
            }
        };
        [APPROVED, PENDING, DISABLED]
            .into_iter()
            .map(|status| {
                let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
                Reading::gauge("nmos_auth_clients", "Registered clients, by status", count as f64)
                    .label("status", status)
            })
            .collect()
    }

    /// Approves a pending client; false when there is no such pending client.
    pub async fn approve(&self, client_id: &str, approved_by: &str) -> Result<bool, OAuthError> {
        let approved = self.store.approve(client_id).await?;
        if approved {
            self.cache.forget(client_id);
            self.events.record(Event::new("client_approved", approved_by).client(client_id)).await;
        }
        Ok(approved)
    }

    /// Sets (or with `None` clears) a client's policy; it applies from the next token on.
    /// False when there is no such client.
    pub async fn set_policy(
        &self,
        client_id: &str,
        policy: Option<ClientPolicy>,
        by: &str,
    ) -> Result<bool, OAuthError> {
        let json = policy.as_ref().map(serde_json::to_string).transpose().map_err(OAuthError::internal)?;
        // An administrator's client is managed by administrators: its RFC 7592 registration
        // access token (perhaps kept on a device) would otherwise fetch a new secret, and so
        // administrators' tokens.
        let admin = policy.as_ref().is_some_and(|p| p.admin);
        let updated = self.store.set_policy(client_id, json.as_deref(), admin).await?;
        if updated {
            self.cache.forget(client_id);
            let detail = match &policy {
                Some(p) => serde_json::to_string(p).map_err(OAuthError::internal)?,
                None => "cleared: the server's defaults".to_owned(),
            };
            self.events.record(Event::new("client_policy_set", by).client(client_id).detail(detail)).await;
        }
        Ok(updated)
    }

    /// The scopes this server issues.
    pub fn scopes(&self) -> &Scope {
        &self.scopes
    }

    /// An administrator (`by`) rejects a pending client: it is deleted. False when there is no
    /// such pending client.
    pub async fn reject(&self, client_id: &str, by: &str) -> Result<bool, OAuthError> {
        let pending = self.get(client_id).await?.is_some_and(|c| c.pending);
        if !pending || !self.store.delete_client(client_id).await? {
            return Ok(false);
        }
        self.cache.forget(client_id);
        self.assertions.forget(client_id);
        self.events.record(Event::new("client_rejected", by).client(client_id).detail("rejected and deleted")).await;
        Ok(true)
    }

    /// Deregisters a client: its owner or an administrator may. False when there is no
    /// such client (or it is not theirs to delete).
    pub async fn delete(&self, client_id: &str, requested_by: &WebUser) -> Result<bool, OAuthError> {
        let Some(client) = self.get(client_id).await? else { return Ok(false) };
        if !requested_by.owns(&client) && !requested_by.admin {
            return Ok(false);
        }
        let deleted = self.store.delete_client(client_id).await?;
        self.cache.forget(client_id);
        self.assertions.forget(client_id);
        self.events.record(Event::new("client_deleted", &requested_by.username).client(client_id)).await;
        Ok(deleted)
    }

    async fn authenticate_assertion(&self, client_id: &str, assertion: &str) -> Result<Client, OAuthError> {
        let failed = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let claimed = assertion::claimed_client(assertion);
        let client_id = if client_id.is_empty() { claimed.as_deref().ok_or_else(failed)? } else { client_id };
        // As for secrets: whoever has not proved to be the client learns nothing of it (its
        // method, whether it is disabled) but that authentication failed.
        let client = self.get(client_id).await?.ok_or_else(failed)?;
        if client.metadata.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(failed());
        }
        if client.pending {
            // Nothing is fetched for a client nobody has approved yet, so this is said unproved.
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is waiting for an administrator's approval",
            ));
        }
        self.assertions.verify(client_id, &client.metadata, assertion, self.store.as_ref()).await?;
        if client.disabled {
            return Err(disabled_client());
        }
        Ok(client)
    }

    /// Creates an initial access token for RFC 7591 registration; `lifetime_secs` 0 means it
    /// never expires. Only its digest is stored.
    pub async fn create_initial_access_token(
        &self,
        lifetime_secs: i64,
        description: &str,
        by: &str,
    ) -> anyhow::Result<(String, Option<i64>)> {
        anyhow::ensure!(lifetime_secs >= 0, "the lifetime must not be negative");
        let token = random_token::<32>();
        let now = nmos_auth_core::now_unix();
        let expires_at = (lifetime_secs > 0).then_some(now + lifetime_secs);
        self.store.insert_initial_access_token(&digest(&token), description, now, expires_at).await?;
        let detail = match expires_at {
            Some(at) => format!("{description}; expires {}", nmos_auth_core::clock::utc(at)),
            None => format!("{description}; never expires"),
        };
        self.events.record(Event::new("initial_access_token_created", by).detail(detail)).await;
        Ok((token, expires_at))
    }

    /// Purges expired assertion ids, and events past the audit retention, on a schedule until
    /// the process ends.
    pub fn run_housekeeping(&self, interval: std::time::Duration, batch: u32) {
        let purges = PURGES.iter().copied().chain(self.events.purge(self.retention_secs)).collect();
        nmos_auth_core::housekeeping::run("client-registry", self.db.clone(), purges, interval, batch);
    }

    pub fn into_server(self: Arc<Self>) -> ClientRegistryServer<ClientRegistryService> {
        ClientRegistryServer::from_arc(self)
    }
}

impl Collect for ClientRegistryService {
    fn collect(&self) -> Readings<'_> {
        Box::pin(self.readings())
    }
}
