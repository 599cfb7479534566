//! The token issuer: runs the OAuth 2.0 grants, has the keys service sign the tokens, and
//! keeps the IS-10 audit log.
#![forbid(unsafe_code)]

mod audit;
mod claims;
mod domain;
mod grants;
mod grpc;
mod introspection;
mod request;
mod revocation;
pub mod store;

/// The request parameters' reading, for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub use request::Params;

use std::sync::Arc;

use nmos_auth_core::db::Db;
use nmos_auth_core::events::{Event, EventLog};
use nmos_auth_core::grpc::GrpcChannel;
use nmos_auth_core::housekeeping::Purge;
use nmos_auth_core::{ClientId, Config, ErrorCode, GrantType, OAuthError, Scope};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::identity_client::IdentityClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_server::TokenIssuerServer;

use crate::audit::AuditLog;
use crate::claims::TokenPolicy;
use crate::domain::{Client, User};
use crate::request::{ClientAuth, ClientRequest, Tokens};
use crate::store::{AuditEntry, IssuedFrom, SummaryFilter, SummaryRow, TokenStore};

/// A signed access token.
pub(crate) struct Issued {
    pub(crate) jws: String,
    pub(crate) scope: String,
    jti: String,
    expires_at: i64,
}

/// The services the token issuer calls.
#[derive(Clone)]
pub struct Peers {
    pub clients: ClientRegistryClient<GrpcChannel>,
    pub keys: KeysClient<GrpcChannel>,
    pub identity: IdentityClient<GrpcChannel>,
}

/// What expires in the token issuer's tables, and how long past expiry it still matters.
static PURGES: &[Purge] = &[
    // Used codes are kept until they expire, so that a replay is recognised; then they go.
    Purge {
        table: "tokens_authorization_codes",
        sql: "DELETE FROM tokens_authorization_codes WHERE digest IN \
              (SELECT digest FROM tokens_authorization_codes WHERE expires_at < $1 LIMIT $2)",
        keep_for: 60,
    },
    // A family outlives its expiry by the longest access token it may have issued, for the
    // revocation of those tokens; its refresh tokens and token ids go with it (cascade).
    Purge {
        table: "tokens_refresh_families",
        sql: "DELETE FROM tokens_refresh_families WHERE id IN \
              (SELECT id FROM tokens_refresh_families WHERE expires_at < $1 LIMIT $2)",
        keep_for: 3600,
    },
    Purge {
        table: "tokens_family_access_tokens",
        sql: "DELETE FROM tokens_family_access_tokens WHERE jti IN \
              (SELECT jti FROM tokens_family_access_tokens WHERE expires_at < $1 LIMIT $2)",
        keep_for: 0,
    },
    Purge {
        table: "tokens_revoked_access_tokens",
        sql: "DELETE FROM tokens_revoked_access_tokens WHERE jti IN \
              (SELECT jti FROM tokens_revoked_access_tokens WHERE expires_at < $1 LIMIT $2)",
        keep_for: 0,
    },
];

pub struct TokenIssuerService {
    db: Db,
    peers: Peers,
    store: Arc<dyn TokenStore>,
    audit: AuditLog,
    /// Administrators' actions on clients' tokens, with who made them.
    events: EventLog,
    policy: TokenPolicy,
    client_credentials_scopes: Scope,
    refresh_token_lifetime_secs: i64,
    legacy: nmos_auth_core::config::LegacyGrants,
    /// How long audit rows are kept (seconds); `None` keeps them for ever.
    audit_retention_secs: Option<i64>,
    token_log: nmos_auth_core::config::TokenLog,
}

impl TokenIssuerService {
    pub async fn open(config: &Config, peers: Peers) -> anyhow::Result<TokenIssuerService> {
        let db = Db::connect(&config.database_url("tokens")).await?;
        db.migrate("tokens", &store::MIGRATIONS).await?;
        let store = store::open(db.clone());
        // Every grant type's count from 0, so that a rate or ratio over it is 0 rather than no
        // data before the first token (an alert on refusals must fire when nothing is issued).
        for grant_type in GrantType::ALL {
            nmos_auth_core::metrics::TOKENS_ISSUED.add(&[grant_type.as_str()], 0);
        }
        Ok(TokenIssuerService {
            events: nmos_auth_core::event_log!(db.clone(), "token-issuer", "tokens"),
            db,
            peers,
            audit: AuditLog::start(store.clone()),
            store,
            policy: TokenPolicy {
                issuer: config.issuer()?,
                audience: config.audience.clone(),
                lifetime_secs: config.access_token_lifetime as i64,
                admin_audience: config.public_host()?,
            },
            client_credentials_scopes: config.client_credentials_scopes()?,
            refresh_token_lifetime_secs: config.refresh_token_lifetime as i64,
            legacy: config.legacy_grants(),
            token_log: config.token_log_level,
            audit_retention_secs: config.audit_retention_secs(),
        })
    }

    /// Authenticates the client of a token or revocation request through the registry.
    async fn authenticate(&self, request: &ClientRequest) -> Result<Client, OAuthError> {
        let auth = ClientAuth::from_request(request)?;
        let client = self.peers.clients.clone().authenticate_client(auth.into_proto()).await;
        let client = Client::from_proto(client.map_err(|s| OAuthError::from_status(&s))?.into_inner())?;
        if client.pending {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is waiting for an administrator's approval; try again later",
            ));
        }
        Ok(client)
    }

    /// A registered client, or `None` if the registry has no such client.
    pub(crate) async fn client(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        let get = |mut clients: ClientRegistryClient<GrpcChannel>| async move {
            clients.get_client(pb::GetClientRequest { client_id: client_id.to_owned() }).await
        };
        match nmos_auth_core::grpc::idempotent(&self.peers.clients, get).await {
            Ok(client) => Ok(Some(Client::from_proto(client.into_inner())?)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(OAuthError::from_status(&status)),
        }
    }

    /// The signed-in user, if the account still exists and is enabled (`invalid_grant`
    /// otherwise: what the user approved no longer holds).
    pub(crate) async fn user(&self, username: &str) -> Result<User, OAuthError> {
        let get = |mut identity: IdentityClient<GrpcChannel>| async move {
            identity.get_user(pb::GetUserRequest { username: username.to_owned() }).await
        };
        let user = nmos_auth_core::grpc::idempotent(&self.peers.identity, get)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => OAuthError::new(ErrorCode::InvalidGrant, "the user no longer exists"),
                _ => OAuthError::from_status(&s),
            })?
            .into_inner();
        if user.disabled {
            return Err(OAuthError::new(ErrorCode::InvalidGrant, "the user's account is disabled"));
        }
        Ok(User::from_proto(user))
    }

    /// The user who granted something (a code, a refresh-token family, an access token) at
    /// `granted_at` (Unix seconds), as [`Self::user`] finds them, and only if their account is
    /// the one that granted it: an account created later under the same name, once the first
    /// was deleted, inherits nothing of it (`invalid_grant`).
    pub(crate) async fn granting_user(&self, username: &str, granted_at: i64) -> Result<User, OAuthError> {
        let user = self.user(username).await?;
        if !nmos_auth_core::done_by_account(user.created_at, granted_at) {
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the account that granted this was deleted; the user of that name now is another account",
            ));
        }
        Ok(user)
    }

    /// RFC 6749 §4 and §5: checks the request, authenticates the client, runs the grant.
    /// `client_address` is the requester's IP address, for throttling password guesses.
    pub async fn token(&self, request: ClientRequest, client_address: &str) -> Result<Tokens, OAuthError> {
        let result = self.grant(&request, client_address).await;
        if let Err(e) = &result {
            let grant_type = match request.params.get("grant_type") {
                Some(named) => GrantType::parse(named).map_or("unsupported", GrantType::as_str),
                None => "none",
            };
            nmos_auth_core::telemetry::token_refused(grant_type, e.code.as_str());
        }
        result
    }

    async fn grant(&self, request: &ClientRequest, client_address: &str) -> Result<Tokens, OAuthError> {
        let params = &request.params;
        let named = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "grant_type is required"))?;
        let unsupported =
            || OAuthError::new(ErrorCode::UnsupportedGrantType, format!("the grant type {named:?} is not supported"));
        let grant_type = GrantType::parse(named).ok_or_else(unsupported)?;
        let client = self.authenticate(request).await?;

        let grant = match grant_type {
            GrantType::ClientCredentials => {
                grants::client_credentials::authorize(&client, params, &self.client_credentials_scopes)?
            }
            GrantType::AuthorizationCode => grants::authorization_code::exchange(self, &client, params).await?,
            GrantType::RefreshToken => grants::refresh_token::refresh(self, &client, params).await?,
            GrantType::Password if self.legacy.password => {
                grants::password::authorize(self, &client, params, client_address).await?
            }
            // The implicit grant has no token request; the password grant only when switched on.
            GrantType::Password | GrantType::Implicit => return Err(unsupported()),
        };

        let used_up = grant.used_up();
        let issued = async {
            let issued = self.issue(grant_type, &client.id, grant.claims).await?;
            let family = grant.refresh.as_ref().map(|(_, family)| family.as_str());
            if grant.code_digest.is_some() || family.is_some() {
                let from = IssuedFrom {
                    jti: &issued.jti,
                    expires_at: issued.expires_at,
                    code_digest: grant.code_digest.as_deref(),
                    family_id: family,
                };
                self.store.record_issued(&from).await?;
            }
            Ok(issued)
        };
        let issued = match issued.await {
            Ok(issued) => issued,
            Err(e) => {
                // Signed, perhaps, but never handed out: what the grant used up is given back.
                if let Some(used) = used_up {
                    grants::give_back(self.store.as_ref(), used, &e).await;
                }
                return Err(e);
            }
        };
        Ok(Tokens {
            access_token: issued.jws,
            expires_in: self.policy.lifetime_secs,
            scope: issued.scope,
            refresh_token: grant.refresh.map(|(token, _)| token),
        })
    }

    /// Signs an access token and records it in the audit log.
    pub(crate) async fn issue(
        &self,
        grant_type: GrantType,
        client_id: &ClientId,
        claims: claims::Claims,
    ) -> Result<Issued, OAuthError> {
        let grant_type = grant_type.as_str();
        let now = nmos_auth_core::now_unix();
        let scope = claims.scope_string();
        let subject = claims.subject.clone();
        let (claims_json, jti) = self.policy.claims_json(claims, now);
        // Signing changes nothing in the keys service, so it may be retried.
        let sign = |mut keys: KeysClient<GrpcChannel>| {
            let claims_json = claims_json.clone();
            async move { keys.sign(pb::SignRequest { claims_json }).await }
        };
        let signed = nmos_auth_core::grpc::idempotent(&self.peers.keys, sign)
            .await
            .map_err(|s| OAuthError::from_status(&s))?
            .into_inner();
        self.audit
            .record(AuditEntry {
                at: now,
                event: "token_issued".into(),
                grant_type: grant_type.to_owned(),
                client_id: client_id.to_string(),
                subject: subject.clone(),
                scope: scope.clone(),
                jti: jti.clone(),
            })
            .await
            .map_err(OAuthError::internal)?;
        macro_rules! issued {
            ($level:ident) => {
                tracing::$level!(target: "audit", event = "token_issued", grant_type, client_id = %client_id, subject, scope, "token issued")
            };
        }
        match self.token_log {
            nmos_auth_core::config::TokenLog::Info => issued!(info),
            nmos_auth_core::config::TokenLog::Debug => issued!(debug),
        }
        nmos_auth_core::telemetry::token_issued(grant_type);
        Ok(Issued { jws: signed.jws, scope, jti, expires_at: now + self.policy.lifetime_secs })
    }

    /// What housekeeping deletes: the expired rows, and audit rows older than the retention.
    fn purges(&self) -> Vec<Purge> {
        let audit = self.audit_retention_secs.map(|keep_for| Purge {
            table: "tokens_audit",
            // Oldest first, through the index on `at`, so each batch finds its rows at once.
            sql: "DELETE FROM tokens_audit WHERE id IN \
                  (SELECT id FROM tokens_audit WHERE at < $1 ORDER BY at LIMIT $2)",
            keep_for,
        });
        let events = self.events.purge(self.audit_retention_secs);
        PURGES.iter().copied().chain(audit).chain(events).collect()
    }

    /// Purges what has expired, in batches; returns rows removed per table.
    pub async fn housekeeping(&self, batch: u32) -> anyhow::Result<Vec<(&'static str, u64)>> {
        let now = nmos_auth_core::now_unix();
        let mut removed = Vec::new();
        for p in self.purges() {
            removed.push((p.table, nmos_auth_core::housekeeping::purge(&self.db, &p, now, batch).await?));
        }
        Ok(removed)
    }

    /// Purges on a schedule until the process ends.
    pub fn run_housekeeping(&self, interval: std::time::Duration, batch: u32) {
        nmos_auth_core::housekeeping::run("token-issuer", self.db.clone(), self.purges(), interval, batch);
    }

    /// When each client last got a token, and how many since `since`.
    pub async fn client_activity(
        &self,
        client_ids: &[String],
        since: i64,
    ) -> Result<Vec<(Option<i64>, i64)>, OAuthError> {
        let mut activity = Vec::with_capacity(client_ids.len());
        for client_id in client_ids {
            activity.push(self.store.client_activity(client_id, since).await?);
        }
        Ok(activity)
    }

    /// The tokens issued in a window, summarised per client, subject and grant; and how many.
    pub async fn token_summary(&self, filter: &SummaryFilter) -> Result<(Vec<SummaryRow>, i64), OAuthError> {
        Ok(self.store.token_summary(filter).await?)
    }

    /// An administrator (`by`) ends every live refresh-token family of a client, with the
    /// access tokens issued within them (for introspection); how many families.
    pub async fn revoke_client(&self, client_id: &str, by: &str) -> Result<u64, OAuthError> {
        let families = self.store.revoke_client_families(client_id, nmos_auth_core::now_unix()).await?;
        let detail = format!("{families} refresh-token families revoked");
        self.events.record(Event::new("client_tokens_revoked", by).client(client_id).detail(detail)).await;
        Ok(families)
    }

    /// This service's events, for an administrator's `ListEvents`.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub async fn recent_audit(&self, limit: i64) -> nmos_auth_core::db::StoreResult<Vec<AuditEntry>> {
        self.store.recent_audit(limit).await
    }

    pub fn into_server(self: Arc<Self>) -> TokenIssuerServer<TokenIssuerService> {
        TokenIssuerServer::from_arc(self)
    }
}
