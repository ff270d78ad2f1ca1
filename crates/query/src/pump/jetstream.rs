//! The pump from the JetStream stream itself.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use truce_jetstream::{JetStreamLog, JetStreamSettings};
use truce_log::{Incarnation, LogEntry};

use super::{Fatal, UPSTREAM_SILENCE_LIMIT};
use crate::state::QueryState;

/// How long a follower of JetStream goes without an entry before it checks
/// that the server answers, and how long it waits for the answer.
const LIVENESS_PROBE: Duration = Duration::from_secs(2);

/// Which log the stream holds.
pub(super) async fn incarnation(settings: &JetStreamSettings) -> anyhow::Result<Incarnation> {
    let log = JetStreamLog::connect(settings.clone()).await?;
    Ok(log.incarnation().clone())
}

/// Reads the JetStream stream from `from` into `tx` until the connection
/// is lost. After [`LIVENESS_PROBE`] with no entry it asks the server for
/// the stream's end (waiting as long again for the answer), so a quiet log
/// is told from an unreachable one; entries arriving are proof enough.
pub(super) async fn pump(
    settings: JetStreamSettings,
    from: u64,
    incarnation: String,
    tx: mpsc::Sender<LogEntry>,
    state: Arc<QueryState>,
) -> Result<(), Fatal> {
    let log = match tokio::time::timeout(UPSTREAM_SILENCE_LIMIT, JetStreamLog::connect(settings)).await {
        Ok(Ok(log)) => log,
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot reach JetStream");
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    if log.incarnation().as_str() != incarnation {
        return Err(Fatal(format!(
            "the stream is log {}, the replica of {incarnation} (delete the query data directory to follow the new log)",
            log.incarnation()
        )));
    }
    let entries = match log.follow(from).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(%error, "cannot read the stream");
            return Ok(());
        }
    };
    let mut entries = std::pin::pin!(entries);
    let quiet = tokio::time::sleep(LIVENESS_PROBE);
    let mut quiet = std::pin::pin!(quiet);
    let mut expected = from;
    loop {
        tokio::select! {
            entry = entries.next() => match entry {
                Some(Ok(entry)) => {
                    state.heard_from_log();
                    quiet.as_mut().reset(tokio::time::Instant::now() + LIVENESS_PROBE);
                    if entry.position != expected {
                        tracing::warn!(expected, got = entry.position, "the stream skipped a position; reconnecting");
                        return Ok(());
                    }
                    expected += 1;
                    if tx.send(entry).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading the stream failed; reconnecting");
                    return Ok(());
                }
                None => return Ok(()),
            },
            () = &mut quiet => match log.last_position_within(LIVENESS_PROBE).await {
                Ok(_) => {
                    state.heard_from_log();
                    quiet.as_mut().reset(tokio::time::Instant::now() + LIVENESS_PROBE);
                }
                Err(error) => {
                    tracing::warn!(%error, "JetStream does not answer; reconnecting");
                    return Ok(());
                }
            },
        }
    }
}
