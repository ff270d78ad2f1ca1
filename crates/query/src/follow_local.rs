//! Following the ingest log in this process: no network hop, no replica.

use std::sync::Arc;

use tokio::sync::mpsc;
use truce_domain::{Position, event::RecordedEvent};
use truce_log::{Committed, LogError, LogReader};
use truce_serve::Stopping;

use crate::state::QueryState;

/// Builds the view from `reader` (the ingest service's own log) and keeps
/// following it: each durable batch's events arrive from the sequencer on
/// `committed` and are applied as they are, without reading them back or
/// decoding them, and dropping a batch once applied answers its writers.
/// Whatever this follower missed (batches dropped while it was behind) it
/// reads from the log first, so nothing is skipped.
pub async fn follow_local(
    reader: LogReader,
    mut committed: mpsc::Receiver<Committed<Vec<RecordedEvent>>>,
    stopping: Stopping,
) -> Result<Arc<QueryState>, LogError> {
    let state = QueryState::new(reader.clone(), false);
    state.build_view().await?;
    tracing::info!(position = %state.read_view().position(), "view built from the local log");
    let follower = Arc::clone(&state);
    let mut head = reader.watch_head();
    tokio::spawn(async move {
        loop {
            // The head moves just before its batch is sent: a batch waiting
            // is taken first, and a head that moved without one means
            // batches were dropped (or one is on its way), so the log is
            // read up to it; a batch applies only past the view.
            let mut batch = tokio::select! {
                biased;
                () = stopping.wait() => return,
                batch = committed.recv() => match batch {
                    Some(batch) => Some(batch),
                    None => return, // the sequencer stopped
                },
                changed = head.changed() => match changed {
                    Ok(()) => None,
                    Err(_) => return,
                },
            };
            let events = batch.as_mut().map(Committed::take).unwrap_or_default();
            let before = events
                .first()
                .map_or_else(|| reader.head().position, |e| e.position.0.saturating_sub(1));
            if let Err(error) = follower.catch_up_to(Position(before)).await {
                tracing::error!(%error, "cannot read the log; the view stops here");
                return;
            }
            let applied = follower.read_view().position();
            follower.apply(events.into_iter().filter(|e| e.position > applied).collect());
            // Applied and broadcast: now its writers are answered.
            drop(batch);
        }
    });
    Ok(state)
}
