//! Following a remote log through a replica of it.
//!
//! A standalone query service keeps a replica of the log in its data
//! directory, fed by a [`pump`](crate::pump) and checked link by link
//! against the hash chain; the replica is what subscribers catch up from
//! and what a restart replays, so a restarted query service serves at once
//! and then continues from where its replica ends.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use truce_log::{Head, LogEntry, LogError, LogReader, LogStore};
use truce_serve::Stopping;

use crate::{
    pump::{self, Fatal},
    state::{QueryState, decode},
    upstream::Upstream,
};

/// Entries appended to the replica in one transaction at most.
const REPLICA_BATCH: usize = 1024;

/// Opens the replica (waiting for the upstream to learn the log's identity
/// if there is none yet), builds the view from it and keeps it following
/// the upstream, reconnecting as needed.
pub async fn follow_remote(upstream: Upstream, stopping: Stopping) -> anyhow::Result<Arc<QueryState>> {
    let replica_file = upstream.replica_dir.join("log.sqlite3");
    let store = if replica_file.exists() {
        LogStore::open(&upstream.replica_dir)?
    } else {
        let incarnation = loop {
            match pump::incarnation(&upstream.source).await {
                Ok(incarnation) => break incarnation,
                Err(error) => {
                    tracing::warn!(upstream = %upstream.source.describe(), %error, "waiting for the upstream log to create the replica");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stopping.wait() => anyhow::bail!("stopped before the replica existed"),
                    }
                }
            }
        };
        LogStore::open_replica(&upstream.replica_dir, &incarnation)?
    };
    let (head_tx, head_rx) = watch::channel(store.head());
    let history = LogReader::new(store.path(), store.incarnation().clone(), head_rx);
    let state = QueryState::new(history, true);
    state.build_view().await?;
    tracing::info!(position = %state.read_view().position(), "view built from the replica");
    tokio::spawn(replicate(upstream, store, head_tx, Arc::clone(&state), stopping));
    Ok(state)
}

/// Copies the upstream log into the replica and the view, forever.
async fn replicate(
    upstream: Upstream,
    mut store: LogStore,
    head: watch::Sender<Head>,
    state: Arc<QueryState>,
    stopping: Stopping,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (tx, rx) = mpsc::channel::<LogEntry>(REPLICA_BATCH);
        let from = store.head().position + 1;
        let incarnation = store.incarnation().to_string();
        let pump = pump::start(&upstream.source, from, incarnation, tx, Arc::clone(&state));
        match copy(&pump, rx, store, &head, &state, &stopping).await {
            Copied::PumpEnded {
                store: returned,
                received,
            } => {
                store = *returned;
                if received {
                    backoff = Duration::from_millis(100);
                }
            }
            Copied::Stop => return,
        }
        match pump.await {
            Ok(Err(Fatal(reason))) => {
                tracing::error!(%reason, "cannot follow the upstream log; the view stops here");
                return;
            }
            _ => {
                tracing::warn!(upstream = %upstream.source.describe(), retry_in = ?backoff, "lost the upstream log; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopping.wait() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How copying from one pump ended.
enum Copied {
    /// The pump ended: reconnect, with the store (boxed: it is large, and
    /// this happens once a connection); `received` if any entry came, so
    /// the connection worked.
    PumpEnded { store: Box<LogStore>, received: bool },
    /// The view stops here: shutdown, or a replica or log that cannot be
    /// written or applied.
    Stop,
}

/// Appends what `pump` sends on `rx` to `store` and applies it to the
/// view, a batch at a time, until the pump ends or the view must stop.
async fn copy(
    pump: &JoinHandle<Result<(), Fatal>>,
    mut rx: mpsc::Receiver<LogEntry>,
    mut store: LogStore,
    head: &watch::Sender<Head>,
    state: &QueryState,
    stopping: &Stopping,
) -> Copied {
    let mut received = false;
    let mut batch = Vec::with_capacity(REPLICA_BATCH);
    loop {
        batch.clear();
        let count = tokio::select! {
            n = rx.recv_many(&mut batch, REPLICA_BATCH) => n,
            () = stopping.wait() => {
                pump.abort();
                return Copied::Stop;
            }
        };
        if count == 0 {
            return Copied::PumpEnded {
                store: Box::new(store),
                received,
            };
        }
        received = true;
        let entries = std::mem::take(&mut batch);
        let Some((returned, entries, result)) = append(store, entries).await else {
            return Copied::Stop;
        };
        store = returned;
        // Readers of the replica first: a subscriber reading history
        // must find every entry the view has applied.
        if result.is_ok() {
            head.send_replace(store.head());
        }
        if let Err(error) = result.and_then(|()| decode(&entries).map(|events| state.apply(events))) {
            tracing::error!(%error, "cannot apply the upstream log; the view stops here");
            pump.abort();
            return Copied::Stop;
        }
    }
}

/// Appends `entries` to the replica off the runtime's threads; hands back
/// the store, the entries and how the append went. `None` if the writer
/// itself failed.
async fn append(
    mut store: LogStore,
    entries: Vec<LogEntry>,
) -> Option<(LogStore, Vec<LogEntry>, Result<(), LogError>)> {
    let appended = tokio::task::spawn_blocking(move || {
        let result = store.append_replicated(&entries).map(|_| ());
        (store, entries, result)
    })
    .await;
    match appended {
        Ok(parts) => Some(parts),
        Err(error) => {
            tracing::error!(%error, "replica writer failed; the view stops here");
            None
        }
    }
}
