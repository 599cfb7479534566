//! The pages a person uses. Every form carries the session's CSRF token, state changes only
//! by POST, and nothing secret is ever rendered after the moment it is created.
/// In a page handler: the value of an `Ok`, or return the `Err`'s response.
macro_rules! or_respond {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

mod account;
mod clients;
mod consent;
mod users;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::OAuthError;
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_proto as pb;
use nmos_auth_proto::identity_client::IdentityClient;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub use account::{signin, signin_page, signout, signup, signup_page};
pub use clients::{decide_pending, delete_client, home, pending_page, register_client, register_client_page};
pub use consent::{authorize_decision, authorize_page};
pub use users::{add_user, change_user, users_page};

use crate::Gateway;
use crate::http::parse_form;
use crate::pages;
use crate::session::Session;

const BASE: &str = nmos_auth_core::AUTH_API_BASE;

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

/// An HTML error for a person; the cause is logged, never shown.
fn internal_error_page<E: std::fmt::Display + 'static>(cause: E) -> Response {
    if OAuthError::internal(cause).code == nmos_auth_core::ErrorCode::TemporarilyUnavailable {
        let text = "A service is unavailable; try again in a moment.";
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", text, "");
    }
    pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again.", "")
}

/// An error page for a failed service call. Services' messages for refused requests are
/// written for people; anything unexpected is logged and shown as a generic error.
fn status_page(status: &tonic::Status, session: &Session) -> Response {
    use tonic::Code;
    let nav = pages::nav(session.username.as_deref(), &session.csrf);
    let message = || match OAuthError::from_status_detail(status) {
        Some(error) => error.description.unwrap_or_else(|| error.code.as_str().to_owned()),
        None => status.message().to_owned(),
    };
    let (code, title) = match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            (StatusCode::BAD_REQUEST, "This request cannot be completed")
        }
        Code::AlreadyExists => (StatusCode::CONFLICT, "Already exists"),
        Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        Code::PermissionDenied | Code::Unauthenticated => (StatusCode::FORBIDDEN, "Not allowed"),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            let text = "A service is unavailable; try again in a moment.";
            return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", text, &nav);
        }
        _ => return internal_error_page(status.to_string()),
    };
    pages::error(code, title, &message(), &nav)
}

/// Only paths inside this server may be returned to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n.starts_with(&format!("{BASE}/")) || n.starts_with("/oauth/"))
                && !n.contains("//")
                && !n.contains('\\') =>
        {
            n.to_owned()
        }
        _ => format!("{BASE}/home"),
    }
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A form body; an unreadable one is an empty form (which then fails its CSRF check).
fn form(body: Result<Bytes, BytesRejection>) -> Vec<(String, String)> {
    body.ok().and_then(|b| parse_form(&b)).unwrap_or_default()
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

/// The signed-in user of a page request, or the response that sends them to sign in. A user
/// deleted or disabled since signing in is signed out.
async fn signed_in(gateway: &Gateway, headers: &HeaderMap, here: &str) -> Result<(Session, pb::User), Response> {
    let session = Session::from_headers(headers, &gateway.cookie_key);
    let Some((session, username)) = session.and_then(|s| s.username.clone().map(|u| (s, u))) else {
        return Err(to_signin(here));
    };
    let get = |mut identity: IdentityClient<GrpcChannel>| {
        let username = username.clone();
        async move { identity.get_user(pb::GetUserRequest { username }).await }
    };
    match grpc::idempotent(&gateway.identity, get).await {
        Ok(user) if !user.get_ref().disabled => Ok((session, user.into_inner())),
        Ok(_) => Err(with_session(to_signin(here), gateway, &Session::new(None))),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(with_session(to_signin(here), gateway, &Session::new(None)))
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
    let Some(session) = Session::from_headers(headers, &gateway.cookie_key) else {
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

/// The refusal for a page that only administrators may use, if `user` is not one.
fn admin_refusal(user: &pb::User, session: &Session) -> Option<Response> {
    let text = "Only administrators can do this.";
    (!user.admin).then(|| pages::error(StatusCode::FORBIDDEN, "Administrators only", text, &nav_for(user, session)))
}

fn web_user(user: &pb::User) -> pb::WebUser {
    pb::WebUser { username: user.username.clone(), admin: user.admin }
}

/// The navigation bar for a signed-in user.
fn nav_for(user: &pb::User, session: &Session) -> String {
    let admin = if user.admin {
        format!(r#"<a href="{BASE}/users">Users</a><a href="{BASE}/pending">Pending</a>"#)
    } else {
        String::new()
    };
    format!(
        r#"<a href="{BASE}/home">Clients</a><a href="{BASE}/register-client">Register a client</a>{admin}{}"#,
        pages::nav(Some(&user.username), &session.csrf)
    )
}
