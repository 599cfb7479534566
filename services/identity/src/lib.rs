//! The identity service: users with argon2id password hashes and per-API access rights.
#![forbid(unsafe_code)]

mod error;
mod grpc;
mod lockout;
pub mod setup;
pub mod store;
mod throttle;
mod users;

pub use error::IdentityError;

use std::sync::Arc;

use nmos_auth_core::db::Db;
use nmos_auth_core::events::{Event, EventLog};
use nmos_auth_core::operator::Operator;
use nmos_auth_core::{Access, AccessRights, Config, NmosApi};
use nmos_auth_proto::identity_server::IdentityServer;

use crate::store::{UserRecord, UserStore};

pub struct IdentityService {
    db: Db,
    store: Arc<dyn UserStore>,
    /// Changes to users with who made them, sign-ins, their failures and lock-outs.
    events: EventLog,
    /// How long events are kept (`None`: for ever).
    retention_secs: Option<i64>,
    open_signup: bool,
    /// Failed passwords, per username at an address, per username and per address.
    sign_in_guard: lockout::SignInGuard,
}

/// An administrator cannot lock themselves out. (Operators' names contain a colon, which no
/// user name may, so this never stops an operator.)
fn not_yourself(username: &str, by: &str, what: &'static str) -> Result<(), IdentityError> {
    if username == by {
        return Err(IdentityError::NotYourself(what));
    }
    Ok(())
}

fn not_found(username: &str) -> IdentityError {
    IdentityError::NoSuchUser(username.to_owned())
}

impl IdentityService {
    pub async fn open(config: &Config) -> anyhow::Result<IdentityService> {
        let db = Db::connect(&config.database_url("identity")).await?;
        db.migrate("identity", &store::MIGRATIONS).await?;
        Ok(IdentityService {
            events: nmos_auth_core::event_log!(db.clone(), "identity", "identity"),
            retention_secs: config.audit_retention_secs(),
            db: db.clone(),
            store: store::open(db),
            open_signup: config.open_signup,
            sign_in_guard: lockout::SignInGuard::default(),
        })
    }

    /// A checked new user record, password hashed (argon2id, on the blocking pool).
    async fn new_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
        rights: &[(NmosApi, Access)],
    ) -> Result<UserRecord, IdentityError> {
        users::validate_username(username)?;
        users::validate_password(password)?;
        let password = password.to_owned();
        let password_hash =
            users::hashing(move || users::hash_password(&password)).await?.map_err(IdentityError::internal)?;
        let mut access = AccessRights::default();
        for (api, level) in rights {
            access.set(*api, *level);
        }
        Ok(UserRecord {
            username: username.to_owned(),
            password_hash,
            admin,
            disabled: false,
            created_at: nmos_auth_core::now_unix(),
            rights: access,
        })
    }

    /// Who may administer users: an operator (`operator`, named as such), or `requested_by`, a
    /// user the gateway names as signed in, if this store says they are an administrator and
    /// enabled. The acting name, for the changes and their audit events.
    pub async fn administrator(
        &self,
        operator: Option<&Operator>,
        requested_by: &str,
    ) -> Result<String, IdentityError> {
        if let Some(operator) = operator {
            return Ok(operator.name());
        }
        if requested_by.is_empty() {
            return Err(IdentityError::NotAdministrator(
                "an administrative call must name who asks for it (requested_by)",
            ));
        }
        match self.store.get(requested_by).await? {
            Some(user) if user.admin && !user.disabled => Ok(user.username),
            _ => Err(IdentityError::NotAdministrator("Only administrators can do this.")),
        }
    }

    /// `by` (an administrator, or an operator) creates a user.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
        rights: &[(NmosApi, Access)],
        by: &str,
    ) -> Result<UserRecord, IdentityError> {
        let user = self.new_user(username, password, admin, rights).await?;
        if !self.store.create(&user).await? {
            return Err(IdentityError::UsernameTaken(username.to_owned()));
        }
        let detail = if admin { "an administrator" } else { "" };
        self.events.record(Event::new("user_created", by).user(username).detail(detail)).await;
        Ok(user)
    }

    pub async fn get_user(&self, username: &str) -> Result<UserRecord, IdentityError> {
        self.store.get(username).await?.ok_or_else(|| not_found(username))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, IdentityError> {
        Ok(self.store.list().await?)
    }

    /// `by` makes a user an administrator, or no longer one (never themselves: an
    /// administrator cannot lock themselves out).
    pub async fn set_admin(&self, username: &str, admin: bool, by: &str) -> Result<UserRecord, IdentityError> {
        if !admin {
            not_yourself(username, by, "take administration away from")?;
        }
        if !self.store.set_admin(username, admin).await? {
            return Err(not_found(username));
        }
        let detail = if admin { "now an administrator" } else { "no longer an administrator" };
        self.events.record(Event::new("user_admin_set", by).user(username).detail(detail)).await;
        self.get_user(username).await
    }

    /// `by` sets some of a user's rights.
    pub async fn set_rights(
        &self,
        username: &str,
        rights: &[(NmosApi, Access)],
        by: &str,
    ) -> Result<UserRecord, IdentityError> {
        if !self.store.set_rights(username, rights).await? {
            return Err(not_found(username));
        }
        let user = self.get_user(username).await?;
        let detail = NmosApi::ALL
            .iter()
            .map(|api| format!("{api} {}", user.rights.get(*api).as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        self.events.record(Event::new("user_rights_set", by).user(username).detail(detail)).await;
        Ok(user)
    }

    /// `by` disables or enables a user (never disables themselves).
    pub async fn set_disabled(&self, username: &str, disabled: bool, by: &str) -> Result<UserRecord, IdentityError> {
        if disabled {
            not_yourself(username, by, "disable")?;
        }
        if !self.store.set_disabled(username, disabled).await? {
            return Err(not_found(username));
        }
        if disabled {
            self.store.end_sessions(username).await?;
        }
        let event = if disabled { "user_disabled" } else { "user_enabled" };
        self.events.record(Event::new(event, by).user(username)).await;
        self.get_user(username).await
    }

    /// A new session for a user who just proved who they are (signed in or up): its id, which
    /// only the browser keeps (here, its digest).
    pub async fn start_session(&self, username: &str) -> Result<String, IdentityError> {
        let id = nmos_auth_core::secret::random_token::<32>();
        let now = nmos_auth_core::now_unix();
        let expires_at = now + nmos_auth_core::SESSION_LIFETIME_SECS;
        self.store.start_session(&nmos_auth_core::secret::digest_hex(&id), username, now, expires_at).await?;
        Ok(id)
    }

    /// The user of a current session: ended (signed out, the password changed, the user
    /// disabled, deleted or signed out everywhere) or expired, it is `SessionEnded`.
    pub async fn check_session(&self, id: &str) -> Result<UserRecord, IdentityError> {
        let now = nmos_auth_core::now_unix();
        let Some(username) = self.store.session_user(&nmos_auth_core::secret::digest_hex(id), now).await? else {
            return Err(IdentityError::SessionEnded);
        };
        match self.store.get(&username).await? {
            Some(user) if !user.disabled => Ok(user),
            _ => Err(IdentityError::SessionEnded),
        }
    }

    /// Signing out: the session ends here, whatever copy of the cookie is left.
    pub async fn end_session(&self, id: &str) -> Result<(), IdentityError> {
        self.store.end_session(&nmos_auth_core::secret::digest_hex(id)).await?;
        Ok(())
    }

    /// `by` signs a user out everywhere: every session of theirs ends.
    pub async fn end_sessions(&self, username: &str, by: &str) -> Result<u64, IdentityError> {
        let ended = self.store.end_sessions(username).await?;
        let detail = format!("{ended} sessions ended");
        self.events.record(Event::new("user_signed_out_everywhere", by).user(username).detail(detail)).await;
        Ok(ended)
    }

    /// Sets a user's password: `by` is the user themselves (who must give the current one)
    /// or an administrator or operator resetting it. Every session of the user ends.
    pub async fn set_password(
        &self,
        username: &str,
        new_password: &str,
        current_password: Option<&str>,
        by: &str,
    ) -> Result<(), IdentityError> {
        users::validate_password(new_password)?;
        if let Some(current) = current_password {
            // Checked (and throttled) as a sign-in is.
            self.verify_password(username, current, "").await?;
        }
        let new_password = new_password.to_owned();
        let hash =
            users::hashing(move || users::hash_password(&new_password)).await?.map_err(IdentityError::internal)?;
        if !self.store.set_password(username, &hash).await? {
            return Err(not_found(username));
        }
        let detail = "password changed; the user's sessions ended";
        self.events.record(Event::new("user_password_set", by).user(username).detail(detail)).await;
        Ok(())
    }

    /// `by` deletes a user (never themselves).
    pub async fn delete_user(&self, username: &str, by: &str) -> Result<(), IdentityError> {
        not_yourself(username, by, "delete")?;
        if !self.store.delete(username).await? {
            return Err(not_found(username));
        }
        self.events.record(Event::new("user_deleted", by).user(username)).await;
        Ok(())
    }

    /// On a server with no users yet, a new one-time setup code, which lets the first account
    /// signed up with it become the administrator (as Jenkins and Grafana ask whoever installed
    /// them, not whoever reaches the page first). Each code is good for 24 hours
    /// ([`setup::LIFETIME_SECS`]) or until the administrator exists, so that each replica may
    /// print its own. `None` once there are users.
    pub async fn first_administrator_setup(&self) -> Result<Option<String>, IdentityError> {
        self.first_administrator_setup_at(nmos_auth_core::now_unix()).await
    }

    /// As [`Self::first_administrator_setup`], the code made as if at `now` (unix seconds): for
    /// tests of its expiry, on a compressed clock.
    pub async fn first_administrator_setup_at(&self, now: i64) -> Result<Option<String>, IdentityError> {
        if self.store.count().await? > 0 {
            return Ok(None);
        }
        let code = setup::new_code();
        let expired_before = nmos_auth_core::now_unix() - setup::LIFETIME_SECS;
        self.store.add_setup_code(&setup::digest(&code), now, expired_before).await?;
        Ok(Some(code))
    }

    /// Self-service sign-up. On a new server the first account, signed up with a setup code
    /// ([`Self::first_administrator_setup`]), is an administrator with write access to every
    /// API; later accounts (only with open sign-up) start with no rights.
    pub async fn sign_up(&self, username: &str, password: &str, setup_code: &str) -> Result<UserRecord, IdentityError> {
        // Refused before the password is hashed (19 MiB and tens of milliseconds), which anyone
        // could otherwise make this server do for nothing.
        if !self.open_signup && self.store.count().await? > 0 {
            return Err(IdentityError::SignUpClosed);
        }
        // The first account, atomically: two sign-ups on a new server cannot both get it.
        let all_write: Vec<(NmosApi, Access)> = NmosApi::ALL.into_iter().map(|api| (api, Access::Write)).collect();
        let first = self.new_user(username, password, true, &all_write).await?;
        let made_after = nmos_auth_core::now_unix() - setup::LIFETIME_SECS;
        if self.store.create_first(&first, &setup::digest(setup_code), made_after).await? {
            let detail = "the first user (an administrator), signed up with the setup code";
            self.events.record(Event::new("user_created", username).user(username).detail(detail)).await;
            return Ok(first);
        }
        if self.store.count().await? == 0 {
            let detail = "a sign-up on a server without users had no valid setup code (or an expired one)";
            self.events.record(Event::new("setup_code_refused", "").user(username).detail(detail).warn()).await;
            return Err(IdentityError::SetupCodeNeeded);
        }
        if !self.open_signup {
            return Err(IdentityError::SignUpClosed);
        }
        // Later accounts start with no rights and no administration.
        let user = UserRecord { admin: false, rights: AccessRights::default(), ..first };
        if !self.store.create(&user).await? {
            return Err(IdentityError::UsernameTaken(username.to_owned()));
        }
        self.events.record(Event::new("user_created", username).user(username).detail("signed up")).await;
        Ok(user)
    }

    /// The user, if the password is right and the account is enabled. Every failure is the
    /// same `WrongPassword`, so a caller cannot learn which names exist; repeated failures for a
    /// username or from an address are locked out (`LockedOut`).
    pub async fn verify_password(
        &self,
        username: &str,
        password: &str,
        client_address: &str,
    ) -> Result<UserRecord, IdentityError> {
        // A name no account can have is refused before it is counted or hashed: the throttles'
        // keys stay small. That such a name has no account is no secret.
        if users::validate_username(username).is_err() {
            return Err(IdentityError::WrongPassword);
        }
        if let Err((limit, wait)) = self.sign_in_guard.check(username, client_address) {
            nmos_auth_core::telemetry::sign_in_refused(limit.as_str());
            return Err(IdentityError::LockedOut { minutes: wait.as_secs().div_ceil(60).max(1) });
        }
        let user = self.store.get(username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let ok = users::hashing(move || users::verify_password(&password, stored.as_deref())).await?;
        match user {
            Some(user) if ok && !user.disabled => {
                self.sign_in_guard.success(username, client_address);
                self.events
                    .record(Event::new("password_accepted", username).user(username).address(client_address))
                    .await;
                Ok(user)
            }
            known => {
                // A name that is no user's is not kept: people type passwords into it.
                let (named, why) = match known {
                    Some(_) => (username, "wrong password, or the account is disabled"),
                    None => ("", "no such user"),
                };
                for limit in self.sign_in_guard.failure(username, client_address) {
                    nmos_auth_core::telemetry::sign_in_locked(limit.as_str());
                    let detail =
                        format!("limit={}: too many wrong passwords, sign-ins are refused for a while", limit.as_str());
                    let event = Event::new("sign_in_locked", "").user(named).address(client_address).detail(detail);
                    self.events.record(event.warn()).await;
                }
                let event = Event::new("password_rejected", "").user(named).address(client_address);
                self.events.record(event.detail(why)).await;
                Err(IdentityError::WrongPassword)
            }
        }
    }

    /// Purges events past the audit retention on a schedule until the process ends.
    pub fn run_housekeeping(&self, interval: std::time::Duration, batch: u32) {
        let purges = self.events.purge(self.retention_secs).into_iter().collect();
        nmos_auth_core::housekeeping::run("identity", self.db.clone(), purges, interval, batch);
    }

    /// This service's events, for an administrator's `ListEvents`.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn into_server(self: Arc<Self>) -> IdentityServer<IdentityService> {
        IdentityServer::from_arc(self)
    }
}

/// The lock-outs in force in this replica (they are kept in its memory).
impl nmos_auth_core::metrics::Collect for IdentityService {
    fn collect(&self) -> nmos_auth_core::metrics::Readings<'_> {
        let readings = self
            .sign_in_guard
            .locked_now()
            .into_iter()
            .map(|(limit, n)| {
                nmos_auth_core::metrics::Reading::gauge(
                    "nmos_auth_sign_in_lockouts_active",
                    "Sign-in lock-outs in force now in this identity replica, by limit",
                    n as f64,
                )
                .label("limit", limit.as_str())
            })
            .collect();
        Box::pin(std::future::ready(readings))
    }
}
