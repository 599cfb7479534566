//! The audit trail of what people, operators and clients do: registrations, approvals,
//! changes to clients, users and keys with who made them, sign-ins and their failures,
//! lock-outs. Every service keeps its own events in a table of its own database (`<prefix>_events`,
//! made by [`events_table!`](crate::events_table)), kept for `audit_retention_days` by
//! housekeeping, and answers `ListEvents` for them; the console merges the four. Each event is
//! also logged (target `audit`), so it is written in one call: [`EventLog::record`].
use tonic::{Response, Status};

use crate::db::{Db, StoreResult};
use crate::housekeeping::Purge;

/// The SQL that makes a service's events table (`$prefix`_events), for its migrations:
/// `events_table!(sqlite, "clients")` or `events_table!(postgres, "clients")`.
#[macro_export]
macro_rules! events_table {
    (sqlite, $prefix:literal) => {
        concat!(
            "CREATE TABLE ",
            $prefix,
            "_events (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, ",
            "event TEXT NOT NULL, actor TEXT NOT NULL, client_id TEXT NOT NULL, username TEXT NOT NULL, ",
            "address TEXT NOT NULL, detail TEXT NOT NULL);\n",
            "CREATE INDEX ",
            $prefix,
            "_events_at ON ",
            $prefix,
            "_events (at);\n",
        )
    };
    (postgres, $prefix:literal) => {
        concat!(
            "CREATE TABLE ",
            $prefix,
            "_events (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, ",
            "event TEXT NOT NULL, actor TEXT NOT NULL, client_id TEXT NOT NULL, username TEXT NOT NULL, ",
            "address TEXT NOT NULL, detail TEXT NOT NULL);\n",
            "CREATE INDEX ",
            $prefix,
            "_events_at ON ",
            $prefix,
            "_events (at);\n",
        )
    };
}

/// A service's [`EventLog`] in the table `<prefix>_events`:
/// `event_log!(db, "client-registry", "clients")`.
#[macro_export]
macro_rules! event_log {
    ($db:expr, $service:literal, $prefix:literal) => {
        $crate::events::EventLog::new(
            $db,
            $service,
            concat!($prefix, "_events"),
            concat!(
                "DELETE FROM ",
                $prefix,
                "_events WHERE id IN (SELECT id FROM ",
                $prefix,
                "_events WHERE at < $1 ORDER BY at LIMIT $2)"
            ),
        )
    };
}

/// One thing that happened. Fields that do not apply are empty; none holds a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub event: &'static str,
    /// Who did it: a user name, an operator's name, `client:<id>`; empty for nobody signed in.
    pub actor: String,
    pub client_id: String,
    pub username: String,
    /// Where a sign-in came from.
    pub address: String,
    pub detail: String,
    /// Logged as a warning (a lock-out, a key removed) rather than as information.
    pub warn: bool,
}

impl Event {
    pub fn new(event: &'static str, actor: impl Into<String>) -> Event {
        Event { event, actor: actor.into(), ..Event::default() }
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Event {
        self.client_id = client_id.into();
        self
    }

    pub fn user(mut self, username: impl Into<String>) -> Event {
        self.username = username.into();
        self
    }

    pub fn address(mut self, address: impl Into<String>) -> Event {
        self.address = address.into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = detail.into();
        self
    }

    pub fn warn(mut self) -> Event {
        self.warn = true;
        self
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub at: i64,
    pub event: String,
    pub actor: String,
    pub client_id: String,
    pub username: String,
    pub address: String,
    pub detail: String,
}

/// Which events to list; empty strings match anything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: i64,
    pub until: i64,
    pub client_id: String,
    /// The user an event concerns, or who did it.
    pub username: String,
    pub limit: i64,
}

/// A service's events table.
#[derive(Clone)]
pub struct EventLog {
    db: Db,
    /// The service, as events name it (`client-registry`).
    service: &'static str,
    insert: String,
    select: String,
    table: &'static str,
    purge: &'static str,
}

type Row = (i64, String, String, String, String, String, String);

impl EventLog {
    /// The events of `service` in `table` (made by [`events_table!`](crate::events_table)),
    /// purged by `purge`: use [`event_log!`](crate::event_log), which writes both from the
    /// table's prefix.
    pub fn new(db: Db, service: &'static str, table: &'static str, purge: &'static str) -> EventLog {
        let insert = format!(
            "INSERT INTO {table} (at, event, actor, client_id, username, address, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        let select = format!(
            "SELECT at, event, actor, client_id, username, address, detail FROM {table} \
             WHERE at >= $1 AND at < $2 AND ($3 = '' OR client_id = $3) AND ($4 = '' OR username = $4 OR actor = $4) \
             ORDER BY at DESC, id DESC LIMIT $5"
        );
        EventLog { db, service, insert, select, table, purge }
    }

    /// Logs the event and stores it. The change it records is made already: should storing
    /// fail (the database went down in between), the log keeps it and the error says so.
    pub async fn record(&self, event: Event) {
        let Event { event: name, actor, client_id, username, address, detail, warn } = &event;
        if *warn {
            tracing::warn!(target: "audit", event = name, by = %actor, client_id = %client_id, username = %username, client_address = %address, detail = %detail, "{name}");
        } else {
            tracing::info!(target: "audit", event = name, by = %actor, client_id = %client_id, username = %username, client_address = %address, detail = %detail, "{name}");
        }
        if let Err(e) = self.store(&event).await {
            tracing::error!(error = %e, event = name, "storing an audit event failed (it is in this log)");
        }
    }

    async fn store(&self, e: &Event) -> StoreResult<()> {
        let now = crate::now_unix();
        // Outside values (a name typed at sign-in, a client's name) are kept as they came, but
        // for NUL, which a Postgres text column cannot hold.
        let text = |value: &str| value.replace('\0', "\u{fffd}");
        macro_rules! insert {
            ($pool:expr) => {
                sqlx::query(&self.insert)
                    .bind(now)
                    .bind(e.event)
                    .bind(text(&e.actor))
                    .bind(text(&e.client_id))
                    .bind(text(&e.username))
                    .bind(text(&e.address))
                    .bind(text(&e.detail))
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        match &self.db {
            Db::Sqlite(pool) => insert!(pool),
            Db::Postgres(pool) => insert!(pool),
        };
        Ok(())
    }

    /// The events a filter selects, the newest first.
    pub async fn list(&self, f: &Filter) -> StoreResult<Vec<Stored>> {
        macro_rules! select {
            ($pool:expr) => {
                sqlx::query_as(&self.select)
                    .bind(f.since)
                    .bind(f.until)
                    .bind(&f.client_id)
                    .bind(&f.username)
                    .bind(f.limit)
                    .fetch_all($pool)
                    .await?
            };
        }
        let rows: Vec<Row> = match &self.db {
            Db::Sqlite(pool) => select!(pool),
            Db::Postgres(pool) => select!(pool),
        };
        Ok(rows
            .into_iter()
            .map(|(at, event, actor, client_id, username, address, detail)| Stored {
                at,
                event,
                actor,
                client_id,
                username,
                address,
                detail,
            })
            .collect())
    }

    /// What housekeeping deletes: events older than `keep_for` seconds (oldest first, through
    /// the index on `at`); `None` when events are kept for ever.
    pub fn purge(&self, keep_for: Option<i64>) -> Option<Purge> {
        Some(Purge { table: self.table, sql: self.purge, keep_for: keep_for? })
    }

    /// `ListEvents` for a service that takes the gateway's word on who is an administrator
    /// ([`crate::operator::administrator`]).
    pub async fn list_for_administrators(
        &self,
        request: tonic::Request<nmos_auth_proto::ListEventsRequest>,
    ) -> Result<Response<nmos_auth_proto::ListEventsResponse>, Status> {
        crate::operator::administrator(&request, request.get_ref().requested_by.as_ref(), "read the audit trail")?;
        self.list_rpc(request.into_inner()).await
    }

    /// `ListEvents` for the service, once it has checked that an administrator asks.
    pub async fn list_rpc(
        &self,
        r: nmos_auth_proto::ListEventsRequest,
    ) -> Result<Response<nmos_auth_proto::ListEventsResponse>, Status> {
        let until = if r.until == 0 { crate::now_unix() + 1 } else { r.until };
        if until <= r.since {
            return Err(Status::invalid_argument("the window must end after it starts"));
        }
        let limit = match r.limit {
            0 => 200,
            n => n.min(10_000),
        };
        let filter =
            Filter { since: r.since, until, client_id: r.client_id, username: r.username, limit: i64::from(limit) + 1 };
        let mut events = self.list(&filter).await.map_err(|e| Status::from(crate::OAuthError::from(e)))?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let events = events
            .into_iter()
            .map(|e| nmos_auth_proto::AuditEvent {
                at: e.at,
                service: self.service.to_owned(),
                event: e.event,
                actor: e.actor,
                client_id: e.client_id,
                username: e.username,
                address: e.address,
                detail: e.detail,
            })
            .collect();
        Ok(Response::new(nmos_auth_proto::ListEventsResponse { events, more }))
    }
}
