//! What the identity service's operations can fail with, in its own terms. grpc.rs turns each
//! into the gRPC status its callers expect (the gateway shows the message to people; the token
//! issuer reads the code), and only there.
use nmos_auth_core::OAuthError;
use nmos_auth_core::db::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A username or password that breaks the rules, or a right that names no API or level.
    #[error("{0}")]
    Invalid(String),
    #[error("the username {0:?} is taken")]
    UsernameTaken(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// The caller is not an administrator (or did not say who asks).
    #[error("{0}")]
    NotAdministrator(&'static str),
    /// An administrator asked to disable, delete or demote themselves.
    #[error("You cannot {0} your own account.")]
    NotYourself(&'static str),
    #[error("sign-up is closed: ask an administrator for an account")]
    SignUpClosed,
    /// A sign-up on a server with no users, without a valid setup code.
    #[error(
        "This server has no administrator yet. Enter the setup code that the server logged (the \
         latest: a code is good for 24 hours, and a new one is logged every 12 hours), or create \
         the first administrator with: nmos-auth admin add-user NAME --admin"
    )]
    SetupCodeNeeded,
    /// Too many failed passwords for the username or from the address.
    #[error("Too many failed sign-ins. Try again in {minutes} minute(s).")]
    LockedOut { minutes: u64 },
    /// Unknown user, wrong password or disabled account: one answer, so that a caller cannot
    /// learn which names exist.
    #[error("wrong username or password")]
    WrongPassword,
    /// A web session that was signed out, ended with all the user's sessions, or expired.
    #[error("the session has ended; sign in again")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The password hashing task failed (it panicked, or argon2 refused its parameters).
    #[error("identity failure: {0}")]
    Internal(String),
}

impl IdentityError {
    pub fn internal(e: impl std::fmt::Display) -> IdentityError {
        IdentityError::Internal(e.to_string())
    }
}

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Status {
        let message = e.to_string();
        match e {
            IdentityError::Invalid(_) => Status::invalid_argument(message),
            IdentityError::UsernameTaken(_) => Status::already_exists(message),
            IdentityError::NoSuchUser(_) => Status::not_found(message),
            IdentityError::NotAdministrator(_) => Status::permission_denied(message),
            IdentityError::NotYourself(_) | IdentityError::SignUpClosed | IdentityError::SetupCodeNeeded => {
                Status::failed_precondition(message)
            }
            IdentityError::LockedOut { .. } => Status::resource_exhausted(message),
            IdentityError::WrongPassword | IdentityError::SessionEnded => Status::unauthenticated(message),
            // Mapped as every service maps a store failure: an outage is
            // `temporarily_unavailable` (callers answer 503 and clients retry), anything else a
            // logged internal error.
            IdentityError::Store(e) => OAuthError::from(e).into(),
            IdentityError::Internal(cause) => {
                tracing::error!(error = %cause, "identity failure");
                Status::internal("identity failure")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_failure_has_the_status_its_callers_read() {
        let cases = [
            (IdentityError::Invalid("a password is 8 to 1024 bytes long".into()), Code::InvalidArgument),
            (IdentityError::UsernameTaken("alice".into()), Code::AlreadyExists),
            (IdentityError::NoSuchUser("alice".into()), Code::NotFound),
            (IdentityError::NotAdministrator("Only administrators can do this."), Code::PermissionDenied),
            (IdentityError::NotYourself("delete"), Code::FailedPrecondition),
            (IdentityError::SignUpClosed, Code::FailedPrecondition),
            (IdentityError::LockedOut { minutes: 2 }, Code::ResourceExhausted),
            (IdentityError::WrongPassword, Code::Unauthenticated),
            (IdentityError::Store(StoreError::from(sqlx::Error::PoolTimedOut)), Code::Unavailable),
            (IdentityError::internal("argon2: bad parameters"), Code::Internal),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{shown}");
        }
    }

    #[test]
    fn messages_for_people_say_what_to_do_and_internal_ones_say_nothing() {
        let locked = Status::from(IdentityError::LockedOut { minutes: 3 });
        assert_eq!(locked.message(), "Too many failed sign-ins. Try again in 3 minute(s).");
        let yourself = Status::from(IdentityError::NotYourself("disable"));
        assert_eq!(yourself.message(), "You cannot disable your own account.");
        let internal = Status::from(IdentityError::internal("the hashing task panicked at users.rs:40"));
        assert_eq!(internal.message(), "identity failure", "no internals leave the service");
        let outage = Status::from(IdentityError::Store(StoreError::from(sqlx::Error::PoolTimedOut)));
        assert_eq!(OAuthError::from_status(&outage).code, nmos_auth_core::ErrorCode::TemporarilyUnavailable);
    }
}
