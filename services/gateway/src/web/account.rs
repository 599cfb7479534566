//! Signing up, in and out.
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nmos_auth_proto as pb;

use super::{BASE, forbidden_form, form, form_value, found, safe_next, session_of_request, status_page, with_session};
use crate::Gateway;
use crate::http::parse_form;
use crate::pages::{self, escape};
use crate::session::Session;

fn credentials_form(
    session: &Session,
    action: &str,
    next: &str,
    intro: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let (title, button, autocomplete, other) = if action == "signin" {
        (
            "Sign in",
            "Sign in",
            "current-password",
            format!(r#"<p class="muted">No account yet? <a href="{BASE}/signup">Sign up</a>.</p>"#),
        )
    } else {
        (
            "Sign up",
            "Create account",
            "new-password",
            format!(r#"<p class="muted">Have an account? <a href="{BASE}/signin">Sign in</a>.</p>"#),
        )
    };
    let alert = problem.map(|p| format!(r#"<div class="alert">{}</div>"#, escape(p))).unwrap_or_default();
    let body = format!(
        r#"{alert}<p class="muted">{intro}</p>
<form method="post" action="{BASE}/{action}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<label>Username <input type="text" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="{autocomplete}" minlength="8" required></label>
{setup}<div class="actions"><button type="submit">{button}</button></div>
</form>
{other}"#,
        csrf = escape(&session.csrf),
        next = escape(next),
        intro = escape(intro),
        setup = if action == "signup" {
            r#"<label>Setup code <span class="muted">(the first account on a new server only)</span> <input type="text" name="setup_code" autocomplete="off" spellcheck="false" placeholder="XXXX-XXXX-XXXX-XXXX"></label>
"#
        } else {
            ""
        },
    );
    pages::page(status, title, &pages::nav(None, &session.csrf), &body)
}

const SIGNIN_INTRO: &str = "Sign in to approve access for NMOS controllers and to manage your clients.";
const SIGNUP_INTRO: &str = "Create an account. The first account on a new server becomes its administrator: \
                            it needs the latest setup code that the server logged (each is good for 24 hours) \
                            (or create it with nmos-auth admin add-user NAME --admin).";

/// The browser's session, or a new anonymous one (it carries the CSRF token for the form).
fn session_of(gateway: &Gateway, headers: &HeaderMap) -> Session {
    session_of_request(gateway, headers).unwrap_or_else(Session::anonymous)
}

/// A posted sign-in or sign-up form whose CSRF token checked out.
struct Posted {
    session: Session,
    form: Vec<(String, String)>,
    /// Where to go afterwards.
    next: String,
}

/// The posted form, or the refusal to send back.
fn posted(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Posted, Box<Response>> {
    let session = session_of(gateway, headers);
    let form = form(body).map_err(|too_large| Box::new(too_large.into_response()))?;
    if !session.csrf_matches(form_value(&form, "csrf")) {
        return Err(Box::new(with_session(forbidden_form(&session), gateway, &session)));
    }
    let next = safe_next(form_value(&form, "next"));
    Ok(Posted { session, form, next })
}

fn next_of(uri: &Uri) -> String {
    let query = parse_form(uri.query().unwrap_or("").as_bytes()).unwrap_or_default();
    safe_next(form_value(&query, "next"))
}

/// GET signin.
pub async fn signin_page(State(gateway): State<Gateway>, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_of(&gateway, &headers);
    let response = credentials_form(&session, "signin", &next_of(&uri), SIGNIN_INTRO, None, StatusCode::OK);
    with_session(response, &gateway, &session)
}

/// POST signin. The identity service limits failures per username and per address; every
/// failure says the same thing whether the user exists or not.
pub async fn signin(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Posted { session, form, next } = match posted(&gateway, &headers, body) {
        Ok(posted) => posted,
        Err(refusal) => return *refusal,
    };
    let client_address = gateway.client_address(peer, &headers);
    let request = pb::VerifyPasswordRequest {
        username: form_value(&form, "username").unwrap_or("").to_owned(),
        password: form_value(&form, "password").unwrap_or("").to_owned(),
        client_address: client_address.to_string(),
    };
    match gateway.identity.clone().verify_password(request).await {
        Ok(user) => {
            let user = user.into_inner();
            tracing::info!(target: "audit", event = "signed_in", username = %user.username, client_address = %client_address, "user signed in");
            // A new session, with a new CSRF token, on every sign-in.
            start_session(&gateway, user.username, &next, &session).await
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            let problem = Some("Wrong username or password.");
            let response = credentials_form(&session, "signin", &next, SIGNIN_INTRO, problem, StatusCode::UNAUTHORIZED);
            with_session(response, &gateway, &session)
        }
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            let problem = Some(status.message());
            let response =
                credentials_form(&session, "signin", &next, SIGNIN_INTRO, problem, StatusCode::TOO_MANY_REQUESTS);
            with_session(response, &gateway, &session)
        }
        Err(status) => status_page(&status, &session),
    }
}

/// GET signup.
pub async fn signup_page(State(gateway): State<Gateway>, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_of(&gateway, &headers);
    let response = credentials_form(&session, "signup", &next_of(&uri), SIGNUP_INTRO, None, StatusCode::OK);
    with_session(response, &gateway, &session)
}

/// POST signup: creates the account and signs it in.
pub async fn signup(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Posted { session, form, next } = match posted(&gateway, &headers, body) {
        Ok(posted) => posted,
        Err(refusal) => return *refusal,
    };
    let request = pb::SignUpRequest {
        username: form_value(&form, "username").unwrap_or("").to_owned(),
        password: form_value(&form, "password").unwrap_or("").to_owned(),
        setup_code: form_value(&form, "setup_code").unwrap_or("").to_owned(),
    };
    match gateway.identity.clone().sign_up(request).await {
        Ok(user) => start_session(&gateway, user.into_inner().username, &next, &session).await,
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
            ) =>
        {
            let code = if status.code() == tonic::Code::FailedPrecondition {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            let response = credentials_form(&session, "signup", &next, SIGNUP_INTRO, Some(status.message()), code);
            with_session(response, &gateway, &session)
        }
        Err(status) => status_page(&status, &session),
    }
}

/// POST signout.
pub async fn signout(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(session) = session_of_request(&gateway, &headers) else {
        return found(&format!("{BASE}/signin"));
    };
    let form = or_respond!(form(body));
    if !session.csrf_matches(form_value(&form, "csrf")) {
        return forbidden_form(&session);
    }
    // Ended in the identity service, so that no copy of the cookie opens a page again.
    if let Some(session_id) = session.id.clone()
        && let Err(status) = gateway.identity.clone().end_session(pb::EndSessionRequest { session_id }).await
    {
        return status_page(&status, &session);
    }
    if let Some(username) = &session.username {
        tracing::info!(target: "audit", event = "signed_out", username = %username, "user signed out");
    }
    with_session(found(&format!("{BASE}/signin")), &gateway, &Session::anonymous())
}

/// Starts the identity service's session for someone who just signed in or up, and sends
/// them on to `next` with its cookie. The session the browser had before, if someone was signed
/// in, ends: no copy of its cookie opens a page again.
async fn start_session(gateway: &Gateway, username: String, next: &str, before: &Session) -> Response {
    if let Some(session_id) = before.id.clone()
        && let Err(status) = gateway.identity.clone().end_session(pb::EndSessionRequest { session_id }).await
    {
        return status_page(&status, before);
    }
    let request = pb::StartSessionRequest { username: username.clone() };
    match gateway.identity.clone().start_session(request).await {
        Ok(started) => {
            let session = Session::signed_in(username, started.into_inner().session_id);
            with_session(found(next), gateway, &session)
        }
        Err(status) => status_page(&status, before),
    }
}
