//! Pumps: each reads a remote log from a position into a channel, entry by
//! entry and in order, until its connection is lost; the replica then
//! starts another. One pump per kind of source.

mod jetstream;
mod read_log;

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};
use truce_log::{Incarnation, LogEntry};

use crate::{state::QueryState, upstream::Source};

/// A follower that hears nothing from the upstream, not even a heartbeat
/// (sent every 2 s), for this long treats the connection as dead.
const UPSTREAM_SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// A failure that retrying cannot fix.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

/// Starts reading `source` from `from` into `tx`, telling `state` whenever
/// the source is heard from. The task ends `Ok` when the connection is
/// lost (reconnect), `Err` when the source is a log other than
/// `incarnation`.
pub(crate) fn start(
    source: &Source,
    from: u64,
    incarnation: String,
    tx: mpsc::Sender<LogEntry>,
    state: Arc<QueryState>,
) -> JoinHandle<Result<(), Fatal>> {
    match source {
        Source::Ingest(ingest) => tokio::spawn(read_log::pump(ingest.clone(), from, incarnation, tx, state)),
        Source::JetStream(settings) => tokio::spawn(jetstream::pump(settings.clone(), from, incarnation, tx, state)),
    }
}

/// Which log `source` holds, to create a replica of it.
pub(crate) async fn incarnation(source: &Source) -> anyhow::Result<Incarnation> {
    match source {
        Source::Ingest(ingest) => read_log::incarnation(ingest).await,
        Source::JetStream(settings) => jetstream::incarnation(settings).await,
    }
}
