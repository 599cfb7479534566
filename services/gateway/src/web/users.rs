//! The users page, for administrators: add users, set each user's access per NMOS API,
//! sign them out everywhere, disable, enable or delete them (after a page that says what
//! deleting breaks). Password hashes are never shown.
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use nmos_auth_core::grpc;
use nmos_auth_proto as pb;

use super::{BASE, form, form_value, found, nav_for, signed_in, signed_in_post, status_page};
use crate::Gateway;
use crate::pages::{self, escape};
use crate::session::Session;

const LEVELS: [(pb::Access, &str); 3] =
    [(pb::Access::None, "none"), (pb::Access::Read, "read"), (pb::Access::Write, "write")];

fn level_select(name: &str, current: i32, form: Option<&str>) -> String {
    let options: String = LEVELS
        .iter()
        .map(|(access, label)| {
            let selected = if *access as i32 == current { " selected" } else { "" };
            format!(r#"<option value="{label}"{selected}>{label}</option>"#)
        })
        .collect();
    let form = form.map(|f| format!(r#" form="{}""#, escape(f))).unwrap_or_default();
    format!(r#"<select name="{}"{form} aria-label="{}">{options}</select>"#, escape(name), escape(name))
}

fn user_row(index: usize, user: &pb::User, me: &str, session: &Session) -> String {
    // Table rows cannot hold forms: the controls name their form instead.
    let form_id = format!("user-{index}");
    let selects: String = user
        .rights
        .iter()
        .map(|r| format!(r#"<td>{}</td>"#, level_select(&format!("right_{}", r.api), r.access, Some(&form_id))))
        .collect();
    let status = match (user.admin, user.disabled) {
        (_, true) => r#"<span class="tag off">disabled</span>"#,
        (true, false) => r#"<span class="tag">admin</span>"#,
        _ => "",
    };
    let csrf = escape(&session.csrf);
    let name = escape(&user.username);
    let form_attr = format!(r#"form="{form_id}""#);
    // Administrators cannot lock themselves out.
    let sign_out = format!(
        r#"<button {form_attr} class="secondary" name="action" value="signout" type="submit">Sign out everywhere</button>"#
    );
    let account_buttons = if user.username == me {
        format!(r#"{sign_out} <span class="muted">you</span>"#)
    } else {
        let (action, label) = if user.disabled { ("enable", "Enable") } else { ("disable", "Disable") };
        format!(
            r#"{sign_out} <button {form_attr} class="secondary" name="action" value="{action}" type="submit">{label}</button> <button {form_attr} class="danger" name="action" value="confirm-delete" type="submit">Delete…</button>"#
        )
    };
    format!(
        r#"<tr><th>{name} {status}<form id="{form_id}" method="post" action="{BASE}/users/change"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="username" value="{name}"></form></th>{selects}
<td class="buttons"><button {form_attr} name="action" value="rights" type="submit">Save</button> {account_buttons}</td></tr>"#
    )
}

fn users_html(users: &[pb::User], me: &str, session: &Session) -> String {
    let apis: String = users
        .first()
        .map(|u| u.rights.iter().map(|r| format!("<th>{}</th>", escape(&r.api))).collect())
        .unwrap_or_default();
    let rows: String = users.iter().enumerate().map(|(i, u)| user_row(i, u, me, session)).collect();
    let new_selects: String = nmos_auth_core::NmosApi::ALL
        .iter()
        .map(|api| {
            format!(
                r#"<label class="inline">{api} {}</label>"#,
                level_select(&format!("right_{api}"), pb::Access::None as i32, None)
            )
        })
        .collect();
    format!(
        r#"<div class="wide"><table><thead><tr><th>User</th>{apis}<th></th></tr></thead><tbody>{rows}</tbody></table></div>
<h2>Add a user</h2>
<form method="post" action="{BASE}/users/add">
<input type="hidden" name="csrf" value="{csrf}">
<label>Username <input type="text" name="username" required></label>
<label>Password <input type="password" name="password" autocomplete="new-password" minlength="8" required></label>
<fieldset><legend>Access per API</legend>{new_selects}</fieldset>
<label class="check"><input type="checkbox" name="admin" value="true"> Administrator</label>
<div class="actions"><button type="submit">Add user</button></div>
</form>"#,
        csrf = escape(&session.csrf),
    )
}

/// Every user, as `user` may see them (the identity service decides who may: administrators).
pub(super) async fn list_users(gateway: &Gateway, user: &pb::User) -> Result<Vec<pb::User>, tonic::Status> {
    let list = |mut identity: nmos_auth_proto::identity_client::IdentityClient<grpc::GrpcChannel>| {
        let requested_by = user.username.clone();
        async move { identity.list_users(pb::ListUsersRequest { requested_by }).await }
    };
    Ok(grpc::idempotent(&gateway.identity, list).await?.into_inner().users)
}

/// GET users.
pub async fn users_page(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let (session, user) = or_respond!(signed_in(&gateway, &headers, &format!("{BASE}/users")).await);
    match list_users(&gateway, &user).await {
        Ok(users) => pages::page(
            StatusCode::OK,
            "Users",
            &nav_for(&user, &session),
            &users_html(&users, &user.username, &session),
        ),
        Err(status) => status_page(&status, &session),
    }
}

/// The `right_<api>` fields of a form.
fn rights_of(form: &[(String, String)]) -> Vec<pb::ApiRight> {
    form.iter()
        .filter_map(|(name, value)| {
            let api = name.strip_prefix("right_")?;
            let access = LEVELS.iter().find(|(_, label)| label == value)?.0;
            Some(pb::ApiRight { api: api.to_owned(), access: access as i32 })
        })
        .collect()
}

/// POST users/add.
pub async fn add_user(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    let request = pb::CreateUserRequest {
        username: form_value(&form, "username").unwrap_or("").to_owned(),
        password: form_value(&form, "password").unwrap_or("").to_owned(),
        admin: form_value(&form, "admin") == Some("true"),
        rights: rights_of(&form),
        requested_by: user.username.clone(),
    };
    match gateway.identity.clone().create_user(request).await {
        Ok(_) => found(&format!("{BASE}/users")),
        Err(status) => status_page(&status, &session),
    }
}

/// POST users/change: save rights, sign out everywhere, disable, enable, ask whether to delete,
/// or delete.
pub async fn change_user(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = or_respond!(form(body));
    let (session, user) = or_respond!(signed_in_post(&gateway, &headers, &form).await);
    // The identity service decides who may, and that nobody locks themselves out.
    let username = form_value(&form, "username").unwrap_or("").to_owned();
    let requested_by = user.username.clone();
    let mut identity = gateway.identity.clone();
    let result = match form_value(&form, "action") {
        Some("rights") => {
            let request = pb::SetRightsRequest { username, rights: rights_of(&form), requested_by };
            identity.set_rights(request).await.map(|_| ())
        }
        Some(action @ ("disable" | "enable")) => {
            let request = pb::SetDisabledRequest { username, disabled: action == "disable", requested_by };
            identity.set_disabled(request).await.map(|_| ())
        }
        Some("confirm-delete") => return deletion_page(&gateway, &username, &user, &session).await,
        Some("delete") => identity.delete_user(pb::DeleteUserRequest { username, requested_by }).await.map(|_| ()),
        Some("signout") => {
            let request = pb::EndUserSessionsRequest { username, requested_by };
            identity.end_user_sessions(request).await.map(|_| ())
        }
        _ => Err(tonic::Status::invalid_argument("Unknown action.")),
    };
    match result {
        Ok(()) => found(&format!("{BASE}/users")),
        Err(status) => status_page(&status, &session),
    }
}

/// What deleting a user breaks, and the button that does it; only for administrators (the list
/// of users is theirs to read), and only for a user who exists.
async fn deletion_page(gateway: &Gateway, username: &str, user: &pb::User, session: &Session) -> Response {
    let found = match list_users(gateway, user).await {
        Ok(users) => users.into_iter().find(|u| u.username == username),
        Err(status) => return status_page(&status, session),
    };
    let Some(found) = found else {
        return status_page(&tonic::Status::not_found("There is no user of that name."), session);
    };
    let body = format!(
        r#"<div class="alert">They can no longer sign in, and their sessions end at once. Controllers acting for them get no more tokens: their refresh tokens stop working and introspection reports their access tokens inactive, though an access token already issued passes an API's signature check until it expires. The clients they registered stay, for administrators to keep or delete in the console. An account created later with the same name is a new account: it gets none of these clients or grants. This cannot be undone.</div>
<dl><dt>User</dt><dd>{name}</dd></dl>
<form method="post" action="{BASE}/users/change"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="username" value="{name}">
<div class="actions"><button class="danger" type="submit" name="action" value="delete">Delete this user</button><a href="{BASE}/users">Cancel</a></div></form>"#,
        name = escape(&found.username),
        csrf = escape(&session.csrf),
    );
    pages::page(StatusCode::OK, "Delete a user?", &nav_for(user, session), &body)
}
