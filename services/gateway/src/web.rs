//! The pages a person uses: sign in, sign out, home, and the authorization endpoint's consent.
//! Every form carries the session's CSRF token; state changes only by POST.
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::{ErrorCode, OAuthError};
use nmos_auth_proto as pb;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Gateway;
use crate::http::parse_form;
use crate::pages::{self, escape};
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

fn see_other(location: &str) -> Response {
    // 302 Found, as IS-10 requires for redirects (never 307).
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// An HTML error for a person; the cause is logged, never shown.
fn internal_error_page(cause: impl std::fmt::Display) -> Response {
    let _ = OAuthError::internal(cause);
    pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again.", "")
}

fn status_page(status: &tonic::Status, session: &Session) -> Response {
    let error = OAuthError::from_status(status);
    let nav = pages::nav(session.username.as_deref(), &session.csrf);
    let (code, title) = match error.code {
        ErrorCode::TemporarilyUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable"),
        ErrorCode::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        _ => (StatusCode::BAD_REQUEST, "This request cannot be completed"),
    };
    let message = error.description.unwrap_or_else(|| error.code.as_str().to_owned());
    pages::error(code, title, &message, &nav)
}

/// Only paths inside this server may be returned to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with(&format!("{BASE}/")) && !n.contains("//") && !n.contains('\\') => n.to_owned(),
        _ => format!("{BASE}/home"),
    }
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn signin_form(session: &Session, next: &str, problem: Option<&str>, status: StatusCode) -> Response {
    let alert = problem.map(|p| format!(r#"<div class="alert">{}</div>"#, escape(p))).unwrap_or_default();
    let body = format!(
        r#"{alert}<p class="muted">Sign in to approve access for NMOS controllers and devices.</p>
<form method="post" action="{BASE}/signin">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<label>Username <input type="text" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<div class="actions"><button type="submit">Sign in</button></div>
</form>"#,
        csrf = escape(&session.csrf),
        next = escape(next),
    );
    pages::page(status, "Sign in", &pages::nav(None, &session.csrf), &body)
}

/// GET signin.
pub async fn signin_page(State(gateway): State<Gateway>, headers: HeaderMap, uri: Uri) -> Response {
    let session = Session::from_headers(&headers, &gateway.cookie_key).unwrap_or_else(|| Session::new(None));
    let query = parse_form(uri.query().unwrap_or("").as_bytes()).unwrap_or_default();
    let next = safe_next(form_value(&query, "next"));
    let response = signin_form(&session, &next, None, StatusCode::OK);
    with_session(response, &gateway, &session)
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

/// POST signin.
pub async fn signin(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let session = Session::from_headers(&headers, &gateway.cookie_key).unwrap_or_else(|| Session::new(None));
    let form = body.ok().and_then(|b| parse_form(&b)).unwrap_or_default();
    if !session.csrf_matches(form_value(&form, "csrf")) {
        return with_session(forbidden_form(&session), &gateway, &session);
    }
    let next = safe_next(form_value(&form, "next"));
    let request = pb::VerifyPasswordRequest {
        username: form_value(&form, "username").unwrap_or("").to_owned(),
        password: form_value(&form, "password").unwrap_or("").to_owned(),
    };
    match gateway.identity.clone().verify_password(request).await {
        Ok(user) => {
            let user = user.into_inner();
            tracing::info!(target: "audit", event = "signed_in", username = %user.username, "user signed in");
            // A new session (new CSRF token) on every sign-in.
            with_session(see_other(&next), &gateway, &Session::new(Some(user.username)))
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            tracing::info!(target: "audit", event = "sign_in_failed", "sign-in failed");
            let response = signin_form(&session, &next, Some("Wrong username or password."), StatusCode::UNAUTHORIZED);
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
    let Some(session) = Session::from_headers(&headers, &gateway.cookie_key) else {
        return see_other(&format!("{BASE}/signin"));
    };
    let form = body.ok().and_then(|b| parse_form(&b)).unwrap_or_default();
    if !session.csrf_matches(form_value(&form, "csrf")) {
        return forbidden_form(&session);
    }
    with_session(see_other(&format!("{BASE}/signin")), &gateway, &Session::new(None))
}

/// GET home.
pub async fn home(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let session = Session::from_headers(&headers, &gateway.cookie_key);
    let Some((session, user)) = session.and_then(|s| s.username.clone().map(|u| (s, u))) else {
        return see_other(&format!("{BASE}/signin"));
    };
    let body = format!(
        r#"<p>You are signed in as <strong>{user}</strong>. NMOS controllers that send you here ask for your approval before they act for you.</p>
<p class="muted">For integrators: the server's <a href="/.well-known/oauth-authorization-server">metadata</a> and <a href="{BASE}/jwks">public keys</a>.</p>"#,
        user = escape(&user)
    );
    pages::page(StatusCode::OK, "nmos-auth", &pages::nav(Some(&user), &session.csrf), &body)
}

fn access_label(access: i32) -> &'static str {
    match pb::Access::try_from(access) {
        Ok(pb::Access::Write) => "read and write",
        Ok(pb::Access::Read) => "read",
        _ => "none",
    }
}

fn consent_page(
    session: &Session,
    username: &str,
    prompt: &pb::ConsentPrompt,
    params: &[(String, String)],
) -> Response {
    let name = if prompt.client_name.is_empty() { prompt.client_id.as_str() } else { prompt.client_name.as_str() };
    let rights: String = prompt
        .rights
        .iter()
        .map(|r| {
            format!(r#"<li><span>{}</span><span class="tag">{}</span></li>"#, escape(&r.api), access_label(r.access))
        })
        .collect();
    let withheld = if prompt.withheld.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p class="muted">Also asked for, but you have no rights to: {}.</p>"#,
            escape(&prompt.withheld.join(", "))
        )
    };
    let hidden: String = params
        .iter()
        .map(|(n, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(n), escape(v)))
        .collect();
    let destination = prompt.redirect_uri.split('?').next().unwrap_or_default();
    let body = format!(
        r#"<p><strong>{name}</strong> wants to use these NMOS APIs on your behalf:</p>
<ul class="rights">{rights}</ul>
{withheld}
<p class="muted">Client <code>{client_id}</code>. After you decide, you go back to <code>{destination}</code>.</p>
<form method="post" action="{BASE}/authorize">
<input type="hidden" name="csrf" value="{csrf}">
{hidden}
<div class="actions"><button type="submit" name="decision" value="approve">Approve</button><button class="secondary" type="submit" name="decision" value="deny">Deny</button></div>
</form>"#,
        name = escape(name),
        client_id = escape(&prompt.client_id),
        destination = escape(destination),
        csrf = escape(&session.csrf),
    );
    pages::page(StatusCode::OK, "Approve access", &pages::nav(Some(username), &session.csrf), &body)
}

fn authorize_outcome(
    response: pb::AuthorizeResponse,
    session: &Session,
    username: &str,
    params: &[(String, String)],
) -> Response {
    match response.outcome {
        Some(pb::authorize_response::Outcome::Consent(prompt)) => consent_page(session, username, &prompt, params),
        Some(pb::authorize_response::Outcome::Redirect(location)) => see_other(&location),
        None => internal_error_page("no outcome from the token issuer"),
    }
}

/// GET authorization_endpoint: sign in first, then the consent page (or a redirect back to
/// the client with an error, or an error page when the client cannot be trusted).
pub async fn authorize_page(State(gateway): State<Gateway>, headers: HeaderMap, uri: Uri) -> Response {
    let session = Session::from_headers(&headers, &gateway.cookie_key);
    let Some((session, username)) = session.and_then(|s| s.username.clone().map(|u| (s, u))) else {
        let here = format!("{}?{}", uri.path(), uri.query().unwrap_or(""));
        return see_other(&format!("{BASE}/signin?next={}", utf8_percent_encode(&here, NON_ALPHANUMERIC)));
    };
    let Some(params) = parse_form(uri.query().unwrap_or("").as_bytes()) else {
        let nav = pages::nav(Some(&username), &session.csrf);
        return pages::error(
            StatusCode::BAD_REQUEST,
            "This request cannot be completed",
            "The request is not valid UTF-8.",
            &nav,
        );
    };
    let request = pb::AuthorizeRequest {
        params: params
            .iter()
            .map(|(name, value)| pb::TokenParam { name: name.clone(), value: value.clone() })
            .collect(),
        username: username.clone(),
        decision: pb::AuthorizeDecision::Check as i32,
    };
    match gateway.token_issuer.clone().authorize(request).await {
        Ok(response) => authorize_outcome(response.into_inner(), &session, &username, &params),
        Err(status) => status_page(&status, &session),
    }
}

/// POST authorization_endpoint: the consent form's Approve or Deny.
pub async fn authorize_decision(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(session) = Session::from_headers(&headers, &gateway.cookie_key) else {
        return pages::error(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended. Start again from the application.",
            "",
        );
    };
    let form = body.ok().and_then(|b| parse_form(&b)).unwrap_or_default();
    let Some(username) = session.username.clone() else {
        return pages::error(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended. Start again from the application.",
            "",
        );
    };
    if !session.csrf_matches(form_value(&form, "csrf")) {
        return forbidden_form(&session);
    }
    let decision = match form_value(&form, "decision") {
        Some("approve") => pb::AuthorizeDecision::Approve,
        Some("deny") => pb::AuthorizeDecision::Deny,
        _ => {
            let nav = pages::nav(Some(&username), &session.csrf);
            return pages::error(
                StatusCode::BAD_REQUEST,
                "This request cannot be completed",
                "Choose Approve or Deny.",
                &nav,
            );
        }
    };
    let params: Vec<pb::TokenParam> = form
        .into_iter()
        .filter(|(name, _)| name != "csrf" && name != "decision")
        .map(|(name, value)| pb::TokenParam { name, value })
        .collect();
    let request = pb::AuthorizeRequest { params, username: username.clone(), decision: decision as i32 };
    match gateway.token_issuer.clone().authorize(request).await {
        Ok(response) => authorize_outcome(response.into_inner(), &session, &username, &[]),
        Err(status) => status_page(&status, &session),
    }
}
