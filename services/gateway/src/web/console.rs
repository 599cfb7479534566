//! The operator's console, for administrators: an overview, every client (searched in the
//! registry a page at a time, with its activity, its details and what can be done to it), the
//! signing keys, and the audit trail. Every page goes through the same service RPCs as
//! `nmos-auth admin`, naming the signed-in administrator, whom the owning service checks and
//! records in its audit events; every change is a POST carrying the session's CSRF token.
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nmos_auth_core::grpc::{self, GrpcChannel};
use nmos_auth_core::{NmosApi, clock, now_unix};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_client::ClientRegistryClient;
use nmos_auth_proto::keys_client::KeysClient;
use nmos_auth_proto::token_issuer_client::TokenIssuerClient;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::{BASE, form, form_value, found, nav_for, signed_in, signed_in_post, status_page, web_user};
use crate::Gateway;
use crate::http::parse_form;
use crate::pages::{self, escape};
use crate::session::Session;

/// Clients on one page of the list.
const PAGE_SIZE: u32 = 50;
/// Events on the audit page (the CSV has more).
const EVENTS_SHOWN: u32 = 200;
/// The most rows of a CSV export (of events from each service; of token summary rows).
const EXPORT_MAX: u32 = 10_000;
/// The window the console counts recent tokens in.
const HOUR: i64 = 3600;

/// The signed-in administrator of a console page; anyone else gets the 403 page.
async fn administrator(gateway: &Gateway, headers: &HeaderMap, here: &str) -> Result<(Session, pb::User), Response> {
    let (session, user) = signed_in(gateway, headers, here).await?;
    if !user.admin {
        return Err(not_an_administrator(&session, &user));
    }
    Ok((session, user))
}

/// The administrator of a console form, its CSRF token checked.
async fn administrator_post(
    gateway: &Gateway,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(Session, pb::User), Response> {
    let (session, user) = signed_in_post(gateway, headers, form).await?;
    if !user.admin {
        return Err(not_an_administrator(&session, &user));
    }
    Ok((session, user))
}

/// The 400 page for a console request that cannot be read.
fn bad_request(user: &pb::User, session: &Session, problem: &str) -> Response {
    pages::error(StatusCode::BAD_REQUEST, "This request cannot be completed", problem, &nav_for(user, session))
}

fn not_an_administrator(session: &Session, user: &pb::User) -> Response {
    let text = "The console is for administrators.";
    pages::error(StatusCode::FORBIDDEN, "Not allowed", text, &nav_for(user, session))
}

/// A page's query string as name/value pairs (an unreadable one is empty).
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.and_then(|q| parse_form(q.as_bytes())).unwrap_or_default()
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// A hidden CSRF field.
fn csrf_field(session: &Session) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, escape(&session.csrf))
}

/// The console's sections, linked at the top of each of its pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Overview,
    Clients,
    Keys,
    Audit,
}

/// A page of the console in `section`, its sections linked at the top.
fn console_page(
    status: StatusCode,
    section: Section,
    title: &str,
    user: &pb::User,
    session: &Session,
    body: &str,
) -> Response {
    let links = [
        (Section::Overview, "admin", "Overview"),
        (Section::Clients, "admin/clients", "Clients"),
        (Section::Keys, "admin/keys", "Signing keys"),
        (Section::Audit, "admin/audit", "Audit"),
    ];
    let tabs: String = links
        .iter()
        .map(|(tab, path, label)| {
            let current = if *tab == section { r#" aria-current="page""# } else { "" };
            format!(r#"<a href="{BASE}/{path}"{current}>{label}</a>"#)
        })
        .collect();
    let body = format!(r#"<nav class="tabs">{tabs}</nav>{body}"#);
    pages::page(status, title, &nav_for(user, session), &body)
}

fn status_name(status: i32) -> &'static str {
    pb::ClientStatus::try_from(status).ok().and_then(pb::ClientStatus::name).unwrap_or("approved")
}

fn status_tag(status: i32) -> String {
    match status_name(status) {
        "approved" => r#"<span class="tag">approved</span>"#.to_owned(),
        other => format!(r#"<span class="tag off">{other}</span>"#),
    }
}

fn kind_name(kind: i32) -> &'static str {
    pb::ClientKind::try_from(kind).ok().and_then(pb::ClientKind::name).unwrap_or("confidential")
}

fn client_link(client_id: &str, label: &str) -> String {
    format!(r#"<a href="{BASE}/admin/clients/{}">{}</a>"#, encode(client_id), escape(label))
}

/// A client's id in a table: its first characters, the whole id on hover, linked to its page.
fn short_client(client_id: &str) -> String {
    let short: String = client_id.chars().take(8).collect();
    let more = if client_id.chars().count() > 8 { "…" } else { "" };
    format!(
        r#"<a href="{BASE}/admin/clients/{}" title="{}"><code>{}{more}</code></a>"#,
        encode(client_id),
        escape(client_id),
        escape(&short)
    )
}

/// A token's subject: the person, or the client itself (client_credentials).
fn subject(row_client: &str, subject: &str) -> String {
    if subject == row_client { r#"<span class="muted">itself</span>"#.to_owned() } else { escape(subject) }
}

/// An administrator's search of the registry.
async fn search(gateway: &Gateway, request: pb::ListClientsRequest) -> Result<pb::ListClientsResponse, tonic::Status> {
    let list = |mut clients: ClientRegistryClient<GrpcChannel>| {
        let request = request.clone();
        async move { clients.list_clients(request).await }
    };
    grpc::idempotent(&gateway.clients, list).await.map(tonic::Response::into_inner)
}

/// When each client last got a token and how many in the last hour, by client id.
async fn activity(
    gateway: &Gateway,
    user: &pb::User,
    client_ids: Vec<String>,
) -> Result<Vec<pb::ClientActivity>, tonic::Status> {
    let request =
        pb::ClientActivityRequest { client_ids, since: now_unix() - HOUR, requested_by: Some(web_user(user)) };
    let ask = |mut issuer: TokenIssuerClient<GrpcChannel>| {
        let request = request.clone();
        async move { issuer.client_activity(request).await }
    };
    grpc::idempotent(&gateway.token_issuer, ask).await.map(|r| r.into_inner().activity)
}

async fn summary(
    gateway: &Gateway,
    request: pb::TokenSummaryRequest,
) -> Result<pb::TokenSummaryResponse, tonic::Status> {
    let ask = |mut issuer: TokenIssuerClient<GrpcChannel>| {
        let request = request.clone();
        async move { issuer.token_summary(request).await }
    };
    grpc::idempotent(&gateway.token_issuer, ask).await.map(tonic::Response::into_inner)
}

async fn list_keys(gateway: &Gateway, user: &pb::User) -> Result<pb::ListKeysResponse, tonic::Status> {
    let request = pb::ListKeysRequest { requested_by: Some(web_user(user)) };
    let ask = |mut keys: KeysClient<GrpcChannel>| {
        let request = request.clone();
        async move { keys.list_keys(request).await }
    };
    grpc::idempotent(&gateway.keys, ask).await.map(tonic::Response::into_inner)
}

/// A card's text when the service behind it did not answer.
fn unavailable(what: &str) -> String {
    format!(r#"<p class="alert">{} cannot be read now: the service is unavailable.</p>"#, escape(what))
}

/// GET admin: the counts that matter, each read on its own so that one service down still
/// shows the rest (and says which is down).
pub async fn overview(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let (session, user) = or_respond!(administrator(&gateway, &headers, &format!("{BASE}/admin")).await);
    let now = now_unix();
    let count = |status: pb::ClientStatus| {
        let request = pb::ListClientsRequest {
            all: true,
            status: status as i32,
            limit: 1,
            requested_by: Some(web_user(&user)),
            ..Default::default()
        };
        let gateway = gateway.clone();
        async move { search(&gateway, request).await.map(|r| r.total) }
    };
    let tokens = pb::TokenSummaryRequest {
        since: now - HOUR,
        limit: 5,
        requested_by: Some(web_user(&user)),
        ..Default::default()
    };
    let checks = async {
        match &gateway.readiness {
            Some(check) => Some(check().await),
            None => None,
        }
    };
    // Failed sign-ins and lock-outs are identity's events; refused token requests are counted,
    // not stored (each gateway's own Prometheus counter, below).
    let sign_ins = pb::ListEventsRequest {
        since: now - HOUR,
        limit: EXPORT_MAX,
        requested_by: Some(web_user(&user)),
        ..Default::default()
    };
    let sign_ins = grpc::idempotent(&gateway.identity, |mut identity| {
        let request = sign_ins.clone();
        async move { identity.list_events(request).await }
    });
    let (approved, pending, disabled, tokens, keys, checks, sign_ins) = tokio::join!(
        count(pb::ClientStatus::Approved),
        count(pb::ClientStatus::Pending),
        count(pb::ClientStatus::Disabled),
        summary(&gateway, tokens),
        list_keys(&gateway, &user),
        checks,
        sign_ins,
    );

    let clients = match (approved, pending, disabled) {
        (Ok(approved), Ok(pending), Ok(disabled)) => {
            let waiting = if pending > 0 {
                format!(r#"<p><a href="{BASE}/admin/clients?status=pending">{pending} waiting for approval</a></p>"#)
            } else {
                r#"<p class="muted">None waiting for approval.</p>"#.to_owned()
            };
            format!(
                r#"<dl><dt>Approved</dt><dd id="clients-approved">{approved}</dd><dt>Pending</dt><dd id="clients-pending">{pending}</dd><dt>Disabled</dt><dd id="clients-disabled">{disabled}</dd></dl>{waiting}"#
            )
        }
        _ => unavailable("The clients"),
    };
    let tokens = match tokens {
        Ok(summary) => {
            let mut busiest = String::new();
            for r in &summary.rows {
                // A handful of rows: each named by the registry (its id if it is gone).
                let name = match get_client(&gateway, &r.client_id).await {
                    Ok(client) => super::clients::client_name(&client).to_owned(),
                    Err(_) => r.client_id.clone(),
                };
                busiest.push_str(&format!(
                    "<li>{} · {} · {}: {}</li>",
                    client_link(&r.client_id, &name),
                    subject(&r.client_id, &r.subject),
                    escape(&r.grant_type),
                    r.issued
                ));
            }
            let busiest = if busiest.is_empty() { String::new() } else { format!("<p>Busiest:</p><ul>{busiest}</ul>") };
            format!(
                r#"<p><strong id="tokens-last-hour">{}</strong> issued in the last hour.</p>{busiest}"#,
                summary.issued
            )
        }
        Err(_) => unavailable("The audit log"),
    };
    let mut errors = nmos_auth_core::metrics::OAUTH_ERRORS.values();
    errors.retain(|(_, n)| *n > 0);
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    let failures = if errors.is_empty() {
        r#"<p class="muted">No OAuth error answered.</p>"#.to_owned()
    } else {
        let items: String = errors
            .iter()
            .map(|(labels, n)| format!("<li><code>{}</code>: {n}</li>", escape(&labels.join(" "))))
            .collect();
        format!("<ul>{items}</ul>")
    };
    let sign_ins = match sign_ins {
        Ok(answer) => {
            let answer = answer.into_inner();
            let count = |event: &str| answer.events.iter().filter(|e| e.event == event).count();
            let over = if answer.more { "+" } else { "" };
            format!(
                r#"<p><strong id="sign-in-failures">{}{over}</strong> failed sign-ins and <strong id="lock-outs">{}{over}</strong> lock-outs in the last hour (<a href="{BASE}/admin/audit">audit</a>).</p>"#,
                count("password_rejected"),
                count("sign_in_locked"),
            )
        }
        Err(_) => unavailable("The sign-ins"),
    };
    let keys = match keys {
        Ok(keys) => {
            let signing = keys.keys.iter().find(|k| k.state == "active");
            let signing = match signing {
                Some(k) => {
                    format!("<code>{}</code>, signing since {}", escape(&k.kid), escape(&clock::utc(k.activate_at)))
                }
                None => r#"<span class="tag off">no key signs</span>"#.to_owned(),
            };
            let next = match keys.next_rotation_at {
                0 => "not scheduled (rotation is off)".to_owned(),
                at => format!("{} ({})", clock::utc(at), clock::until(at, now)),
            };
            format!(
                r#"<dl><dt>Signing</dt><dd>{signing}</dd><dt>Next rotation</dt><dd id="next-rotation">{next}</dd></dl>"#
            )
        }
        Err(_) => unavailable("The signing keys"),
    };
    let services = match checks {
        Some(checks) => {
            let items: String = checks
                .iter()
                .map(|c| {
                    let tag =
                        if c.up { r#"<span class="tag">up</span>"# } else { r#"<span class="tag off">down</span>"# };
                    format!(r#"<li data-service="{}">{} {tag}</li>"#, escape(c.name), escape(c.name))
                })
                .collect();
            format!(r#"<ul class="rights">{items}</ul>"#)
        }
        None => r#"<p class="muted">This gateway does not check its services.</p>"#.to_owned(),
    };
    let body = format!(
        r#"<div class="grid">
<div class="card"><h2>Clients</h2>{clients}</div>
<div class="card"><h2>Tokens</h2>{tokens}</div>
<div class="card"><h2>Signing keys</h2>{keys}</div>
<div class="card"><h2>Services</h2>{services}</div>
<div class="card"><h2>Failures</h2>{sign_ins}<p class="muted">OAuth errors this gateway answered since it started, by error:</p>{failures}</div>
</div>"#
    );
    console_page(StatusCode::OK, Section::Overview, "Overview", &user, &session, &body)
}

/// The client list's filters, from its query string.
struct Filters {
    /// `Unspecified`: any.
    kind: pb::ClientKind,
    status: pb::ClientStatus,
    name: String,
    page: u32,
}

impl Filters {
    fn parse(query: &[(String, String)]) -> Result<Filters, &'static str> {
        let value = |name| query.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str()).trim();
        let kind = match value("kind") {
            "" => pb::ClientKind::Unspecified,
            kind => pb::ClientKind::from_name(kind).ok_or("Unknown kind of client.")?,
        };
        let status = match value("status") {
            "" => pb::ClientStatus::Unspecified,
            status => pb::ClientStatus::from_name(status).ok_or("Unknown client status.")?,
        };
        let name = value("name");
        if name.chars().count() > 200 {
            return Err("The name to search for is too long.");
        }
        let page = match value("page") {
            "" => 1,
            p => p.parse::<u32>().ok().filter(|p| (1..=100_000).contains(p)).ok_or("No such page.")?,
        };
        Ok(Filters { kind, status, name: name.to_owned(), page })
    }

    fn request(&self, user: &pb::User) -> pb::ListClientsRequest {
        pb::ListClientsRequest {
            all: true,
            kind: self.kind as i32,
            status: self.status as i32,
            name: self.name.clone(),
            offset: (self.page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
            requested_by: Some(web_user(user)),
            ..Default::default()
        }
    }

    /// The list's URL with these filters on page `page`.
    fn url(&self, page: u32) -> String {
        let mut url = format!(
            "{BASE}/admin/clients?kind={}&status={}&name={}",
            self.kind.name().unwrap_or(""),
            self.status.name().unwrap_or(""),
            encode(&self.name)
        );
        if page > 1 {
            url.push_str(&format!("&page={page}"));
        }
        url
    }

    fn form(&self) -> String {
        /// A select of `names` ("any" first), `current` selected.
        fn select(field: &str, current: Option<&str>, names: impl Iterator<Item = &'static str>) -> String {
            let options: String = std::iter::once(("", "any"))
                .chain(names.map(|n| (n, n)))
                .map(|(value, label)| {
                    let selected = if value == current.unwrap_or("") { " selected" } else { "" };
                    format!(r#"<option value="{value}"{selected}>{label}</option>"#)
                })
                .collect();
            format!(r#"<select name="{field}" aria-label="{field}">{options}</select>"#)
        }
        format!(
            r#"<form class="filters" method="get" action="{BASE}/admin/clients">
<label class="inline">Kind {kind}</label>
<label class="inline">Status {status}</label>
<label class="inline">Name <input type="search" name="name" value="{name}" maxlength="200"></label>
<button type="submit">Filter</button> <a href="{BASE}/admin/clients">Clear</a>
</form>"#,
            kind = select("kind", self.kind.name(), pb::ClientKind::NAMED.iter().map(|(_, n)| *n)),
            status = select("status", self.status.name(), pb::ClientStatus::NAMED.iter().map(|(_, n)| *n)),
            name = escape(&self.name),
        )
    }
}

/// GET admin/clients: every client, filtered and paged by the registry.
pub async fn clients_page(State(gateway): State<Gateway>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let here = match &query {
        Some(q) => format!("{BASE}/admin/clients?{q}"),
        None => format!("{BASE}/admin/clients"),
    };
    let (session, user) = or_respond!(administrator(&gateway, &headers, &here).await);
    let filters = match Filters::parse(&query_pairs(query.as_deref())) {
        Ok(filters) => filters,
        Err(problem) => {
            return bad_request(&user, &session, problem);
        }
    };
    let found = match search(&gateway, filters.request(&user)).await {
        Ok(found) => found,
        Err(status) => return status_page(&status, &session),
    };
    let ids: Vec<String> = found.clients.iter().map(|c| c.client_id.clone()).collect();
    // The list without the activity columns is still worth showing when the token issuer is down.
    let (activity, accounts) = tokio::join!(activity(&gateway, &user, ids), Accounts::read(&gateway, &user));
    let activity = activity.ok();
    let now = now_unix();
    let rows: String = found
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let seen = activity.as_ref().and_then(|a| a.get(i)).filter(|a| a.client_id == c.client_id);
            let (last, hour) = match seen {
                Some(a) if a.last_issued_at > 0 => (
                    format!(r#"<span title="{}">{}</span>"#, clock::utc(a.last_issued_at), clock::ago(a.last_issued_at, now)),
                    a.issued_since.to_string(),
                ),
                Some(_) => ("never".to_owned(), "0".to_owned()),
                None => ("—".to_owned(), "—".to_owned()),
            };
            let owner = match c.owner.is_empty() {
                true => format!(r#"<span class="muted">{}</span>"#, accounts.owner(c, "registered itself")),
                false => accounts.owner(c, ""),
            };
            format!(
                r#"<tr data-client="{id}"><td>{name}</td><td>{kind}</td><td>{status}</td><td>{owner}</td><td>{registered}</td><td>{last}</td><td class="number">{hour}</td></tr>"#,
                id = escape(&c.client_id),
                name = client_link(&c.client_id, super::clients::client_name(c)),
                kind = kind_name(c.kind),
                status = status_tag(c.status),
                registered = clock::utc(c.client_id_issued_at),
            )
        })
        .collect();
    let first = u64::from((filters.page - 1) * PAGE_SIZE);
    let shown = found.clients.len() as u64;
    let summary = if shown == 0 {
        if found.total == 0 { "No client matches.".to_owned() } else { "No client on this page.".to_owned() }
    } else {
        format!("Clients {}–{} of {}", first + 1, first + shown, found.total)
    };
    let prev = if filters.page > 1 {
        format!(r#"<a rel="prev" href="{}">← Previous</a>"#, escape(&filters.url(filters.page - 1)))
    } else {
        String::new()
    };
    let next = if first + shown < found.total {
        format!(r#"<a rel="next" href="{}">Next →</a>"#, escape(&filters.url(filters.page + 1)))
    } else {
        String::new()
    };
    let notice = if activity.is_none() {
        r#"<p class="alert">When each client last got a token cannot be read now: the token service is unavailable.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"{form}{notice}<p class="muted" id="summary">{summary}</p>
<div class="wide"><table><thead><tr><th>Name</th><th>Kind</th><th>Status</th><th>Owner</th><th>Registered</th><th>Last token</th><th>Tokens (1 h)</th></tr></thead>
<tbody>{rows}</tbody></table></div>
<p class="pager">{prev} {next}</p>"#,
        form = filters.form(),
    );
    console_page(StatusCode::OK, Section::Clients, "Clients", &user, &session, &body)
}

/// What each completed action says on the client's page (a fixed set: nothing a URL carries
/// is shown).
fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "approved" => "Approved: the client gets tokens from now on.",
        "disabled" => "Disabled: the client gets no tokens, and its refresh tokens are revoked.",
        "enabled" => "Enabled: the client gets tokens again.",
        "revoked" => "The client's refresh tokens are revoked.",
        "policy" => "The policy is saved; it applies from the client's next token.",
        "cleared" => "The policy is cleared: the server's defaults apply from the client's next token.",
        _ => return None,
    })
}

fn policy_html(policy: Option<&pb::ClientPolicy>) -> String {
    let Some(p) = policy else { return r#"<p class="muted">The server's defaults.</p>"#.to_owned() };
    let paths: String = p
        .permissions
        .iter()
        .map(|a| {
            format!(
                "<dt>{}</dt><dd>read: {} · write: {}</dd>",
                escape(&a.api),
                escape(&if a.read.is_empty() { "—".to_owned() } else { a.read.join(", ") }),
                escape(&if a.write.is_empty() { "—".to_owned() } else { a.write.join(", ") }),
            )
        })
        .collect();
    let flags = [(p.admin, "may get an administrator's token"), (p.introspect, "may introspect others' tokens")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, text)| *text)
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        r#"<dl><dt>Scope</dt><dd>{}</dd><dt>Audience</dt><dd>{}</dd>{paths}<dt>Also</dt><dd>{}</dd></dl>"#,
        escape(if p.scope.is_empty() { "—" } else { &p.scope }),
        escape(&if p.audience.is_empty() { "the server's default".to_owned() } else { p.audience.join(", ") }),
        if flags.is_empty() { "—".to_owned() } else { escape(&flags) },
    )
}

/// The policy form, filled in with the client's policy.
fn policy_form(client: &pb::Client, scopes: &[String], session: &Session) -> String {
    let policy = client.policy.clone().unwrap_or_default();
    let in_scope: Vec<&str> = policy.scope.split_whitespace().collect();
    let scope_boxes: String = scopes
        .iter()
        .map(|s| {
            let checked = if in_scope.contains(&s.as_str()) { " checked" } else { "" };
            format!(
                r#"<label class="inline"><input type="checkbox" name="scope" value="{s}"{checked}> {s}</label>"#,
                s = escape(s)
            )
        })
        .collect();
    let paths: String = NmosApi::ALL
        .iter()
        .map(|api| {
            let current = policy.permissions.iter().find(|p| p.api == api.as_str());
            let read = current.map(|p| p.read.join(" ")).unwrap_or_default();
            let write = current.map(|p| p.write.join(" ")).unwrap_or_default();
            format!(
                r#"<tr><th>{api}</th><td><input type="text" name="read_{api}" value="{}" aria-label="{api} read paths"></td><td><input type="text" name="write_{api}" value="{}" aria-label="{api} write paths"></td></tr>"#,
                escape(&read),
                escape(&write),
            )
        })
        .collect();
    let check = |on: bool| if on { " checked" } else { "" };
    format!(
        r#"<form method="post" action="{BASE}/admin/clients/{id}">{csrf}
<fieldset><legend>Scope</legend>{scope_boxes}</fieldset>
<fieldset><legend>Paths per API</legend><p class="muted">Space-separated path specifiers, relative to the API version (<code>*</code>, <code>single/senders/*</code>). Empty: the scope's default (every path).</p>
<table><thead><tr><th>API</th><th>Read</th><th>Write</th></tr></thead><tbody>{paths}</tbody></table></fieldset>
<label>Audience <span class="muted">(space-separated host names or wildcard domains; empty: the server's default)</span><input type="text" name="audience" value="{audience}"></label>
<label class="check"><input type="checkbox" name="admin" value="true"{admin}> May get an administrator's token (scope <code>nmos-auth:admin</code>)</label>
<label class="check"><input type="checkbox" name="introspect" value="true"{introspect}> May introspect tokens issued to other clients</label>
<div class="actions"><button type="submit" name="action" value="policy">Save policy</button><button class="secondary" type="submit" name="action" value="clear-policy">Back to the server's defaults</button></div>
</form>"#,
        id = encode(&client.client_id),
        csrf = csrf_field(session),
        audience = escape(&policy.audience.join(" ")),
        admin = check(policy.admin),
        introspect = check(policy.introspect),
    )
}

/// The actions for a client in its state, as buttons of one form.
fn actions_form(client: &pb::Client, session: &Session) -> String {
    let button = |action: &str, label: &str, class: &str| {
        format!(r#"<button class="{class}" type="submit" name="action" value="{action}">{label}</button>"#)
    };
    let mut buttons = Vec::new();
    match status_name(client.status) {
        "pending" => {
            buttons.push(button("approve", "Approve", ""));
            buttons.push(button("confirm-reject", "Reject and delete…", "danger"));
        }
        "disabled" => {
            buttons.push(button("enable", "Enable", ""));
            // Disabling revokes them; should that have failed, here it is again.
            buttons.push(button("revoke-tokens", "Revoke refresh tokens", "secondary"));
        }
        _ => buttons.push(button("disable", "Disable", "secondary")),
    }
    let has_secret = matches!(
        pb::TokenEndpointAuthMethod::try_from(client.token_endpoint_auth_method),
        Ok(pb::TokenEndpointAuthMethod::ClientSecretBasic | pb::TokenEndpointAuthMethod::ClientSecretPost)
    );
    if has_secret {
        buttons.push(button("rotate-secret", "Rotate secret", "secondary"));
    }
    if status_name(client.status) != "pending" {
        buttons.push(button("confirm-delete", "Delete…", "danger"));
    }
    format!(
        r#"<form method="post" action="{BASE}/admin/clients/{id}">{csrf}<div class="actions">{buttons}</div></form>
<p class="muted">Disabling stops new tokens at once and revokes the client's refresh tokens; access tokens it holds expire on their own. Rotating the secret stops the old one at once. Deleting cannot be undone.</p>"#,
        id = encode(&client.client_id),
        csrf = csrf_field(session),
        buttons = buttons.join(""),
    )
}

/// The owner of a client no user registered, on a client's page.
const REGISTERED_ITSELF: &str = "— registered itself";

/// The accounts there are now, by name, with when each was created; `None` when the identity
/// service cannot be asked, and the owner is then shown by name alone.
struct Accounts(Option<std::collections::HashMap<String, i64>>);

impl Accounts {
    async fn read(gateway: &Gateway, user: &pb::User) -> Accounts {
        let users = super::users::list_users(gateway, user).await.ok();
        Accounts(users.map(|users| users.into_iter().map(|u| (u.username, u.created_at)).collect()))
    }

    /// Who registered `client`, as HTML: `itself` when no user did, and how. A client
    /// registered by an account since deleted says so, even once another account has that name,
    /// for it is not the new account's (the registry gives it to no one).
    fn owner(&self, client: &pb::Client, itself: &str) -> String {
        if client.owner.is_empty() {
            let how = match client.registered_how() {
                pb::Registration::Token => " with an initial access token",
                pb::Registration::Approval => " for approval",
                pb::Registration::Open => r#" <span class="tag off">openly, vouched for by no one</span>"#,
                pb::Registration::Page | pb::Registration::Unspecified => "",
            };
            return format!("{itself}{how}");
        }
        let name = escape(&client.owner);
        match &self.0 {
            Some(accounts) => match accounts.get(&client.owner) {
                Some(&created) if nmos_auth_core::done_by_account(created, client.client_id_issued_at) => name,
                _ => format!(r#"{name} <span class="tag off">account deleted</span>"#),
            },
            None => name,
        }
    }
}

async fn get_client(gateway: &Gateway, client_id: &str) -> Result<pb::Client, tonic::Status> {
    let get = |mut clients: ClientRegistryClient<GrpcChannel>| {
        let client_id = client_id.to_owned();
        async move { clients.get_client(pb::GetClientRequest { client_id }).await }
    };
    grpc::idempotent(&gateway.clients, get).await.map(tonic::Response::into_inner)
}

/// GET admin/clients/{client_id}: one client, its activity, and what can be done to it.
pub async fn client_page(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let here = format!("{BASE}/admin/clients/{}", encode(&client_id));
    let (session, user) = or_respond!(administrator(&gateway, &headers, &here).await);
    let client = match get_client(&gateway, &client_id).await {
        Ok(client) => client,
        Err(status) => return status_page(&status, &session),
    };
    let now = now_unix();
    let (activity, accounts) =
        tokio::join!(activity(&gateway, &user, vec![client.client_id.clone()]), Accounts::read(&gateway, &user));
    let seen = match activity {
        Ok(a) => match a.first() {
            Some(a) if a.last_issued_at > 0 => format!(
                "{} ({}); {} in the last hour",
                clock::utc(a.last_issued_at),
                clock::ago(a.last_issued_at, now),
                a.issued_since
            ),
            _ => "never (in the audit log's retention)".to_owned(),
        },
        Err(_) => "cannot be read now (the token service is unavailable)".to_owned(),
    };
    let query = query_pairs(query.as_deref());
    let notice = form_value(&query, "done")
        .and_then(done_message)
        .map(|m| format!(r#"<p class="notice">{m}</p>"#))
        .unwrap_or_default();
    let owner = accounts.owner(&client, REGISTERED_ITSELF);
    let software = [client.software_id.as_str(), client.software_version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let body = format!(
        r#"{notice}<p>{status} <span class="tag">{kind}</span></p>
{details}
<dl>
<dt>Owner</dt><dd>{owner}</dd>
<dt>Registered</dt><dd>{registered}</dd>
<dt>Last token</dt><dd id="last-token">{seen}</dd>
<dt>Software</dt><dd>{software}</dd>
<dt>Contacts</dt><dd>{contacts}</dd>
</dl>
<h2>Actions</h2>
{actions}
<h2>Policy</h2>
{policy}
<details><summary>Edit the policy</summary>{policy_form}</details>
<p><a href="{BASE}/admin/audit?client={id}">This client's tokens in the audit trail</a> · <a href="{BASE}/admin/clients">All clients</a></p>"#,
        status = status_tag(client.status),
        kind = kind_name(client.kind),
        details = super::clients::client_details(&client),
        registered = clock::utc(client.client_id_issued_at),
        software = if software.is_empty() { "—".to_owned() } else { escape(&software) },
        contacts = if client.contacts.is_empty() { "—".to_owned() } else { escape(&client.contacts.join(", ")) },
        actions = actions_form(&client, &session),
        policy = policy_html(client.policy.as_ref()),
        policy_form = policy_form(&client, &gateway.scopes, &session),
        id = encode(&client.client_id),
    );
    console_page(StatusCode::OK, Section::Clients, super::clients::client_name(&client), &user, &session, &body)
}

/// Space- or comma-separated values of a form field.
fn list_field(form: &[(String, String)], name: &str) -> Vec<String> {
    form_value(form, name)
        .unwrap_or("")
        .split([' ', ',', '\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The policy the form describes; `None` when it grants nothing (the server's defaults).
fn policy_of(form: &[(String, String)]) -> Option<pb::ClientPolicy> {
    let scope: Vec<&str> = form.iter().filter(|(n, _)| n == "scope").map(|(_, v)| v.as_str()).collect();
    let permissions: Vec<pb::ApiPermission> = NmosApi::ALL
        .iter()
        .map(|api| pb::ApiPermission {
            api: api.as_str().to_owned(),
            read: list_field(form, &format!("read_{api}")),
            write: list_field(form, &format!("write_{api}")),
        })
        .filter(|p| !p.read.is_empty() || !p.write.is_empty())
        .collect();
    let policy = pb::ClientPolicy {
        scope: scope.join(" "),
        permissions,
        audience: list_field(form, "audience"),
        admin: form_value(form, "admin") == Some("true"),
        introspect: form_value(form, "introspect") == Some("true"),
    };
    (!policy.scope.is_empty() || policy.admin || policy.introspect || !policy.permissions.is_empty()).then_some(policy)
}

/// POST admin/clients/{client_id}: approve, reject, disable, enable, revoke its refresh tokens,
/// rotate the secret, delete, or set the policy.
pub async fn client_action(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(administrator_post(&gateway, &headers, &form).await);
    let me = Some(web_user(&user));
    let back = |done: &str| found(&format!("{BASE}/admin/clients/{}?done={done}", encode(&client_id)));
    let mut clients = gateway.clients.clone();
    let id = client_id.clone();
    let result = match form_value(&form, "action") {
        Some("approve") => clients
            .approve_client(pb::ApproveClientRequest { client_id: id, requested_by: me })
            .await
            .map(|_| back("approved")),
        Some("reject") => clients
            .reject_client(pb::RejectClientRequest { client_id: id, requested_by: me })
            .await
            .map(|_| found(&format!("{BASE}/admin/clients"))),
        Some(action @ ("confirm-delete" | "confirm-reject")) => {
            return deletion_page(&gateway, &client_id, action == "confirm-reject", &user, &session).await;
        }
        Some("delete") => clients
            .delete_client(pb::DeleteClientRequest { client_id: id, requested_by: me })
            .await
            .map(|_| found(&format!("{BASE}/admin/clients"))),
        Some("enable") => clients
            .set_client_disabled(pb::SetClientDisabledRequest { client_id: id, disabled: false, requested_by: me })
            .await
            .map(|_| back("enabled")),
        Some("disable") => {
            let request =
                pb::SetClientDisabledRequest { client_id: id.clone(), disabled: true, requested_by: me.clone() };
            match clients.set_client_disabled(request).await {
                // Disabled first, so that no refresh can slip in between; then its families end.
                Ok(_) => {
                    let revoke = pb::RevokeClientTokensRequest { client_id: id, requested_by: me };
                    match gateway.token_issuer.clone().revoke_client_tokens(revoke).await {
                        Ok(_) => Ok(back("disabled")),
                        Err(status) => {
                            tracing::warn!(
                                error = status.message(),
                                "a client was disabled, but its refresh tokens were not revoked"
                            );
                            let text = "The client is disabled and gets no tokens, but its refresh tokens could not be \
                                        revoked now. When the token service answers again, use Revoke refresh tokens on \
                                        the client's page.";
                            let nav = nav_for(&user, &session);
                            return pages::error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "Disabled; refresh tokens not revoked",
                                text,
                                &nav,
                            );
                        }
                    }
                }
                Err(status) => Err(status),
            }
        }
        Some("revoke-tokens") => {
            let revoke = pb::RevokeClientTokensRequest { client_id: id, requested_by: me };
            gateway.token_issuer.clone().revoke_client_tokens(revoke).await.map(|_| back("revoked"))
        }
        Some("rotate-secret") => {
            let request = pb::RotateClientSecretRequest { client_id: id, requested_by: me };
            match clients.rotate_client_secret(request).await {
                Ok(rotated) => return secret_page(&rotated.into_inner(), &user, &session),
                Err(status) => Err(status),
            }
        }
        Some(action @ ("policy" | "clear-policy")) => {
            let policy = if action == "policy" { policy_of(&form) } else { None };
            let done = if policy.is_some() { "policy" } else { "cleared" };
            let request = pb::SetClientPolicyRequest { client_id: id, policy, requested_by: me };
            clients.set_client_policy(request).await.map(|_| back(done))
        }
        _ => Err(tonic::Status::invalid_argument("Unknown action.")),
    };
    match result {
        Ok(response) => response,
        Err(status) => status_page(&status, &session),
    }
}

/// What deleting (or rejecting) a client breaks, and the button that does it. The pending page's
/// Reject leads here too.
pub(super) async fn deletion_page(
    gateway: &Gateway,
    client_id: &str,
    reject: bool,
    user: &pb::User,
    session: &Session,
) -> Response {
    if !user.admin {
        return not_an_administrator(session, user);
    }
    let (client, accounts) = tokio::join!(get_client(gateway, client_id), Accounts::read(gateway, user));
    let client = match client {
        Ok(client) => client,
        Err(status) => return status_page(&status, session),
    };
    let (title, consequences, action, label) = if reject {
        (
            "Reject a client?",
            "The client registered without an initial access token and has had no token yet. Rejecting deletes it: its \
             credentials never work, and the device or service that registered it must register again to be considered.",
            "reject",
            "Reject and delete this client",
        )
    } else {
        ("Delete a client?", super::clients::DELETION_CONSEQUENCES, "delete", "Delete this client")
    };
    let body = format!(
        r#"<div class="alert">{consequences}</div>
<dl><dt>Name</dt><dd>{name}</dd><dt>Client ID</dt><dd><code>{id_text}</code></dd><dt>Owner</dt><dd>{owner}</dd></dl>
<form method="post" action="{BASE}/admin/clients/{id_url}">{csrf}
<div class="actions"><button class="danger" type="submit" name="action" value="{action}">{label}</button><a href="{BASE}/admin/clients/{id_url}">Cancel</a></div></form>"#,
        name = escape(super::clients::client_name(&client)),
        id_text = escape(&client.client_id),
        id_url = encode(&client.client_id),
        owner = accounts.owner(&client, REGISTERED_ITSELF),
        csrf = csrf_field(session),
    );
    console_page(StatusCode::OK, Section::Clients, title, user, session, &body)
}

/// The new secret, shown this once.
fn secret_page(rotated: &pb::RegisterClientResponse, user: &pb::User, session: &Session) -> Response {
    let (id, name) = rotated
        .client
        .as_ref()
        .map(|c| (c.client_id.clone(), super::clients::client_name(c).to_owned()))
        .unwrap_or_default();
    let body = format!(
        r#"<p><strong>{name}</strong> has a new secret; the old one no longer works. Give this one to the device or service that uses the client.</p>
<div class="alert">Copy the client secret now. It is shown only this once; the server keeps only a digest of it.</div>
<dl><dt>Client ID</dt><dd><code>{id_text}</code></dd><dt>Client secret</dt><dd><code class="secret">{secret}</code></dd></dl>
<p><a href="{BASE}/admin/clients/{id_url}">Back to the client</a></p>"#,
        name = escape(&name),
        id_text = escape(&id),
        id_url = encode(&id),
        secret = escape(&rotated.client_secret),
    );
    console_page(StatusCode::OK, Section::Clients, "New client secret", user, session, &body)
}

fn key_state_tag(state: &str) -> String {
    match state {
        "active" => r#"<span class="tag">signing</span>"#.to_owned(),
        "next" => r#"<span class="tag">next</span>"#.to_owned(),
        "retired" => r#"<span class="tag">retired</span>"#.to_owned(),
        other => format!(r#"<span class="tag off">{}</span>"#, escape(other)),
    }
}

/// GET admin/keys: the signing keys and when the next one signs.
pub async fn keys_page(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let (session, user) = or_respond!(administrator(&gateway, &headers, &format!("{BASE}/admin/keys")).await);
    let keys = match list_keys(&gateway, &user).await {
        Ok(keys) => keys,
        Err(status) => return status_page(&status, &session),
    };
    let now = now_unix();
    let rows: String = keys
        .keys
        .iter()
        .rev()
        .map(|k| {
            let until = match (k.remove_at, k.state.as_str()) {
                (_, "removed") => "no longer published".to_owned(),
                (0, _) => "while it signs, then for the tokens it signed".to_owned(),
                (at, _) => clock::utc(at),
            };
            let remove = if k.state == "removed" {
                String::new()
            } else {
                format!(
                    r#"<form method="post" action="{BASE}/admin/keys">{csrf}<input type="hidden" name="kid" value="{kid}"><button class="danger" type="submit" name="action" value="confirm-remove">Remove…</button></form>"#,
                    csrf = csrf_field(&session),
                    kid = escape(&k.kid),
                )
            };
            format!(
                r#"<tr data-kid="{kid}"><td><code>{kid}</code></td><td>{state}</td><td class="number">{generation}</td><td>{from}</td><td>{until}</td><td class="buttons">{remove}</td></tr>"#,
                kid = escape(&k.kid),
                state = key_state_tag(&k.state),
                generation = k.generation,
                from = clock::utc(k.activate_at),
            )
        })
        .collect();
    let next = match keys.next_rotation_at {
        0 => "Keys are not rotated on a schedule.".to_owned(),
        at => format!("The next key signs from {} ({}).", clock::utc(at), clock::until(at, now)),
    };
    let body = format!(
        r#"<p id="next-rotation">{next}</p>
<div class="wide"><table><thead><tr><th>Key ID</th><th>State</th><th>Generation</th><th>Signs from</th><th>Published until</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>
<h2>Rotate now</h2>
<p class="muted">Plans the next key at once: it is published now and signs after the publish lead, so that every resource server has it before the first token it signs. If a key is planned already, that one stays.</p>
<form method="post" action="{BASE}/admin/keys">{csrf}<button type="submit" name="action" value="rotate">Rotate now</button></form>"#,
        csrf = csrf_field(&session),
    );
    console_page(StatusCode::OK, Section::Keys, "Signing keys", &user, &session, &body)
}

/// What removing a key in `state` breaks, for the confirmation.
fn removal_consequences(state: &str) -> &'static str {
    match state {
        "active" => {
            "This key signs tokens now. Removing it takes it out of the JWKS at once and a new key signs from now on: every token it signed stops verifying as soon as each resource server fetches the JWKS again, so every Node, Registry and controller needs a new token. Tokens are refused (503) for the moment the new key takes to make."
        }
        "next" => {
            "This key does not sign yet. Removing it stops it being published; the schedule plans another in its place."
        }
        _ => {
            "This key no longer signs. Removing it takes it out of the JWKS at once: tokens it signed that have not expired yet stop verifying."
        }
    }
}

/// POST admin/keys: rotate now, or remove a key (after a confirmation that says what it breaks).
pub async fn keys_action(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(administrator_post(&gateway, &headers, &form).await);
    let kid = form_value(&form, "kid").unwrap_or("").to_owned();
    let mut keys = gateway.keys.clone();
    let result = match form_value(&form, "action") {
        Some("rotate") => {
            keys.rotate_key(pb::RotateKeyRequest { requested_by: Some(web_user(&user)) }).await.map(|_| ())
        }
        Some("confirm-remove") => {
            let listed = match list_keys(&gateway, &user).await {
                Ok(listed) => listed,
                Err(status) => return status_page(&status, &session),
            };
            let Some(key) = listed.keys.iter().find(|k| k.kid == kid && k.state != "removed") else {
                return status_page(&tonic::Status::not_found("No such signing key to remove."), &session);
            };
            let body = format!(
                r#"<div class="alert">{consequences}</div>
<p>Remove only a key that is compromised (its private key seen by someone who should not have it).</p>
<dl><dt>Key ID</dt><dd><code>{kid}</code></dd><dt>State</dt><dd>{state}</dd><dt>Generation</dt><dd>{generation}</dd></dl>
<form method="post" action="{BASE}/admin/keys">{csrf}<input type="hidden" name="kid" value="{kid}">
<div class="actions"><button class="danger" type="submit" name="action" value="remove">Remove this key</button><a href="{BASE}/admin/keys">Cancel</a></div></form>"#,
                consequences = removal_consequences(&key.state),
                kid = escape(&key.kid),
                state = key_state_tag(&key.state),
                generation = key.generation,
                csrf = csrf_field(&session),
            );
            return console_page(StatusCode::OK, Section::Keys, "Remove a signing key?", &user, &session, &body);
        }
        Some("remove") => {
            keys.remove_key(pb::RemoveKeyRequest { kid, requested_by: Some(web_user(&user)) }).await.map(|_| ())
        }
        _ => Err(tonic::Status::invalid_argument("Unknown action.")),
    };
    match result {
        Ok(()) => found(&format!("{BASE}/admin/keys")),
        Err(status) => status_page(&status, &session),
    }
}

/// The audit page's window and filters, from its query string.
struct AuditQuery {
    since: i64,
    until: i64,
    client: String,
    user: String,
}

impl AuditQuery {
    /// The last 24 hours unless the query says otherwise.
    fn parse(query: &[(String, String)], now: i64) -> Result<AuditQuery, &'static str> {
        let value = |name| query.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str()).trim();
        let time = |name, default| match value(name) {
            "" => Ok(default),
            v => clock::parse_input(v).ok_or("Times are written as 2026-12-01T09:30 (UTC)."),
        };
        // Whole minutes, as the inputs show them; the default window ends after this minute.
        let until = time("until", (now / 60 + 1) * 60)?;
        let since = time("since", until - 86_400)?;
        if until <= since {
            return Err("The window must end after it starts.");
        }
        let client = value("client");
        let user = value("user");
        if client.len() > 200 || user.len() > 200 {
            return Err("A client or user to search for is too long.");
        }
        Ok(AuditQuery { since, until, client: client.to_owned(), user: user.to_owned() })
    }

    fn query_string(&self) -> String {
        format!(
            "since={}&until={}&client={}&user={}",
            encode(&clock::input_value(self.since)),
            encode(&clock::input_value(self.until)),
            encode(&self.client),
            encode(&self.user)
        )
    }
}

/// The token summary of an audit query; `limit` rows at most.
async fn audit_summary(
    gateway: &Gateway,
    user: &pb::User,
    q: &AuditQuery,
    limit: u32,
) -> Result<pb::TokenSummaryResponse, tonic::Status> {
    let request = pb::TokenSummaryRequest {
        since: q.since,
        until: q.until,
        client_id: q.client.clone(),
        subject: q.user.clone(),
        limit,
        requested_by: Some(web_user(user)),
    };
    summary(gateway, request).await
}

/// The events of every service that a query selects, merged, the newest first (`limit` at most
/// from each); whether any service had more; and the services that could not be asked.
async fn audit_events(
    gateway: &Gateway,
    user: &pb::User,
    q: &AuditQuery,
    limit: u32,
) -> (Vec<pb::AuditEvent>, bool, Vec<&'static str>) {
    let request = pb::ListEventsRequest {
        since: q.since,
        until: q.until,
        client_id: q.client.clone(),
        username: q.user.clone(),
        limit,
        requested_by: Some(web_user(user)),
    };
    let identity = grpc::idempotent(&gateway.identity, |mut c| {
        let request = request.clone();
        async move { c.list_events(request).await }
    });
    let clients = grpc::idempotent(&gateway.clients, |mut c| {
        let request = request.clone();
        async move { c.list_events(request).await }
    });
    let keys = grpc::idempotent(&gateway.keys, |mut c| {
        let request = request.clone();
        async move { c.list_events(request).await }
    });
    let tokens = grpc::idempotent(&gateway.token_issuer, |mut c| {
        let request = request.clone();
        async move { c.list_events(request).await }
    });
    let (identity, clients, keys, tokens) = tokio::join!(identity, clients, keys, tokens);
    let mut events = Vec::new();
    let mut more = false;
    let mut failed = Vec::new();
    for (service, answer) in
        [("identity", identity), ("client registry", clients), ("keys", keys), ("token issuer", tokens)]
    {
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                more |= answer.more;
                events.extend(answer.events);
            }
            Err(status) => {
                tracing::debug!(service, error = %status.message(), "the audit page could not read a service's events");
                failed.push(service);
            }
        }
    }
    // Newest first; what one service returned is ordered already, so a stable sort keeps it.
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    (events, more, failed)
}

/// An audit request's administrator, window and filters, and its query's pairs; or the page
/// that answers it (sign in, 403, 400).
async fn audit_request(
    gateway: &Gateway,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Session, pb::User, AuditQuery, Vec<(String, String)>), Response> {
    let here = match query {
        Some(q) => format!("{BASE}/admin/audit?{q}"),
        None => format!("{BASE}/admin/audit"),
    };
    let (session, user) = administrator(gateway, headers, &here).await?;
    let pairs = query_pairs(query);
    match AuditQuery::parse(&pairs, now_unix()) {
        Ok(q) => Ok((session, user, q, pairs)),
        Err(problem) => Err(bad_request(&user, &session, problem)),
    }
}

/// GET admin/audit: the events of every service in a window, and the tokens issued in it
/// summarised per client, subject and grant.
pub async fn audit_page(State(gateway): State<Gateway>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (session, user, q, _) = or_respond!(audit_request(&gateway, &headers, query.as_deref()).await);
    let (tokens, (mut events, mut more_events, failed)) =
        tokio::join!(audit_summary(&gateway, &user, &q, 200), audit_events(&gateway, &user, &q, EVENTS_SHOWN));
    more_events |= events.len() > EVENTS_SHOWN as usize;
    events.truncate(EVENTS_SHOWN as usize);
    let tokens = match tokens {
        Ok(tokens) => tokens,
        Err(status) => return status_page(&status, &session),
    };
    let event_rows: String = events
        .iter()
        .map(|e| {
            let client = if e.client_id.is_empty() { String::new() } else { short_client(&e.client_id) };
            let class = if matches!(e.event.as_str(), "password_rejected" | "sign_in_locked" | "setup_code_refused" | "signing_key_removed") {
                r#" class="warn""#
            } else {
                ""
            };
            format!(
                r#"<tr{class}><td class="time">{at}</td><td><code>{event}</code></td><td>{actor}</td><td>{client}</td><td>{user}</td><td>{address}</td><td>{detail}</td><td class="muted">{service}</td></tr>"#,
                at = clock::utc(e.at),
                event = escape(&e.event),
                actor = escape(&e.actor),
                user = escape(&e.username),
                address = escape(&e.address),
                detail = escape(&e.detail),
                service = escape(&e.service),
            )
        })
        .collect();
    let unavailable = if failed.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p class="alert">The events of the {} cannot be read now: the service is unavailable.</p>"#,
            failed.join(", ")
        )
    };
    let events_table = if event_rows.is_empty() {
        r#"<p class="muted">No event in this window.</p>"#.to_owned()
    } else {
        format!(
            r#"<div class="wide"><table id="events"><thead><tr><th>Time</th><th>Event</th><th>By</th><th>Client</th><th>User</th><th>Address</th><th>Detail</th><th>Service</th></tr></thead><tbody>{event_rows}</tbody></table></div>"#
        )
    };
    let more_events = if more_events {
        format!(
            " The newest {EVENTS_SHOWN} are shown: narrow the window, or download them (up to {EXPORT_MAX} from each service)."
        )
    } else {
        String::new()
    };
    let rows: String = tokens
        .rows
        .iter()
        .map(|r| {
            format!(
                r#"<tr><td>{client}</td><td>{subject}</td><td>{grant}</td><td class="number">{issued}</td><td class="time">{first}</td><td class="time">{last}</td></tr>"#,
                client = short_client(&r.client_id),
                subject = subject(&r.client_id, &r.subject),
                grant = escape(&r.grant_type),
                issued = r.issued,
                first = clock::utc(r.first_at),
                last = clock::utc(r.last_at),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        r#"<p class="muted">No token was issued in this window.</p>"#.to_owned()
    } else {
        format!(
            r#"<div class="wide"><table><thead><tr><th>Client</th><th>Subject</th><th>Grant</th><th>Tokens</th><th>First</th><th>Last</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let shown = tokens.rows.len();
    let more = if shown == 200 { " (the 200 busiest rows are shown; the CSV has up to 1,000)" } else { "" };
    let body = format!(
        r#"<form class="filters" method="get" action="{BASE}/admin/audit">
<label class="inline">From (UTC) <input type="datetime-local" name="since" value="{since}"></label>
<label class="inline">Until (UTC) <input type="datetime-local" name="until" value="{until}"></label>
<label class="inline">Client ID <input type="text" name="client" value="{client}"></label>
<label class="inline">User <input type="text" name="user" value="{user_filter}"></label>
<button type="submit">Show</button> <a href="{BASE}/admin/audit">Last 24 hours</a>
</form>
<h2>Events</h2>
{unavailable}<p class="muted">Registrations, approvals, changes with who made them, sign-ins and their failures, lock-outs.{more_events} <a href="{BASE}/admin/audit.csv?part=events&amp;{query}" download>Download as CSV</a></p>
{events_table}
<h2>Tokens issued</h2>
<p id="tokens-issued"><strong>{issued}</strong> tokens from {since_text} until {until_text}{more}. <a href="{BASE}/admin/audit.csv?part=tokens&amp;{query}" download>Download as CSV</a></p>
{table}"#,
        since = clock::input_value(q.since),
        until = clock::input_value(q.until),
        client = escape(&q.client),
        user_filter = escape(&q.user),
        issued = tokens.issued,
        since_text = clock::utc(q.since),
        until_text = clock::utc(q.until),
        query = escape(&q.query_string()),
    );
    console_page(StatusCode::OK, Section::Audit, "Audit", &user, &session, &body)
}

/// A CSV field (RFC 4180): quoted when it needs to be, and never read by a spreadsheet as a
/// formula (OWASP's CSV injection advice: a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`).
fn csv_field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

/// The answer for an export over [`EXPORT_MAX`] rows.
fn too_much(user: &pb::User, session: &Session) -> Response {
    let text = format!(
        "This window holds more than {EXPORT_MAX} rows: narrow it (or choose a client or a user) and download again."
    );
    pages::error(StatusCode::BAD_REQUEST, "Too much for one file", &text, &nav_for(user, session))
}

/// GET admin/audit.csv: the audit page's events (`part=events`) or token summary
/// (`part=tokens`) as a file.
pub async fn audit_csv(State(gateway): State<Gateway>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (session, user, q, pairs) = or_respond!(audit_request(&gateway, &headers, query.as_deref()).await);
    let part = form_value(&pairs, "part").unwrap_or("tokens");
    let mut csv = String::new();
    let mut line = |fields: &[String]| {
        csv.push_str(&fields.join(","));
        csv.push_str("\r\n");
    };
    match part {
        "tokens" => {
            let tokens = match audit_summary(&gateway, &user, &q, EXPORT_MAX).await {
                Ok(tokens) => tokens,
                Err(status) => return status_page(&status, &session),
            };
            // A file is complete or not made: a cut-off audit export would mislead.
            if tokens.rows.len() >= EXPORT_MAX as usize {
                return too_much(&user, &session);
            }
            line(&["client_id", "subject", "grant_type", "tokens", "first", "last"].map(String::from));
            for r in &tokens.rows {
                line(&[
                    csv_field(&r.client_id),
                    csv_field(&r.subject),
                    csv_field(&r.grant_type),
                    r.issued.to_string(),
                    clock::rfc3339(r.first_at),
                    clock::rfc3339(r.last_at),
                ]);
            }
        }
        "events" => {
            let (events, more, failed) = audit_events(&gateway, &user, &q, EXPORT_MAX).await;
            if more {
                return too_much(&user, &session);
            }
            if !failed.is_empty() {
                let text =
                    format!("The events of the {} cannot be read now: try again in a moment.", failed.join(", "));
                return pages::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    &text,
                    &nav_for(&user, &session),
                );
            }
            line(&["time", "event", "by", "client_id", "username", "address", "detail", "service"].map(String::from));
            for e in &events {
                line(&[
                    clock::rfc3339(e.at),
                    csv_field(&e.event),
                    csv_field(&e.actor),
                    csv_field(&e.client_id),
                    csv_field(&e.username),
                    csv_field(&e.address),
                    csv_field(&e.detail),
                    csv_field(&e.service),
                ]);
            }
        }
        _ => {
            let text = "Choose part=tokens or part=events.";
            return bad_request(&user, &session, text);
        }
    }
    let name = format!("nmos-auth-{part}-{}.csv", clock::input_value(q.since).replace(':', ""));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        csv,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn policy_forms_read_as_the_cli_writes_them() {
        let form: Vec<(String, String)> = [
            ("scope", "connection"),
            ("scope", "registration"),
            ("read_connection", "*"),
            ("write_connection", "single/senders/* single/receivers/*"),
            ("read_query", ""),
            ("audience", "*.studio-a.example, ctrl.example"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let policy = policy_of(&form).unwrap();
        assert_eq!(policy.scope, "connection registration");
        assert_eq!(policy.permissions.len(), 1);
        assert_eq!(policy.permissions[0].write, ["single/senders/*", "single/receivers/*"]);
        assert_eq!(policy.audience, ["*.studio-a.example", "ctrl.example"]);
        assert!(!policy.admin);
        assert_eq!(policy_of(&[]), None, "nothing granted: the server's defaults");
    }

    #[test]
    fn filters_refuse_what_they_do_not_know() {
        let q = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            Filters::parse(&pairs)
        };
        assert!(q(&[("kind", "robot")]).is_err());
        assert!(q(&[("status", "gone")]).is_err());
        assert!(q(&[("page", "0")]).is_err());
        assert!(q(&[("page", "x")]).is_err());
        let f = q(&[("kind", "machine"), ("name", "Node 1&2"), ("page", "3")]).unwrap();
        let request = f.request(&pb::User::default());
        assert_eq!((request.offset, request.limit), (100, PAGE_SIZE));
        assert_eq!(f.url(4), format!("{BASE}/admin/clients?kind=machine&status=&name=Node%201%262&page=4"));
    }
}
