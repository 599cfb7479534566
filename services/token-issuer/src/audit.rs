//! The IS-10 audit log, written with group commit: concurrent token requests hand their
//! entries to one writer, which stores everything waiting in one transaction and then lets
//! each request answer. No token leaves before its entry is stored, and concurrent writers
//! never contend for the database. The writer waits for no timer: before it writes, it lets
//! every task that is ready to run go first once (a yield), so that the requests under way
//! hand in their entries and join the batch; what arrives while a batch is written makes the
//! next one. Batches grow with the load by themselves (at 32 connections from 1.5 entries a
//! batch without the yield to 18 with it), and a lone request's entry, with no other task
//! ready, is stored at once.
use std::sync::Arc;

use nmos_auth_core::error::Unavailable;
use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEntry, TokenStore};

/// The most entries stored in one transaction.
const MAX_BATCH: usize = 512;

/// An entry and where to say whether it was committed (on failure: the error, and whether it
/// means the database is unavailable).
type Pending = (AuditEntry, oneshot::Sender<Result<(), (String, bool)>>);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task; it ends when every `AuditLog` handle is dropped.
    pub fn start(store: Arc<dyn TokenStore>) -> AuditLog {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        AuditLog { tx }
    }

    /// Stores one entry; returns once it is committed.
    pub async fn record(&self, entry: AuditEntry) -> anyhow::Result<()> {
        let (done, committed) = oneshot::channel();
        self.tx.send((entry, done)).await.map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?;
        committed.await.map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?.map_err(
            |(message, unavailable)| {
                if unavailable { anyhow::Error::new(Unavailable(message)) } else { anyhow::Error::msg(message) }
            },
        )
    }
}

async fn write_batches(store: Arc<dyn TokenStore>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH
            && let Ok(pending) = rx.try_recv()
        {
            batch.push(pending);
        }
        let entries: Vec<AuditEntry> = batch.iter().map(|(e, _)| e.clone()).collect();
        let result = store.audit(&entries).await.map_err(|e| (format!("{e:#}"), e.is_unavailable()));
        if let Err((e, _)) = &result {
            tracing::error!(error = %e, entries = entries.len(), "writing the audit log failed");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}
