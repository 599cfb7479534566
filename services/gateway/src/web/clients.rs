//! Home (your clients) and client registration on the web pages. A secret is shown once, on
//! the page that follows registration, and never again.
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;

use super::{BASE, form, form_value, found, nav_for, signed_in, signed_in_post, status_page, web_user};
use crate::Gateway;
use crate::pages::{self, escape};
use crate::session::Session;

fn auth_method(client: &pb::Client) -> &'static str {
    match pb::TokenEndpointAuthMethod::try_from(client.token_endpoint_auth_method) {
        Ok(pb::TokenEndpointAuthMethod::None) => "public (PKCE, no secret)",
        _ => "confidential (client secret)",
    }
}

/// A client's registered metadata, as a definition list.
pub(super) fn client_details(client: &pb::Client) -> String {
    let redirects = if client.redirect_uris.is_empty() {
        String::from("—")
    } else {
        client.redirect_uris.iter().map(|u| format!("<code>{}</code>", escape(u))).collect::<Vec<_>>().join("<br>")
    };
    format!(
        r#"<dl>
<dt>Client ID</dt><dd><code>{id}</code></dd>
<dt>Type</dt><dd>{method}</dd>
<dt>Grants</dt><dd>{grants}</dd>
<dt>Scope</dt><dd>{scope}</dd>
<dt>Redirect URIs</dt><dd>{redirects}</dd>
</dl>"#,
        id = escape(&client.client_id),
        method = auth_method(client),
        grants = escape(&client.grant_types.join(", ")),
        scope = escape(&client.scope),
    )
}

pub(super) fn client_name(client: &pb::Client) -> &str {
    if client.client_name.is_empty() { "(no name)" } else { client.client_name.as_str() }
}

fn client_card(client: &pb::Client, session: &Session) -> String {
    let status = match pb::ClientStatus::try_from(client.status) {
        Ok(pb::ClientStatus::Pending) => r#" <span class="tag off">waiting for approval</span>"#,
        Ok(pb::ClientStatus::Disabled) => r#" <span class="tag off">disabled by an administrator</span>"#,
        _ => "",
    };
    format!(
        r#"<div class="card">
<h2>{name}{status}</h2>
{details}
<form method="post" action="{BASE}/delete-client"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="client_id" value="{id}"><button class="danger" type="submit">Delete…</button></form>
</div>"#,
        name = escape(client_name(client)),
        details = client_details(client),
        id = escape(&client.client_id),
        csrf = escape(&session.csrf),
    )
}

/// The clients a list request names (a read: retried if its connection breaks).
async fn list_clients(gateway: &Gateway, request: pb::ListClientsRequest) -> Result<Vec<pb::Client>, tonic::Status> {
    let list = |mut clients: ClientRegistryClient<GrpcChannel>| {
        let request = request.clone();
        async move { clients.list_clients(request).await }
    };
    Ok(grpc::idempotent(&gateway.clients, list).await?.into_inner().clients)
}

/// The signed-in user's own clients: the registry decides which those are.
async fn own_clients(gateway: &Gateway, user: &pb::User) -> Result<Vec<pb::Client>, tonic::Status> {
    let request = pb::ListClientsRequest {
        owner: user.username.clone(),
        requested_by: Some(web_user(user)),
        ..Default::default()
    };
    list_clients(gateway, request).await
}

/// GET home: the signed-in user's clients, and where the server's documents are.
pub async fn home(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let (session, user) = or_respond!(signed_in(&gateway, &headers, &format!("{BASE}/home")).await);
    let clients = match own_clients(&gateway, &user).await {
        Ok(clients) => clients,
        Err(status) => return status_page(&status, &session),
    };
    let list = if clients.is_empty() {
        format!(
            r#"<p class="muted">You have not registered any clients. <a href="{BASE}/register-client">Register one</a>.</p>"#
        )
    } else {
        clients.iter().map(|c| client_card(c, &session)).collect()
    };
    let body = format!(
        r#"<p class="muted">Server documents for integrators: <a href="/.well-known/oauth-authorization-server">authorization server metadata</a> · <a href="{BASE}/jwks">public keys (JWKS)</a></p>
<h2>Your clients</h2>
{list}"#
    );
    pages::page(StatusCode::OK, "Clients", &nav_for(&user, &session), &body)
}

fn register_form(
    gateway: &Gateway,
    session: &Session,
    user: &pb::User,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let alert = problem.map(|p| format!(r#"<div class="alert">{}</div>"#, escape(p))).unwrap_or_default();
    let scopes: String = gateway
        .scopes
        .iter()
        .map(|s| {
            format!(
                r#"<label class="check"><input type="checkbox" name="scope" value="{s}" checked> {s}</label>"#,
                s = escape(s)
            )
        })
        .collect();
    let mut machine = String::new();
    if user.admin {
        machine.push_str(r#"<label class="check"><input type="checkbox" name="grant_types" value="client_credentials"> Client credentials: a machine acting for itself (an NMOS Node)</label>"#);
        // Switched on by the operator for old clients; IS-10 forbids or discourages them.
        if gateway.legacy.password {
            machine.push_str(r#"<label class="check"><input type="checkbox" name="grant_types" value="password"> Password (legacy)</label>"#);
        }
        if gateway.legacy.implicit {
            machine.push_str(r#"<label class="check"><input type="checkbox" name="grant_types" value="implicit"> Implicit (legacy)</label>"#);
        }
    }
    let body = format!(
        r#"{alert}<form method="post" action="{BASE}/register-client">
<input type="hidden" name="csrf" value="{csrf}">
<label>Name <input type="text" name="client_name" required placeholder="Studio A controller"></label>
<label>Redirect URIs <span class="muted">(one per line; matched exactly)</span><textarea name="redirect_uris" rows="3" placeholder="https://controller.example.com/callback"></textarea></label>
<fieldset><legend>Grants</legend>
<label class="check"><input type="checkbox" name="grant_types" value="authorization_code" checked> Authorization code with refresh tokens: an application acting for a person</label>
{machine}
</fieldset>
<fieldset><legend>Scope</legend>{scopes}</fieldset>
<label>Client type
<select name="token_endpoint_auth_method">
<option value="client_secret_basic">Confidential: runs on a server and keeps a secret (HTTP Basic)</option>
<option value="client_secret_post">Confidential, sending its secret in the request body</option>
<option value="none">Public: runs in a browser or on a device, uses PKCE, gets no secret</option>
</select></label>
<div class="actions"><button type="submit">Register</button></div>
</form>"#,
        csrf = escape(&session.csrf),
    );
    pages::page(status, "Register a client", &nav_for(user, session), &body)
}

/// GET register-client.
pub async fn register_client_page(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    match signed_in(&gateway, &headers, &format!("{BASE}/register-client")).await {
        Ok((session, user)) => register_form(&gateway, &session, &user, None, StatusCode::OK),
        Err(response) => response,
    }
}

/// POST register-client: RFC 7591 registration on behalf of the signed-in user.
pub async fn register_client(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    let mut params: Vec<pb::FormParam> = Vec::new();
    for (name, value) in &form {
        match name.as_str() {
            "csrf" => {}
            // Checkboxes arrive one per value; the registry reads white-space separated lists.
            "scope" => match params.iter_mut().find(|p| p.name == "scope") {
                Some(p) => {
                    p.value.push(' ');
                    p.value.push_str(value);
                }
                None => params.push(pb::FormParam { name: name.clone(), value: value.clone() }),
            },
            _ if value.is_empty() => {}
            _ => params.push(pb::FormParam { name: name.clone(), value: value.clone() }),
        }
    }
    let request = pb::RegisterClientRequest {
        body: Some(pb::register_client_request::Body::Form(pb::FormBody { params })),
        initial_access_token: String::new(),
        registered_by: Some(web_user(&user)),
    };
    let registered = match gateway.clients.clone().register_client(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let problem = nmos_auth_core::OAuthError::from_status_detail(&status).and_then(|e| e.description);
            return match problem {
                Some(problem) => register_form(&gateway, &session, &user, Some(&problem), StatusCode::BAD_REQUEST),
                None => status_page(&status, &session),
            };
        }
    };
    let Some(client) = registered.client else { return super::internal_error_page("no client in the reply") };
    let secret = if registered.client_secret.is_empty() {
        r#"<p>This is a public client: it has no secret and must use PKCE.</p>"#.to_owned()
    } else {
        format!(
            r#"<div class="alert">Copy the client secret now. It is shown only this once; the server keeps only a digest of it.</div>
<dl><dt>Client secret</dt><dd><code class="secret">{}</code></dd></dl>"#,
            escape(&registered.client_secret)
        )
    };
    let body = format!(
        r#"<p><strong>{name}</strong> is registered.</p>
<dl><dt>Client ID</dt><dd><code>{id}</code></dd></dl>
{secret}
<p><a href="{BASE}/home">Back to your clients</a></p>"#,
        name = escape(&client.client_name),
        id = escape(&client.client_id),
    );
    pages::page(StatusCode::CREATED, "Client registered", &nav_for(&user, &session), &body)
}

/// What deleting a client breaks, for the confirmations on the clients page and the console.
pub(super) const DELETION_CONSEQUENCES: &str = "Its credentials stop working at once: it gets no more tokens and its \
     refresh tokens end. Access tokens it already holds pass an API's signature check until they expire, though \
     introspection reports them inactive at once. The device or service that uses it must register again, as a new \
     client with a new ID. This cannot be undone.";

/// POST delete-client: first a confirmation that says what deleting breaks, then (`confirmed`)
/// the deletion.
pub async fn delete_client(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    let client_id = form_value(&form, "client_id").unwrap_or("").to_owned();
    if form_value(&form, "confirmed") != Some("yes") {
        let client = match own_clients(&gateway, &user).await {
            Ok(clients) => clients.into_iter().find(|c| c.client_id == client_id),
            Err(status) => return status_page(&status, &session),
        };
        let Some(client) = client else {
            return status_page(&tonic::Status::not_found("You have no client with that ID."), &session);
        };
        let body = format!(
            r#"<div class="alert">{DELETION_CONSEQUENCES}</div>
<dl><dt>Name</dt><dd>{name}</dd><dt>Client ID</dt><dd><code>{id}</code></dd></dl>
<form method="post" action="{BASE}/delete-client"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="client_id" value="{id}"><input type="hidden" name="confirmed" value="yes">
<div class="actions"><button class="danger" type="submit">Delete this client</button><a href="{BASE}/home">Cancel</a></div></form>"#,
            name = escape(client_name(&client)),
            id = escape(&client.client_id),
            csrf = escape(&session.csrf),
        );
        return pages::page(StatusCode::OK, "Delete a client?", &nav_for(&user, &session), &body);
    }
    let request = pb::DeleteClientRequest { client_id, requested_by: Some(web_user(&user)) };
    match gateway.clients.clone().delete_client(request).await {
        Ok(_) => found(&format!("{BASE}/home")),
        Err(status) => status_page(&status, &session),
    }
}

fn pending_card(client: &pb::Client, session: &Session) -> String {
    format!(
        r#"<div class="card">
<h2>{name}</h2>
{details}
<form method="post" action="{BASE}/pending"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="client_id" value="{id}">
<div class="actions"><button type="submit" name="decision" value="approve">Approve</button><button class="danger" type="submit" name="decision" value="reject">Reject…</button></div></form>
</div>"#,
        name = escape(client_name(client)),
        details = client_details(client),
        id = escape(&client.client_id),
        csrf = escape(&session.csrf),
    )
}

/// GET pending: administrators see the clients waiting for approval.
pub async fn pending_page(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let (session, user) = or_respond!(signed_in(&gateway, &headers, &format!("{BASE}/pending")).await);
    // The registry decides who may see them (administrators).
    let request = pb::ListClientsRequest { pending: true, requested_by: Some(web_user(&user)), ..Default::default() };
    let clients = match list_clients(&gateway, request).await {
        Ok(clients) => clients,
        Err(status) => return status_page(&status, &session),
    };
    let body = if clients.is_empty() {
        r#"<p class="muted">No client is waiting for approval.</p>"#.to_owned()
    } else {
        let cards: String = clients.iter().map(|c| pending_card(c, &session)).collect();
        format!(
            r#"<p class="muted">These clients registered without an initial access token. They have their credentials but get no tokens until approved; rejecting one deletes it.</p>{cards}"#
        )
    };
    pages::page(StatusCode::OK, "Pending registrations", &nav_for(&user, &session), &body)
}

/// POST pending: approve one client, or ask first whether to reject it (the console's
/// confirmation, whose button rejects it).
pub async fn decide_pending(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    let client_id = form_value(&form, "client_id").unwrap_or("").to_owned();
    let mut clients = gateway.clients.clone();
    let result = match form_value(&form, "decision") {
        Some("approve") => clients
            .approve_client(pb::ApproveClientRequest { client_id, requested_by: Some(web_user(&user)) })
            .await
            .map(|_| ()),
        Some("reject") => return super::console::deletion_page(&gateway, &client_id, true, &user, &session).await,
        _ => Err(tonic::Status::invalid_argument("Choose Approve or Reject.")),
    };
    match result {
        Ok(()) => found(&format!("{BASE}/pending")),
        Err(status) => status_page(&status, &session),
    }
}
