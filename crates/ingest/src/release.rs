//! Releasing settled batches: their events to the in-process follower, the
//! new head to readers, the answers to submitters, and none of it before
//! the batch is on disk.
//!
//! On a log whose append is durable when it returns, a batch is released at
//! once. On the embedded log the fsync is moved to a syncer thread
//! ([`truce_log::LogStore::detach_sync`]): the sequencer commits a batch,
//! hands it over and goes on to decide the next while the disk takes this
//! one, and one fsync covers every batch committed before it began.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc,
    },
    thread,
};

use tokio::sync::{mpsc, oneshot, watch};
use truce_domain::event::RecordedEvent;
use truce_log::{Committed, Head, WalSync};
use truce_proto::ServiceError;

use crate::sequencer::Outcome;

/// Where a submitter's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Outcome, ServiceError>>;

/// Batches committed but not yet handed to the syncer before the sequencer
/// waits for it: while it waits, submissions queue up into a larger batch.
const SYNC_QUEUE: usize = 2;

/// Set once storage has failed in a way only a restart mends: after a
/// failed fsync the kernel may have dropped the unsynced pages, so what is
/// on disk is no longer known to this process (and after a failed append
/// whose state could not be read back, the same). From then on every write
/// is refused, and the health service says the ingest service is not
/// serving, so an orchestrator restarts it; a restart recovers from what
/// the disk actually holds.
#[derive(Debug, Clone)]
pub(crate) struct OutOfService(Arc<watch::Sender<Option<String>>>);

impl OutOfService {
    pub(crate) fn new() -> OutOfService {
        OutOfService(Arc::new(watch::Sender::new(None)))
    }

    /// Takes the service out for `reason`, unless it already is.
    pub(crate) fn declare(&self, reason: &str) {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason.to_owned());
            true
        });
    }

    /// Why it is out of service, if it is.
    pub(crate) fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Sees the reason once there is one.
    pub(crate) fn watch(&self) -> watch::Receiver<Option<String>> {
        self.0.subscribe()
    }
}

/// One batch, decided and (if it appended anything) committed.
pub(crate) struct Settled {
    /// The head after it, if it moved the head.
    pub(crate) head: Option<Head>,
    /// Its events, for the in-process follower.
    pub(crate) events: Vec<RecordedEvent>,
    /// Each submission's answer.
    pub(crate) answers: Vec<(Reply, Result<Outcome, ServiceError>)>,
}

/// What a durable batch is published to.
pub(crate) struct Publisher {
    /// Readers read no further than this.
    pub(crate) head: watch::Sender<Head>,
    /// Each durable batch's events, for an in-process follower.
    pub(crate) committed: Option<mpsc::Sender<Committed<Vec<RecordedEvent>>>>,
}

impl Publisher {
    /// Publishes a durable batch. An in-process follower gets its events
    /// together with its answers, and answers once it has applied them: an
    /// acknowledged write is then already in the view, and its change on
    /// the way to subscribers, as a watcher of etcd sees a put before its
    /// writer does.
    fn publish(&mut self, settled: Settled) {
        let Settled { head, events, answers } = settled;
        // Readers first: an answered writer may read the log at once.
        if let Some(head) = head {
            let _ = self.head.send(head);
        }
        let answer = move || {
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
        };
        match &self.committed {
            Some(committed) if !events.is_empty() => {
                // A follower too far behind to take the batch reads it from
                // the log; dropping it here answers at once.
                match committed.try_send(Committed::new(events, answer)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => self.committed = None,
                }
            }
            _ => answer(),
        }
    }

    /// Answers a batch the disk may not have: whatever it accepted is
    /// refused as unavailable (a retry with the same key finds out), and
    /// nothing of it is published.
    fn refuse(settled: Settled, reason: &str) {
        for (reply, answer) in settled.answers {
            let answer = answer.and(Err(ServiceError::Unavailable(reason.to_owned())));
            let _ = reply.send(answer);
        }
    }
}

/// How the sequencer releases its batches.
pub(crate) enum Release {
    /// The log's appends are durable when they return.
    Now(Publisher),
    /// Appends are only committed; the syncer releases them.
    AfterSync(Syncer),
}

impl Release {
    /// Releases the log's appends once they are durable, through a syncer
    /// thread when the log hands out its fsync; a failed sync takes the
    /// service out.
    pub(crate) fn start(
        sync: Option<WalSync>,
        publisher: Publisher,
        out_of_service: OutOfService,
    ) -> std::io::Result<Release> {
        Ok(match sync {
            None => Release::Now(publisher),
            Some(wal) => Release::AfterSync(Syncer::start(wal, publisher, out_of_service)?),
        })
    }

    /// Counts a commit: call after each append that returned.
    pub(crate) fn committed(&mut self) {
        if let Release::AfterSync(syncer) = self {
            syncer.shared.commits.fetch_add(1, Ordering::Release);
        }
    }

    /// Hands `settled` on, to be published once everything committed so far
    /// is durable.
    pub(crate) fn release(&mut self, settled: Settled) {
        match self {
            Release::Now(publisher) => publisher.publish(settled),
            Release::AfterSync(syncer) => syncer.hand_over(settled),
        }
    }

    /// Waits until every batch handed over is released.
    pub(crate) fn finish(self) {
        if let Release::AfterSync(syncer) = self {
            drop(syncer.tx);
            if syncer.thread.join().is_err() {
                tracing::error!("the syncer thread panicked");
            }
        }
    }
}

/// State the sequencer and the syncer share.
struct Shared {
    /// Commits made so far; a sync covers those counted before it began.
    commits: AtomicU64,
    /// Declared when a sync failed: nothing more is released or appended.
    out_of_service: OutOfService,
}

/// The sequencer's end of the syncer thread.
pub(crate) struct Syncer {
    tx: std_mpsc::SyncSender<(u64, Settled)>,
    shared: Arc<Shared>,
    thread: thread::JoinHandle<()>,
}

impl Syncer {
    fn start(wal: WalSync, publisher: Publisher, out_of_service: OutOfService) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            commits: AtomicU64::new(0),
            out_of_service,
        });
        let (tx, rx) = std_mpsc::sync_channel(SYNC_QUEUE);
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("truce-syncer".into())
                .spawn(move || sync_and_publish(&wal, &rx, publisher, &shared))?
        };
        Ok(Syncer { tx, shared, thread })
    }

    fn hand_over(&mut self, settled: Settled) {
        // Every batch waits for the commits before it too: a replayed
        // answer may rest on an earlier batch's entry. Only this thread
        // counts commits, so its own count needs no ordering.
        let commits = self.shared.commits.load(Ordering::Relaxed);
        if let Err(std_mpsc::SendError((_, settled))) = self.tx.send((commits, settled)) {
            Publisher::refuse(settled, "the ingest service is shutting down");
        }
    }
}

/// The syncer thread: takes every batch handed over, syncs the WAL once if
/// any of them needs it, and publishes them in order.
fn sync_and_publish(wal: &WalSync, rx: &std_mpsc::Receiver<(u64, Settled)>, mut publisher: Publisher, shared: &Shared) {
    let mut durable: u64 = 0;
    // Only this thread's own failure stops the syncs: batches committed
    // before the sequencer gave up on a failed append are still synced and
    // answered.
    let mut sync_failed = false;
    let mut batches = Vec::new();
    while let Ok(first) = rx.recv() {
        batches.push(first);
        batches.extend(rx.try_iter());
        let needed = batches.iter().map(|(commits, _)| *commits).max().unwrap_or(0);
        if needed > durable && !sync_failed {
            let covered = shared.commits.load(Ordering::Acquire);
            match wal.sync() {
                Ok(()) => durable = covered,
                Err(error) => {
                    tracing::error!(%error, "syncing the log failed; refusing reports until restarted");
                    sync_failed = true;
                    shared
                        .out_of_service
                        .declare("storage is failing (the log could not be synced); see the server log");
                }
            }
        }
        for (needed, settled) in batches.drain(..) {
            if needed <= durable {
                publisher.publish(settled);
            } else {
                Publisher::refuse(
                    settled,
                    "the log could not be synced; the report may not be stored, retry",
                );
            }
        }
    }
}
