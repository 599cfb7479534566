//! OAuth errors: one variant per RFC error code, carried across gRPC in the status details.
use std::fmt;

use prost::Message;
use tonic::{Code, Status};

use nmos_auth_proto::OAuthErrorDetail;

/// The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1 and RFC 7591 §3.2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    UnsupportedTokenType,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InvalidRedirectUri,
    InvalidClientMetadata,
}

impl ErrorCode {
    const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::UnsupportedTokenType,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidRedirectUri,
        ErrorCode::InvalidClientMetadata,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn grpc_code(self) -> Code {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => Code::Unauthenticated,
            ErrorCode::UnauthorizedClient | ErrorCode::AccessDenied => Code::PermissionDenied,
            ErrorCode::ServerError => Code::Internal,
            ErrorCode::TemporarilyUnavailable => Code::Unavailable,
            _ => Code::InvalidArgument,
        }
    }
}

/// An OAuth error with an optional human-readable description (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError { code, description: Some(description.into()) }
    }

    pub fn bare(code: ErrorCode) -> OAuthError {
        OAuthError { code, description: None }
    }

    /// An unexpected internal failure. The cause is logged here and not shown to the client.
    /// A database that cannot be reached (down, restarting, every connection busy) is an
    /// outage, not a fault: `temporarily_unavailable`, which clients retry.
    pub fn internal<E: fmt::Display + 'static>(cause: E) -> OAuthError {
        if storage_unavailable(&cause) {
            crate::warn_limited!(error = %cause, "the database is unavailable");
            return OAuthError::new(ErrorCode::TemporarilyUnavailable, "the database is unavailable; try again");
        }
        tracing::error!(error = %cause, "internal error");
        OAuthError::new(ErrorCode::ServerError, "internal error")
    }

    /// The OAuth error a service put in a status, if it put one there.
    pub fn from_status_detail(status: &Status) -> Option<OAuthError> {
        let detail = OAuthErrorDetail::decode(status.details()).ok()?;
        let code = ErrorCode::parse(&detail.error)?;
        let description = (!detail.error_description.is_empty()).then_some(detail.error_description);
        Some(OAuthError { code, description })
    }

    /// Reads the OAuth error a service put in a status; statuses without one (transport
    /// failures, deadlines) become `temporarily_unavailable` or `server_error`.
    pub fn from_status(status: &Status) -> OAuthError {
        if let Some(error) = OAuthError::from_status_detail(status) {
            return error;
        }
        // A connection that broke mid-call (the peer was killed) reaches us as Unknown or
        // Internal with the transport's (or HTTP/2's) error as its source; a status a service
        // sent has no source. Either way the peer is gone: an outage, like a refused connection.
        let broken_connection = std::error::Error::source(status).is_some();
        match status.code() {
            _ if broken_connection => {
                let cause = std::error::Error::source(status)
                    .into_iter()
                    .flat_map(crate::grpc::causes)
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(": ");
                crate::warn_limited!(code = ?status.code(), %cause, "service connection lost");
                OAuthError::new(ErrorCode::TemporarilyUnavailable, "a service is unavailable; try again")
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
                crate::warn_limited!(status = %status, "service unavailable");
                OAuthError::new(ErrorCode::TemporarilyUnavailable, "a service is unavailable; try again")
            }
            _ => OAuthError::internal(status.to_string()),
        }
    }
}

/// A failure that means a dependency (the database) cannot be reached now, for errors that
/// must be passed on as text (to several waiters) without losing that meaning.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Whether `error` means the database cannot be reached now (down, restarting, saturated).
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    storage_unavailable(error)
}

/// A store's failure: an outage is `temporarily_unavailable`; anything else is logged and is
/// `server_error`.
impl From<crate::db::StoreError> for OAuthError {
    fn from(e: crate::db::StoreError) -> OAuthError {
        OAuthError::internal(e)
    }
}

/// Whether `cause` is (or wraps) a database error that means "cannot reach it now".
fn storage_unavailable(cause: &dyn std::any::Any) -> bool {
    let wrapped = cause.downcast_ref::<anyhow::Error>();
    if cause.is::<Unavailable>() || wrapped.is_some_and(|e| e.downcast_ref::<Unavailable>().is_some()) {
        return true;
    }
    let store = cause
        .downcast_ref::<crate::db::StoreError>()
        .or_else(|| wrapped.and_then(|e| e.downcast_ref::<crate::db::StoreError>()));
    if let Some(store) = store {
        return store.is_unavailable();
    }
    let error = cause
        .downcast_ref::<sqlx::Error>()
        .or_else(|| cause.downcast_ref::<anyhow::Error>().and_then(|e| e.downcast_ref::<sqlx::Error>()));
    match error {
        Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)) => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
        Some(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some("57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.code.as_str()),
            None => f.write_str(self.code.as_str()),
        }
    }
}

impl std::error::Error for OAuthError {}

impl From<OAuthError> for Status {
    fn from(e: OAuthError) -> Status {
        let detail = OAuthErrorDetail {
            error: e.code.as_str().to_owned(),
            error_description: e.description.clone().unwrap_or_default(),
        };
        Status::with_details(e.code.grpc_code(), e.to_string(), detail.encode_to_vec().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_status() {
        let e = OAuthError::new(ErrorCode::InvalidScope, "query is not allowed");
        let status = Status::from(e.clone());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(OAuthError::from_status(&status), e);
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn transport_failures_are_temporarily_unavailable() {
        let e = OAuthError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
        let e = OAuthError::from_status(&Status::unknown("boom"));
        assert_eq!(e.code, ErrorCode::ServerError);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let e = OAuthError::from_status(&Status::from_error(Box::new(reset)));
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable, "a connection lost mid-call");
    }
}
