//! What the operator's console stands on, on SQLite and Postgres: the registry's search of
//! 1,000 clients a page at a time (every client once, filters counted in the database), the
//! console's pages at that size, the administrative RPCs' checks of who asks and of bad input,
//! the migrations that fill in existing clients' kind and name and how they registered, and
//! audit events: filtered,
//! and purged after the retention (on a compressed clock); and the token issuer's audit
//! batches, written as one statement on a connection of their own.
use nmos_auth_client_registry::WebUser;
use nmos_auth_core::config::RegistrationMode;
use nmos_auth_core::events::{Event, Filter};
use nmos_auth_proto as pb;
use nmos_auth_proto::client_registry_server::ClientRegistry;
use nmos_auth_proto::identity_server::Identity;
use nmos_auth_proto::token_issuer_server::TokenIssuer;
use serde_json::json;
use tonic::{Code, Request};

use crate::authorization_code::sign_in_as_and_open;
use crate::browser::Browser;
use crate::harness::{Backend, TestApp, store_backend_tests};

store_backend_tests!(
    a_thousand_clients_page_by_page,
    console_rpcs_check_who_asks_and_what,
    existing_clients_get_their_kind_and_name,
    existing_clients_get_how_they_registered,
    events_are_filtered_and_kept_for_the_retention,
    an_audit_batch_is_stored_whole_exact_and_in_order
);

/// The code of a refusal.
fn denied<T>(answer: Result<T, tonic::Status>) -> Code {
    answer.map(|_| ()).unwrap_err().code()
}

fn chief() -> Option<pb::WebUser> {
    Some(pb::WebUser { username: "chief".into(), admin: true, account_created_at: 0 })
}

fn search(
    kind: pb::ClientKind,
    status: pb::ClientStatus,
    name: &str,
    offset: u32,
    limit: u32,
) -> pb::ListClientsRequest {
    pb::ListClientsRequest {
        all: true,
        kind: kind as i32,
        status: status as i32,
        name: name.to_owned(),
        offset,
        limit,
        requested_by: chief(),
        ..Default::default()
    }
}

async fn list(app: &TestApp, request: pb::ListClientsRequest) -> pb::ListClientsResponse {
    ClientRegistry::list_clients(&*app.server.clients, Request::new(request)).await.unwrap().into_inner()
}

async fn a_thousand_clients_page_by_page(backend: Backend) {
    use pb::ClientKind::{Confidential, Machine, Public, Unspecified as AnyKind};
    use pb::ClientStatus::{Approved, Disabled, Unspecified as AnyStatus};
    let app = TestApp::spawn(backend).await;
    let admin = WebUser { username: "chief".into(), admin: true, account_created_at: 0 };
    // 600 Nodes, 300 controllers with a secret, 100 public panels.
    for i in 0..1000 {
        let metadata = match i {
            0..600 => json!({"client_name": format!("Node {i:04}"), "grant_types": ["client_credentials"],
                              "response_types": ["none"], "scope": "registration"}),
            600..900 => {
                json!({"client_name": format!("Controller {i:04}"), "redirect_uris": ["https://ctl.example.com/cb"],
                                "grant_types": ["authorization_code"], "scope": "query"})
            }
            _ => json!({"client_name": format!("Panel {i:04}"), "redirect_uris": ["https://panel.example.com/cb"],
                         "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none", "scope": "query"}),
        };
        app.server.clients.register(&metadata, None, Some(&admin)).await.unwrap();
    }

    // Every client exactly once over the pages, in a stable order.
    let mut seen = std::collections::HashSet::new();
    for page in 0..20 {
        let found = list(&app, search(AnyKind, AnyStatus, "", page * 50, 50)).await;
        assert_eq!(found.total, 1000);
        assert_eq!(found.clients.len(), 50, "page {page}");
        for c in found.clients {
            assert!(seen.insert(c.client_id), "a client on two pages");
        }
    }
    assert_eq!(seen.len(), 1000);
    let past_the_end = list(&app, search(AnyKind, AnyStatus, "", 1000, 50)).await;
    assert_eq!((past_the_end.clients.len(), past_the_end.total), (0, 1000));

    // Filters are counted in the database.
    for (kind, total) in [(Machine, 600), (Confidential, 300), (Public, 100)] {
        let found = list(&app, search(kind, AnyStatus, "", 0, 10)).await;
        assert_eq!(found.total, total, "{kind:?}");
        assert!(found.clients.iter().all(|c| c.kind == kind as i32), "{kind:?}");
    }
    for (name, total) in
        [("node 05", 100), ("NODE 05", 100), ("Panel 0999", 1), ("%", 0), ("_", 0), ("\\", 0), ("", 1000)]
    {
        assert_eq!(list(&app, search(AnyKind, AnyStatus, name, 0, 10)).await.total, total, "name {name:?}");
    }
    // The page size: 50 unless asked, never over 500.
    assert_eq!(list(&app, search(AnyKind, AnyStatus, "", 0, 0)).await.clients.len(), 50);
    assert_eq!(list(&app, search(AnyKind, AnyStatus, "", 0, 100_000)).await.clients.len(), 500);

    // Ten Nodes disabled.
    let nodes = list(&app, search(Machine, AnyStatus, "", 0, 10)).await.clients;
    for c in &nodes {
        let disabled = app.server.clients.set_disabled(&c.client_id, true, "chief").await.unwrap().unwrap();
        assert!(disabled.disabled);
    }
    assert_eq!(list(&app, search(AnyKind, Disabled, "", 0, 10)).await.total, 10);
    assert_eq!(list(&app, search(Machine, Approved, "", 0, 10)).await.total, 590);
    assert_eq!(list(&app, search(Public, Disabled, "", 0, 10)).await.total, 0);

    // Each client's activity, in the order asked.
    let ids: Vec<String> = nodes.iter().map(|c| c.client_id.clone()).collect();
    let request = pb::ClientActivityRequest { client_ids: ids.clone(), since: 0, requested_by: chief() };
    let activity = TokenIssuer::client_activity(&*app.server.token_issuer, Request::new(request)).await.unwrap();
    let activity = activity.into_inner().activity;
    assert_eq!(activity.iter().map(|a| a.client_id.clone()).collect::<Vec<_>>(), ids);
    assert!(activity.iter().all(|a| a.last_issued_at == 0 && a.issued_since == 0), "no tokens yet");

    // The console's list at that size: the last page, one past it, and filters.
    app.server.identity.create_user("chief", "the chief's long password", true, &[], "operator:test").await.unwrap();
    let mut chief = Browser::new();
    let url = app.auth_url("admin/clients?page=20");
    let page = sign_in_as_and_open(&app, &mut chief, &url, "chief", "the chief's long password").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Clients 951–1000 of 1000"), "{}", page.body);
    assert!(page.body.contains(r#"rel="prev""#) && !page.body.contains(r#"rel="next""#));
    assert_eq!(page.body.matches("<tr data-client=").count(), 50);
    let page = chief.get(&app.auth_url("admin/clients?page=21")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No client on this page."), "{}", page.body);
    let page = chief.get(&app.auth_url("admin/clients?kind=public&status=&name=panel")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Clients 1–50 of 100"), "{}", page.body);
    assert!(page.body.contains("kind=public&amp;status=&amp;name=panel&amp;page=2"), "the next page keeps the filters");
    let page = chief.get(&app.auth_url("admin/clients?status=disabled")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Clients 1–10 of 10"), "{}", page.body);
}

async fn console_rpcs_check_who_asks_and_what(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.registration = RegistrationMode::Approval).await;
    let clients = &*app.server.clients;
    let issuer = &*app.server.token_issuer;
    let (node, _) = app.machine_client("registration").await;
    let public = app
        .register(json!({"client_name": "Panel", "redirect_uris": ["https://panel.example.com/cb"],
                          "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"}))
        .await;
    let public = public["client_id"].as_str().unwrap().to_owned();
    // In approval mode, a registration without a token waits for an administrator.
    let response = app
        .http
        .post(app.auth_url("register"))
        .json(&json!({"client_name": "Unknown device", "grant_types": ["client_credentials"],
                       "response_types": ["none"], "scope": "registration"}))
        .send()
        .await
        .unwrap();
    let pending = crate::harness::ExpectJson::expect_json(response, 201).await;
    let pending = pending["client_id"].as_str().unwrap().to_owned();

    // Only administrators: a person who is not one, and a call naming nobody, are refused.
    let someone = Some(pb::WebUser { username: "someone".into(), admin: false, account_created_at: 0 });
    for requested_by in [someone.clone(), None] {
        let all = pb::ListClientsRequest { all: true, requested_by: requested_by.clone(), ..Default::default() };
        assert_eq!(denied(clients.list_clients(Request::new(all)).await), Code::PermissionDenied);
        let disable = pb::SetClientDisabledRequest {
            client_id: node.clone(),
            disabled: true,
            requested_by: requested_by.clone(),
        };
        assert_eq!(denied(clients.set_client_disabled(Request::new(disable)).await), Code::PermissionDenied);
        let rotate = pb::RotateClientSecretRequest { client_id: node.clone(), requested_by: requested_by.clone() };
        assert_eq!(denied(clients.rotate_client_secret(Request::new(rotate)).await), Code::PermissionDenied);
        let events = pb::ListEventsRequest { requested_by: requested_by.clone(), ..Default::default() };
        assert_eq!(
            denied(ClientRegistry::list_events(clients, Request::new(events.clone())).await),
            Code::PermissionDenied
        );
        assert_eq!(
            denied(TokenIssuer::list_events(issuer, Request::new(events.clone())).await),
            Code::PermissionDenied
        );
        // The identity service asks its own store whether the named user is an administrator.
        let claimed = pb::ListEventsRequest { requested_by: chief(), ..Default::default() };
        assert_eq!(
            denied(Identity::list_events(&*app.server.identity, Request::new(claimed)).await),
            Code::PermissionDenied
        );
        let activity =
            pb::ClientActivityRequest { client_ids: vec![node.clone()], since: 0, requested_by: requested_by.clone() };
        assert_eq!(denied(TokenIssuer::client_activity(issuer, Request::new(activity)).await), Code::PermissionDenied);
        let summary = pb::TokenSummaryRequest { requested_by: requested_by.clone(), ..Default::default() };
        assert_eq!(denied(TokenIssuer::token_summary(issuer, Request::new(summary)).await), Code::PermissionDenied);
        let revoke = pb::RevokeClientTokensRequest { client_id: node.clone(), requested_by: requested_by.clone() };
        assert_eq!(
            denied(TokenIssuer::revoke_client_tokens(issuer, Request::new(revoke)).await),
            Code::PermissionDenied
        );
    }

    // What cannot be done says why.
    let code = |r: Result<tonic::Response<pb::Client>, tonic::Status>| r.unwrap_err().code();
    let disable = |client_id: &str| pb::SetClientDisabledRequest {
        client_id: client_id.to_owned(),
        disabled: true,
        requested_by: chief(),
    };
    assert_eq!(code(clients.set_client_disabled(Request::new(disable(&pending))).await), Code::FailedPrecondition);
    assert_eq!(
        code(clients.set_client_disabled(Request::new(disable("no-such-client-0000000"))).await),
        Code::NotFound
    );
    let rotate = pb::RotateClientSecretRequest { client_id: public.clone(), requested_by: chief() };
    let refused = clients.rotate_client_secret(Request::new(rotate)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("no secret"), "{refused:?}");
    let too_long =
        pb::ListClientsRequest { all: true, name: "x".repeat(201), requested_by: chief(), ..Default::default() };
    assert_eq!(clients.list_clients(Request::new(too_long)).await.unwrap_err().code(), Code::InvalidArgument);
    let unknown_kind = pb::ListClientsRequest { all: true, kind: 99, requested_by: chief(), ..Default::default() };
    assert_eq!(clients.list_clients(Request::new(unknown_kind)).await.unwrap_err().code(), Code::InvalidArgument);
    let backwards = pb::TokenSummaryRequest { since: 100, until: 50, requested_by: chief(), ..Default::default() };
    assert_eq!(
        TokenIssuer::token_summary(issuer, Request::new(backwards)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let backwards = pb::ListEventsRequest { since: 100, until: 50, requested_by: chief(), ..Default::default() };
    let answer = ClientRegistry::list_events(clients, Request::new(backwards)).await;
    assert_eq!(answer.unwrap_err().code(), Code::InvalidArgument);
    let many = pb::ClientActivityRequest { client_ids: vec![node.clone(); 501], since: 0, requested_by: chief() };
    assert_eq!(
        TokenIssuer::client_activity(issuer, Request::new(many)).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Disabling twice, or enabling an enabled client, is the same outcome, and recorded once.
    for _ in 0..2 {
        let client = clients.set_client_disabled(Request::new(disable(&node))).await.unwrap().into_inner();
        assert_eq!(client.status, pb::ClientStatus::Disabled as i32);
    }
    let events = pb::ListEventsRequest { client_id: node.clone(), requested_by: chief(), ..Default::default() };
    let events = ClientRegistry::list_events(clients, Request::new(events)).await.unwrap().into_inner().events;
    assert_eq!(events.iter().filter(|e| e.event == "client_disabled").count(), 1, "{events:?}");
    assert!(events.iter().all(|e| e.service == "client-registry" && e.client_id == node));
}

/// Clients registered before the console kept a kind and a name get them when the registry opens.
async fn existing_clients_get_their_kind_and_name(backend: Backend) {
    use nmos_auth_core::db::Db;
    let app = TestApp::spawn(backend).await;
    let (node, _) = app.machine_client("registration").await;
    let panel = app
        .register(
            json!({"client_name": "Studio PANEL \u{c9}CRAN\u{7}", "redirect_uris": ["https://panel.example.com/cb"],
                          "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"}),
        )
        .await;
    let panel = panel["client_id"].as_str().unwrap().to_owned();
    let controller = app
        .register(json!({"client_name": "Controller", "redirect_uris": ["https://ctl.example.com/cb"],
                          "grant_types": ["authorization_code"]}))
        .await;
    let controller = controller["client_id"].as_str().unwrap().to_owned();
    // As the columns were when the migration added them; the registry fills them in when it opens.
    let db = Db::connect(&app.config.database_url("clients")).await.unwrap();
    let blank = "UPDATE clients_clients SET kind = '', name = ''";
    match &db {
        Db::Sqlite(pool) => sqlx::query(blank).execute(pool).await.unwrap().rows_affected(),
        Db::Postgres(pool) => sqlx::query(blank).execute(pool).await.unwrap().rows_affected(),
    };
    nmos_auth_client_registry::ClientRegistryService::open(&app.config).await.unwrap();
    let rows: Vec<(String, String, String)> = match &db {
        Db::Sqlite(pool) => sqlx::query_as("SELECT client_id, kind, name FROM clients_clients").fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as("SELECT client_id, kind, name FROM clients_clients").fetch_all(pool).await,
    }
    .unwrap();
    let of = |id: &str| rows.iter().find(|r| r.0 == id).map(|r| (r.1.as_str(), r.2.as_str())).unwrap();
    assert_eq!(of(&node), ("machine", "test node"));
    assert_eq!(of(&panel), ("public", "studio panel \u{e9}cran"), "lower-cased beyond ASCII, no control characters");
    assert_eq!(of(&controller), ("confidential", "controller"));
    let found =
        list(&app, search(pb::ClientKind::Unspecified, pb::ClientStatus::Unspecified, "\u{c9}cran", 0, 10)).await;
    assert_eq!(found.clients.iter().map(|c| c.client_id.as_str()).collect::<Vec<_>>(), [panel.as_str()]);
}

/// Migration 9 fills in how clients registered before it did: by their owner, and by their
/// registration's audit event; a client whose event is gone stays unknown (vouched for).
async fn existing_clients_get_how_they_registered(backend: Backend) {
    use nmos_auth_client_registry::store::MIGRATIONS;
    use nmos_auth_core::db::{Db, Migrations};
    let dir = crate::harness::TempDir::new("registered-how");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("clients.db").display()),
        _ => crate::harness::postgres_database().await,
    };
    let db = Db::connect(&url).await.unwrap();
    let before = Migrations { sqlite: &MIGRATIONS.sqlite[..8], postgres: &MIGRATIONS.postgres[..8] };
    assert!(MIGRATIONS.sqlite[8].version == 9 && MIGRATIONS.postgres[8].version == 9);
    db.migrate("clients", &before).await.unwrap();
    let clients = [("by-token", ""), ("on-a-page", "alice"), ("for-approval", ""), ("openly", ""), ("forgotten", "")];
    let events = [
        (
            "by-token",
            r#"name "Node", machine, grants client_credentials, scope "registration", registered with an initial access token"#,
        ),
        (
            "for-approval",
            r#"name "Node, registered openly (authorization code only)", machine, grants client_credentials, scope "registration", registered waiting for approval"#,
        ),
        (
            "openly",
            r#"name "App", confidential, grants authorization_code, scope "", registered openly (authorization code only)"#,
        ),
    ];
    let statements: Vec<(String, Vec<String>)> = clients
        .iter()
        .map(|(id, owner)| {
            let sql = "INSERT INTO clients_clients (client_id, metadata, issued_at, owner, status) VALUES ($1, '{}', 1, $2, 'approved')";
            (sql.to_owned(), vec![(*id).to_owned(), (*owner).to_owned()])
        })
        .chain(events.iter().map(|(id, detail)| {
            let sql = "INSERT INTO clients_events (at, event, actor, client_id, username, address, detail) \
                       VALUES (1, 'client_registered', '', $1, '', '', $2)";
            (sql.to_owned(), vec![(*id).to_owned(), (*detail).to_owned()])
        }))
        .collect();
    for (sql, binds) in &statements {
        match &db {
            Db::Sqlite(pool) => sqlx::query(sql).bind(&binds[0]).bind(&binds[1]).execute(pool).await.map(|_| ()),
            Db::Postgres(pool) => sqlx::query(sql).bind(&binds[0]).bind(&binds[1]).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db.migrate("clients", &MIGRATIONS).await.unwrap();
    let select = "SELECT client_id, registered_how FROM clients_clients ORDER BY client_id";
    let mut rows: Vec<(String, String)> = match &db {
        Db::Sqlite(pool) => sqlx::query_as(select).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(select).fetch_all(pool).await,
    }
    .unwrap();
    rows.sort();
    let expected = [
        ("by-token", "token"),
        ("for-approval", "approval"),
        ("forgotten", ""),
        ("on-a-page", "page"),
        ("openly", "open"),
    ];
    assert_eq!(rows, expected.map(|(a, b)| (a.to_owned(), b.to_owned())), "a name cannot pass for how it registered");
}

/// Events are filtered by window, client and user (who it concerns, or who did it); on a
/// compressed clock, housekeeping purges them after the retention and not before.
async fn events_are_filtered_and_kept_for_the_retention(backend: Backend) {
    use nmos_auth_core::db::Db;
    let app = TestApp::spawn(backend).await;
    let db = Db::connect(&app.config.database_url("clients")).await.unwrap();
    // The registry's own table, as the registry writes it.
    let log = nmos_auth_core::event_log!(db.clone(), "client-registry", "clients");
    log.record(Event::new("client_approved", "chief").client("client-a")).await;
    log.record(Event::new("client_deleted", "bob").client("client-b")).await;
    log.record(Event::new("password_rejected", "").user("chief").address("192.0.2.7").detail("wrong password")).await;
    let now = nmos_auth_core::now_unix();
    let all = Filter { since: 0, until: now + 10, limit: 100, ..Filter::default() };
    let listed = log.list(&all).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].event, "password_rejected", "the newest first");
    assert_eq!(listed[0].address, "192.0.2.7");
    let about_a = log.list(&Filter { client_id: "client-a".into(), ..all.clone() }).await.unwrap();
    assert_eq!(about_a.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["client_approved"]);
    let chief = log.list(&Filter { username: "chief".into(), ..all.clone() }).await.unwrap();
    assert_eq!(chief.len(), 2, "what the chief did, and what concerned them: {chief:?}");
    let before = log.list(&Filter { until: now - 60, ..all.clone() }).await.unwrap();
    assert!(before.is_empty());

    let retention = app.config.audit_retention_secs();
    assert_eq!(retention, Some(90 * 86_400), "the default: 90 days");
    let purge = log.purge(retention).unwrap();
    let day = 86_400;
    assert_eq!(nmos_auth_core::housekeeping::purge(&db, &purge, now + 89 * day, 2).await.unwrap(), 0);
    assert_eq!(
        nmos_auth_core::housekeeping::purge(&db, &purge, now + 91 * day, 2).await.unwrap(),
        3,
        "in batches of 2"
    );
    assert!(log.list(&all).await.unwrap().is_empty());
    assert!(log.purge(None).is_none(), "a retention of 0 days keeps everything");
}

/// The audit writer's batch, one statement on its own connection: every field as given
/// (whatever its characters), in the batch's order, at the largest batch size; a batch after
/// the connection has been idle (checked, then used again); and, on Postgres, after the
/// server has ended the connection (the batch written once, on a new connection).
async fn an_audit_batch_is_stored_whole_exact_and_in_order(backend: Backend) {
    use nmos_auth_token_issuer::store::AuditEntry;
    let app = TestApp::spawn(backend).await;
    let db = nmos_auth_core::db::Db::connect(&app.config.database_url("tokens")).await.unwrap();
    let store = nmos_auth_token_issuer::store::open(db.clone());
    let entry = |i: i64, subject: &str, scope: &str| AuditEntry {
        at: 1_796_194_075 + i,
        event: "token_issued".into(),
        grant_type: "authorization_code".into(),
        client_id: format!("client-{i}"),
        subject: subject.into(),
        scope: scope.into(),
        jti: format!("jti-{i}"),
    };
    let odd = vec![
        entry(0, "", "registration"),
        entry(1, "Zoë \"the chief\" O'Brien", "query\\events\n\t"),
        entry(2, "名前 🎛", "[\"registration\"] {\"a\": 1}, NULL"),
    ];
    store.audit(&odd).await.unwrap();
    let mut stored = store.recent_audit(10).await.unwrap();
    stored.reverse();
    assert_eq!(stored, odd, "every field as given, in the batch's order");

    let full: Vec<AuditEntry> = (0..512).map(|i| entry(10 + i, "alice", "registration")).collect();
    store.audit(&full).await.unwrap();
    let mut stored = store.recent_audit(1_000).await.unwrap();
    assert_eq!(stored.len(), 515);
    stored.reverse();
    assert_eq!(stored[3..], full[..], "a batch of 512 whole and in order");

    // Idle past the check: the connection is pinged, then used again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    store.audit(&[entry(9_999, "bob", "events")]).await.unwrap();
    let used = std::time::Instant::now();
    assert_eq!(store.recent_audit(1).await.unwrap()[0].jti, "jti-9999");

    // The server ends the connection (as a restart or a fail-over does) just after a batch.
    if let nmos_auth_core::db::Db::Postgres(pool) = &db {
        // One connection for these queries, which ends every other one of the database.
        let mut admin = pool.acquire().await.unwrap();
        let others: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::INT[]) AS pid")
            .bind(&others)
            .execute(&mut *admin)
            .await
            .unwrap();
        assert!(!others.is_empty(), "the audit writer's connection among them");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)")
            .bind(&others)
            .fetch_one(&mut *admin)
            .await
            .unwrap()
            > 0
        {
            assert!(std::time::Instant::now() < deadline, "the backends were not terminated");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Whether the connection is checked first (idle past the second) or found gone by the
        // statement, the batch is written on a new connection, once.
        let idle = used.elapsed();
        store.audit(&[entry(10_000, "carol", "events")]).await.unwrap_or_else(|e| panic!("after {idle:?} idle: {e}"));
        let stored = store.recent_audit(2).await.unwrap();
        assert_eq!(stored[0].jti, "jti-10000", "written on a new connection");
        assert_eq!(stored[1].jti, "jti-9999", "and once");
        store.audit(&[entry(10_001, "carol", "events")]).await.unwrap();
        assert_eq!(store.recent_audit(1).await.unwrap()[0].jti, "jti-10001");
    }
}
