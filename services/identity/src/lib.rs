//! The identity service: users with argon2id password hashes and per-API access rights.
#![forbid(unsafe_code)]

mod grpc;
pub mod store;
mod throttle;
mod users;

use std::sync::Arc;

use nmos_auth_core::OAuthError;
use nmos_auth_core::db::Db;
use nmos_auth_core::db::StoreError;
use nmos_auth_core::operator::Operator;
use nmos_auth_core::{Access, AccessRights, Config, NmosApi};
use nmos_auth_proto::identity_server::IdentityServer;
use tonic::Status;

use crate::store::{UserRecord, UserStore};

pub struct IdentityService {
    store: Arc<dyn UserStore>,
    open_signup: bool,
    /// Failed passwords per username, and per client address (which many people may share).
    user_throttle: throttle::Throttle,
    address_throttle: throttle::Throttle,
}

/// A store failure as a status, mapped as every service maps it: an outage is
/// `temporarily_unavailable` (callers answer 503 and clients retry), anything else a logged
/// internal error.
fn store_failed(e: StoreError) -> Status {
    OAuthError::from(e).into()
}

/// A failure of the password hashing task (it panicked, or argon2 refused its parameters).
fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "identity failure");
    Status::internal("identity failure")
}

/// An administrator cannot lock themselves out. (Operators' names contain a colon, which no
/// user name may, so this never stops an operator.)
fn not_yourself(username: &str, by: &str, what: &str) -> Result<(), Status> {
    if username == by {
        return Err(Status::failed_precondition(format!("You cannot {what} your own account.")));
    }
    Ok(())
}

fn not_found(username: &str) -> Status {
    Status::not_found(format!("no user {username:?}"))
}

impl IdentityService {
    pub async fn open(config: &Config) -> anyhow::Result<IdentityService> {
        let db = Db::connect(&config.database_url("identity")).await?;
        db.migrate("identity", &store::MIGRATIONS).await?;
        Ok(IdentityService {
            store: store::open(db),
            open_signup: config.open_signup,
            user_throttle: throttle::Throttle::new(5),
            address_throttle: throttle::Throttle::new(20),
        })
    }

    /// A checked new user record, password hashed (argon2id, on the blocking pool).
    async fn new_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
        rights: &[(NmosApi, Access)],
    ) -> Result<UserRecord, Status> {
        users::validate_username(username)?;
        users::validate_password(password)?;
        let password = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || users::hash_password(&password))
            .await
            .map_err(internal)?
            .map_err(internal)?;
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
    pub async fn administrator(&self, operator: Option<&Operator>, requested_by: &str) -> Result<String, Status> {
        if let Some(operator) = operator {
            return Ok(operator.name());
        }
        if requested_by.is_empty() {
            return Err(Status::permission_denied("an administrative call must name who asks for it (requested_by)"));
        }
        match self.store.get(requested_by).await.map_err(store_failed)? {
            Some(user) if user.admin && !user.disabled => Ok(user.username),
            _ => Err(Status::permission_denied("Only administrators can do this.")),
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
    ) -> Result<UserRecord, Status> {
        let user = self.new_user(username, password, admin, rights).await?;
        if !self.store.create(&user).await.map_err(store_failed)? {
            return Err(Status::already_exists(format!("the username {username:?} is taken")));
        }
        tracing::info!(target: "audit", event = "user_created", username, admin, by, "user created");
        Ok(user)
    }

    pub async fn get_user(&self, username: &str) -> Result<UserRecord, Status> {
        self.store.get(username).await.map_err(store_failed)?.ok_or_else(|| not_found(username))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, Status> {
        self.store.list().await.map_err(store_failed)
    }

    /// `by` makes a user an administrator, or no longer one (never themselves: an
    /// administrator cannot lock themselves out).
    pub async fn set_admin(&self, username: &str, admin: bool, by: &str) -> Result<UserRecord, Status> {
        if !admin {
            not_yourself(username, by, "take administration away from")?;
        }
        if !self.store.set_admin(username, admin).await.map_err(store_failed)? {
            return Err(not_found(username));
        }
        tracing::info!(target: "audit", event = "user_admin_set", username, admin, by, "admin flag changed");
        self.get_user(username).await
    }

    /// `by` sets some of a user's rights.
    pub async fn set_rights(
        &self,
        username: &str,
        rights: &[(NmosApi, Access)],
        by: &str,
    ) -> Result<UserRecord, Status> {
        if !self.store.set_rights(username, rights).await.map_err(store_failed)? {
            return Err(not_found(username));
        }
        let user = self.get_user(username).await?;
        tracing::info!(target: "audit", event = "user_rights_set", username, rights = ?user.rights, by, "rights changed");
        Ok(user)
    }

    /// `by` disables or enables a user (never disables themselves).
    pub async fn set_disabled(&self, username: &str, disabled: bool, by: &str) -> Result<UserRecord, Status> {
        if disabled {
            not_yourself(username, by, "disable")?;
        }
        if !self.store.set_disabled(username, disabled).await.map_err(store_failed)? {
            return Err(not_found(username));
        }
        tracing::info!(target: "audit", event = "user_disabled_set", username, disabled, by, "account enabled or disabled");
        self.get_user(username).await
    }

    /// `by` deletes a user (never themselves).
    pub async fn delete_user(&self, username: &str, by: &str) -> Result<(), Status> {
        not_yourself(username, by, "delete")?;
        if !self.store.delete(username).await.map_err(store_failed)? {
            return Err(not_found(username));
        }
        tracing::info!(target: "audit", event = "user_deleted", username, by, "user deleted");
        Ok(())
    }

    /// Self-service sign-up: the first account is an administrator with write access to
    /// every API; later accounts (only with open sign-up) start with no rights.
    pub async fn sign_up(&self, username: &str, password: &str) -> Result<UserRecord, Status> {
        // The first account, atomically: two sign-ups on a new server cannot both get it.
        let all_write: Vec<(NmosApi, Access)> = NmosApi::ALL.into_iter().map(|api| (api, Access::Write)).collect();
        let first = self.new_user(username, password, true, &all_write).await?;
        if self.store.create_first(&first).await.map_err(store_failed)? {
            tracing::info!(target: "audit", event = "user_created", username, admin = true, "first user (administrator) created");
            return Ok(first);
        }
        if !self.open_signup {
            return Err(Status::failed_precondition("sign-up is closed: ask an administrator for an account"));
        }
        // Later accounts start with no rights and no administration.
        let user = UserRecord { admin: false, rights: AccessRights::default(), ..first };
        if !self.store.create(&user).await.map_err(store_failed)? {
            return Err(Status::already_exists(format!("the username {username:?} is taken")));
        }
        tracing::info!(target: "audit", event = "user_created", username, admin = false, "user signed up");
        Ok(user)
    }

    /// The user, if the password is right and the account is enabled. Every failure is the
    /// same UNAUTHENTICATED status, so a caller cannot learn which names exist; repeated
    /// failures for a username or from an address are locked out (RESOURCE_EXHAUSTED).
    pub async fn verify_password(
        &self,
        username: &str,
        password: &str,
        client_address: &str,
    ) -> Result<UserRecord, Status> {
        let throttles = [(&self.user_throttle, username), (&self.address_throttle, client_address)];
        let throttles: Vec<_> = throttles.into_iter().filter(|(_, key)| !key.is_empty()).collect();
        if let Some(wait) = throttles.iter().filter_map(|(t, key)| t.locked(key)).max() {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            return Err(Status::resource_exhausted(format!(
                "Too many failed sign-ins. Try again in {minutes} minute(s)."
            )));
        }
        let user = self.store.get(username).await.map_err(store_failed)?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || users::verify_password(&password, stored.as_deref()))
            .await
            .map_err(internal)?;
        match user {
            Some(user) if ok && !user.disabled => {
                // Only the username's count: a success must not reset its address's count
                // (an attacker with one account would otherwise never hit the address limit).
                self.user_throttle.success(username);
                Ok(user)
            }
            _ => {
                throttles.iter().for_each(|(t, key)| t.failure(key));
                tracing::info!(target: "audit", event = "password_rejected", username, client_address, "wrong username or password");
                Err(Status::unauthenticated("wrong username or password"))
            }
        }
    }

    pub fn into_server(self: Arc<Self>) -> IdentityServer<IdentityService> {
        IdentityServer::from_arc(self)
    }
}
