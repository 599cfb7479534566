//! The authorization endpoint's pages: consent, and the decision that sends the browser back
//! to the client (RFC 6749 §4.1.1–4.1.2).
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use nmos_auth_proto as pb;

use super::{BASE, form, form_value, found, internal_error_page, nav_for, signed_in, signed_in_post, status_page};
use crate::Gateway;
use crate::http::parse_form;
use crate::pages::{self, escape};
use crate::session::Session;

fn access_label(access: i32) -> &'static str {
    match pb::Access::try_from(access) {
        Ok(pb::Access::Write) => "read and write",
        Ok(pb::Access::Read) => "read",
        _ => "none",
    }
}

fn consent_page(
    session: &Session,
    user: &pb::User,
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
    // The request's parameters ride along for the decision; the form's own fields never come
    // from the request (a crafted "decision=approve" must not outvote the user's click).
    let hidden: String = params
        .iter()
        .filter(|(n, _)| n != "csrf" && n != "decision")
        .map(|(n, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(n), escape(v)))
        .collect();
    // Where the person is sent, its host in bold: the place to notice a stranger.
    let destination = prompt.redirect_uri.split('?').next().unwrap_or_default();
    let host = nmos_auth_core::RedirectUri::parse(&prompt.redirect_uri).map(|u| u.host()).unwrap_or_default();
    let body = format!(
        r#"<p><strong>{name}</strong> wants to use these NMOS APIs on your behalf:</p>
<ul class="rights">{rights}</ul>
{withheld}
<p class="muted">Client <code>{client_id}</code>. After you decide, you are sent to <strong>{host}</strong>: <code>{destination}</code>.</p>
<form method="post" action="{BASE}/authorize">
<input type="hidden" name="csrf" value="{csrf}">
{hidden}
<div class="actions"><button type="submit" name="decision" value="approve">Approve</button><button class="secondary" type="submit" name="decision" value="deny">Deny</button></div>
</form>"#,
        name = escape(name),
        client_id = escape(&prompt.client_id),
        destination = escape(destination),
        host = escape(&host),
        csrf = escape(&session.csrf),
    );
    pages::page(StatusCode::OK, "Approve access", &nav_for(user, session), &body)
}

fn authorize_outcome(
    response: pb::AuthorizeResponse,
    session: &Session,
    user: &pb::User,
    params: &[(String, String)],
) -> Response {
    match response.outcome {
        Some(pb::authorize_response::Outcome::Consent(prompt)) => consent_page(session, user, &prompt, params),
        Some(pb::authorize_response::Outcome::Redirect(location)) => found(&location),
        Some(pb::authorize_response::Outcome::SignInNext(_)) | None => {
            internal_error_page("no decision from the token issuer")
        }
    }
}

/// The request's parameters for the token issuer.
fn authorize_request(
    params: &[(String, String)],
    username: &str,
    decision: pb::AuthorizeDecision,
) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        params: params
            .iter()
            .map(|(name, value)| pb::TokenParam { name: name.clone(), value: value.clone() })
            .collect(),
        username: username.to_owned(),
        decision: decision as i32,
    }
}

/// GET authorization_endpoint: sign in first, then the consent page (or a redirect back to
/// the client with an error, or an error page when the client cannot be trusted). A request
/// that cannot succeed is answered before anyone signs in (RFC 6749 §4.1.2.1): nobody signs in
/// only to be told so, and a client (or a conformance checker) sees PKCE and the other rules
/// enforced without a user. A client registered on these pages is the exception: its error is
/// redirected only after a sign-in (RFC 9700 §4.11.2), or anyone with an account could make
/// this server send people to a site of their choosing.
pub async fn authorize_page(State(gateway): State<Gateway>, headers: HeaderMap, uri: Uri) -> Response {
    let here = format!("{}?{}", uri.path(), uri.query().unwrap_or(""));
    let Some(params) = parse_form(uri.query().unwrap_or("").as_bytes()) else {
        let text = "The request is not valid UTF-8.";
        return pages::error(StatusCode::BAD_REQUEST, "This request cannot be completed", text, "");
    };
    let (session, user) = match signed_in(&gateway, &headers, &here).await {
        Ok(signed_in) => signed_in,
        Err(to_signin) => {
            let request = authorize_request(&params, "", pb::AuthorizeDecision::Validate);
            return match gateway.token_issuer.clone().authorize(request).await {
                Ok(response) => match response.into_inner().outcome {
                    Some(pb::authorize_response::Outcome::SignInNext(_)) => to_signin,
                    Some(pb::authorize_response::Outcome::Redirect(location)) => found(&location),
                    Some(pb::authorize_response::Outcome::Consent(_)) | None => {
                        internal_error_page("no validation from the token issuer")
                    }
                },
                Err(status) => status_page(&status, &Session::anonymous()),
            };
        }
    };
    let request = authorize_request(&params, &user.username, pb::AuthorizeDecision::Check);
    match gateway.token_issuer.clone().authorize(request).await {
        Ok(response) => authorize_outcome(response.into_inner(), &session, &user, &params),
        Err(status) => status_page(&status, &session),
    }
}

/// POST authorization_endpoint: the consent form's Approve or Deny.
pub async fn authorize_decision(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    let decisions = form.iter().filter(|(n, _)| n == "decision").count();
    let decision = match form_value(&form, "decision").filter(|_| decisions == 1) {
        Some("approve") => pb::AuthorizeDecision::Approve,
        Some("deny") => pb::AuthorizeDecision::Deny,
        _ => {
            let text = "Choose Approve or Deny.";
            return pages::error(
                StatusCode::BAD_REQUEST,
                "This request cannot be completed",
                text,
                &nav_for(&user, &session),
            );
        }
    };
    let params: Vec<pb::TokenParam> = form
        .into_iter()
        .filter(|(name, _)| name != "csrf" && name != "decision")
        .map(|(name, value)| pb::TokenParam { name, value })
        .collect();
    let request = pb::AuthorizeRequest { params, username: user.username.clone(), decision: decision as i32 };
    match gateway.token_issuer.clone().authorize(request).await {
        Ok(response) => authorize_outcome(response.into_inner(), &session, &user, &[]),
        Err(status) => status_page(&status, &session),
    }
}
