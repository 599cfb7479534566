//! The pages a person uses. Every form carries the session's CSRF token, state changes only
//! by POST, and nothing secret is ever rendered after the moment it is created.
/// In a page handler: the value of an `Ok`, or return the `Err` as the response.
macro_rules! or_respond {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return axum::response::IntoResponse::into_response(response),
        }
    };
}

mod account;
mod clients;
mod consent;
mod console;
mod users;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use nmos_auth_proto::identity_client::IdentityClient;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub use account::{signin, signin_page, signout, signup, signup_page};
pub use clients::{decide_pending, delete_client, home, pending_page, register_client, register_client_page};
pub use consent::{authorize_decision, authorize_page};
pub use console::{audit_csv, audit_page, client_action, client_page, clients_page, keys_action, keys_page, overview};
pub use users::{add_user, change_user, users_page};

use crate::Gateway;
use crate::http::parse_form;
use crate::pages;
use crate::session::Session;

const BASE: &str = nmos_auth_core::AUTH_API_BASE;

/// The request's session, read from the cookie this gateway sets (its name depends on HTTPS).
fn session_of_request(gateway: &Gateway, headers: &HeaderMap) -> Option<Session> {
    Session::from_headers(headers, &gateway.cookie_key, gateway.secure_cookies)
}

/// A response that (re)stores the session cookie.
fn with_session(mut response: Response, gateway: &Gateway, session: &Session) -> Response {
    match session.cookie(&gateway.cookie_key, gateway.secure_cookies) {
        Ok(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => internal_error_page(e),
    }
}

/// 302 Found, as IS-10 requires for redirects (never 307).
fn found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The page for an outage: a service or its database cannot be reached now (503, like the
/// JSON endpoints' `temporarily_unavailable`).
fn unavailable_page(nav: &str) -> Response {
    let text = "A service is unavailable; try again in a moment.";
    pages::error(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", text, nav)
}

/// An HTML error for a person; the cause is logged, never shown.
fn internal_error_page<E: std::fmt::Display + 'static>(cause: E) -> Response {
    if OAuthError::internal(cause).code == ErrorCode::TemporarilyUnavailable {
        return unavailable_page("");
    }
    pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again.", "")
}

/// An error page for a failed service call. Services' messages for refused requests are
/// written for people; an outage (the service unreachable, its connection broken mid-call, its
/// database down) is the 503 page, classified as the JSON endpoints classify it; anything
/// else unexpected is logged and shown as a generic error.
fn status_page(status: &tonic::Status, session: &Session) -> Response {
    use tonic::Code;
    let nav = pages::nav(session.username.as_deref(), &session.csrf);
    let refused = |code, title| {
        let message = match OAuthError::from_status_detail(status) {
            Some(error) => error.description.unwrap_or_else(|| error.code.as_str().to_owned()),
            None => status.message().to_owned(),
        };
        pages::error(code, title, &message, &nav)
    };
    // A broken connection arrives as Unknown or Internal with the transport's error as its
    // source, whatever the call: the peer's own answers have none.
    let broken = std::error::Error::source(status).is_some() && OAuthError::from_status_detail(status).is_none();
    // Classified (and logged) as the JSON endpoints do it.
    let unexpected = || match OAuthError::from_status(status).code {
        ErrorCode::TemporarilyUnavailable => unavailable_page(&nav),
        _ => pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again.", &nav),
    };
    match status.code() {
        _ if broken => unexpected(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            refused(StatusCode::BAD_REQUEST, "This request cannot be completed")
        }
        Code::AlreadyExists => refused(StatusCode::CONFLICT, "Already exists"),
        Code::NotFound => refused(StatusCode::NOT_FOUND, "Not found"),
        Code::PermissionDenied | Code::Unauthenticated => refused(StatusCode::FORBIDDEN, "Not allowed"),
        _ => unexpected(),
    }
}

/// Where to go after signing in: a page of this server (its pages, or the seed's `/oauth/`
/// routes), query and all: nmos-cpp's authorization requests carry their `redirect_uri`
/// unencoded (RFC 3986 §3.4 allows `/` and `:` in a query). Anything else goes home.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if stays_on_this_origin(n) && (n.starts_with(&format!("{BASE}/")) || n.starts_with("/oauth/")) => {
            n.to_owned()
        }
        _ => format!("{BASE}/home"),
    }
}

/// Whether a redirect target can only be a path on this origin (no open redirect): it starts
/// with a single `/` (not a scheme, nor `//` or `/\`, which browsers read as another host),
/// and holds visible ASCII only (no control character could split the Location header).
fn stays_on_this_origin(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.bytes().all(|b| b.is_ascii_graphic())
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A form over `max_body_bytes`: the 413 page.
struct FormTooLarge;

impl IntoResponse for FormTooLarge {
    fn into_response(self) -> Response {
        let text = "This form is too large to be accepted. Go back, shorten what you entered and try again.";
        pages::error(StatusCode::PAYLOAD_TOO_LARGE, "Form too large", text, "")
    }
}

/// A posted form. An unreadable body is an empty form (which then fails its CSRF check).
fn form(body: Result<Bytes, BytesRejection>) -> Result<Vec<(String, String)>, FormTooLarge> {
    match body {
        Ok(bytes) => Ok(parse_form(&bytes).unwrap_or_default()),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(FormTooLarge),
        Err(_) => Ok(Vec::new()),
    }
}

fn forbidden_form(session: &Session) -> Response {
    let nav = pages::nav(session.username.as_deref(), &session.csrf);
    pages::error(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
        &nav,
    )
}

fn to_signin(here: &str) -> Response {
    found(&format!("{BASE}/signin?next={}", utf8_percent_encode(here, NON_ALPHANUMERIC)))
}

/// The signed-in user of a page request, or the response that sends them to sign in. The
/// session is checked in the identity service on every request: one signed out, ended by a
/// password change or by an administrator, or whose user was disabled or deleted, is over.
async fn signed_in(gateway: &Gateway, headers: &HeaderMap, here: &str) -> Result<(Session, pb::User), Response> {
    let session = session_of_request(gateway, headers);
    let Some((session, session_id)) = session.and_then(|s| s.id.clone().map(|id| (s, id))) else {
        return Err(to_signin(here));
    };
    let check = |mut identity: IdentityClient<GrpcChannel>| {
        let session_id = session_id.clone();
        async move { identity.check_session(pb::CheckSessionRequest { session_id }).await }
    };
    match grpc::idempotent(&gateway.identity, check).await {
        Ok(user) if session.username.as_deref() == Some(user.get_ref().username.as_str()) => {
            Ok((session, user.into_inner()))
        }
        Ok(_) => Err(with_session(to_signin(here), gateway, &Session::anonymous())),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            Err(with_session(to_signin(here), gateway, &Session::anonymous()))
        }
        Err(status) => Err(status_page(&status, &session)),
    }
}

/// A POST from a signed-in user's page, with its CSRF token checked.
async fn signed_in_post(
    gateway: &Gateway,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(Session, pb::User), Response> {
    let Some(session) = session_of_request(gateway, headers) else {
        return Err(pages::error(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended. Sign in and try again.",
            &pages::nav(None, ""),
        ));
    };
    if !session.csrf_matches(form_value(form, "csrf")) {
        return Err(forbidden_form(&session));
    }
    signed_in(gateway, headers, &format!("{BASE}/home")).await
}

fn web_user(user: &pb::User) -> pb::WebUser {
    pb::WebUser { username: user.username.clone(), admin: user.admin, account_created_at: user.created_at }
}

/// The navigation bar for a signed-in user.
fn nav_for(user: &pb::User, session: &Session) -> String {
    let admin = if user.admin {
        format!(
            r#"<a href="{BASE}/admin">Console</a><a href="{BASE}/users">Users</a><a href="{BASE}/pending">Pending</a>"#
        )
    } else {
        String::new()
    };
    format!(
        r#"<a href="{BASE}/home">Clients</a><a href="{BASE}/register-client">Register a client</a>{admin}{}"#,
        pages::nav(Some(&user.username), &session.csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_keeps_requests_to_this_server_and_nothing_else() {
        let nmos_cpp = "/x-nmos/auth/v1.0/authorize?response_type=code&client_id=abc\
                        &redirect_uri=http://127.0.0.1:18086/x-authorization/callback&state=x";
        for kept in [nmos_cpp, "/x-nmos/auth/v1.0/users", "/oauth/authorize?client_id=a&redirect_uri=https://h/cb"] {
            assert_eq!(safe_next(Some(kept)), kept);
        }
        let home = format!("{BASE}/home");
        for refused in [
            "https://evil.example/x-nmos/auth/v1.0/home",
            "//evil.example/x-nmos/auth/v1.0/home",
            "/\\evil.example/x-nmos/auth/v1.0/home",
            "\\\\evil.example/x",
            "javascript:alert(1)",
            "/x-nmos/auth/v1.0/home\r\nSet-Cookie: x=y",
            "/x-nmos/auth/v1.0/home\u{0}",
            "/x-nmos/auth/v1.0/h\u{e9}",
            "/elsewhere/on/this/host",
            "",
        ] {
            assert_eq!(safe_next(Some(refused)), home, "{refused:?}");
        }
        assert_eq!(safe_next(None), home);
    }
}
