//! The sequencer: the single thread that decides where each report goes
//! and appends it.
//!
//! Commands arrive validated on a bounded channel. The sequencer takes
//! whatever has queued up (up to [`MAX_BATCH`]) and has the domain decide
//! each in turn ([`truce_domain::decide`]: an idempotent retry, the
//! incident a report joins, who may revise what) against the log and the
//! batch decided so far, encoding each event at the next position. The whole batch is then one
//! transaction and is answered only once it is on disk: this is the group
//! commit that lets hundreds of concurrent submitters share a sync. On the
//! embedded log the fsync happens on a thread of its own ([`crate::release`]),
//! while the sequencer decides the next batch.
//! Grouping is sequential by construction, so two reports of the same
//! event arriving together cannot both open an incident.

mod answers;
mod batch;
mod settle;
mod submitter;

use std::{
    thread,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use truce_domain::{event::RecordedEvent, grouping::IncidentIndex};
use truce_log::{Committed, Head, LogError, SequencedLog};
use truce_proto::convert::StoredEvent;

pub use submitter::Submitter;
pub use truce_domain::decide::{
    Accepted, Amendment, Command, Outcome, Reviewed, Revised, Rules, Submission, Withdrawal,
};

use self::{
    answers::{UNREACHABLE, refuse_all},
    settle::Unsettled,
};
use crate::{
    folded::Folded,
    release::{OutOfService, Publisher, Release, Reply},
};
use submitter::{AnswerBound, kept_up};

/// Most reports in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Most commands in one batch on a shared log. Each entry there is a round
/// trip of its own, so a larger batch saves nothing, and a batch counts as
/// progress only if it completes within three quarters of the answer
/// bound (see [`kept_up`]): a busy log's batches stay well inside it.
pub const MAX_SHARED_BATCH: usize = 128;
/// Submissions waiting for the sequencer before submitters wait.
const QUEUE: usize = 4096;
/// Committed batches waiting for an in-process follower; when it falls
/// further behind, batches are dropped and it reads them from the log.
pub const COMMITTED_QUEUE: usize = 64;

/// Events handed to an in-process follower as they become durable, so it
/// applies them without reading and decoding them back from the log.
pub type CommittedEvents = mpsc::Receiver<Committed<Vec<RecordedEvent>>>;

struct Sequencer {
    store: Box<dyn SequencedLog>,
    index: IncidentIndex,
    rules: Rules,
    /// Publishes each batch once it is durable.
    release: Release,
    /// Declared when a sync failed, or when a failed append left the state
    /// unknown and rebuilding it failed too: every submission is then
    /// refused as unavailable.
    out_of_service: OutOfService,
    /// A batch whose append to a shared log failed and whose outcome could
    /// not be read back yet: it is settled before the next batch.
    unsettled: Option<Unsettled>,
    /// Set when the state could not be rebuilt after a failed append to a
    /// shared log: it is rebuilt from the log before the next batch.
    stale: bool,
    /// How long callers wait while writes do not get through, when the log
    /// bounds it: a batch the log cannot take then waits for it, its
    /// callers answered by their bound.
    answer_within: Option<Duration>,
    /// When a batch last completed in time, which bounds how long callers
    /// wait.
    progress: watch::Sender<Instant>,
    /// Entries this writer has stored, for the pace of a batch.
    stored: usize,
}

/// How one attempt at a batch ended.
pub(super) enum Attempt {
    /// Every command is answered; `clean` when all of it went through
    /// (nothing refused or left in doubt for the log's sake).
    Answered { clean: bool },
    /// `pending` is to be decided again, after what `then` says.
    Again {
        pending: Vec<(Command, Reply)>,
        then: Again,
    },
}

/// Why part of a batch is decided again.
pub(super) enum Again {
    /// Another writer appended first: after a short, varying pause.
    Conflict,
    /// The log took part of the batch (its time was up, or it read back
    /// what it did not confirm): at once.
    Rest,
    /// The log could not be reached (no stream leader during an election,
    /// the connection lost) and nothing was sent: after [`WAIT_OUT`].
    Unreachable,
}

/// How long a batch waits before trying a log it could not reach again.
/// An election takes seconds; asking every few milliseconds only loads
/// the servers holding it.
const WAIT_OUT: Duration = Duration::from_millis(200);

/// How often a batch is decided again after other writers got in first.
const MAX_ATTEMPTS: u32 = 64;

/// A pause of up to `attempt` milliseconds, varying by the instant, so two
/// writers that keep colliding fall out of step.
fn back_off(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let micros = u64::from(jitter % 1000) * u64::from(attempt.min(20));
    thread::sleep(Duration::from_micros(micros));
}

/// Starts the sequencer on its own thread. It stops when every
/// [`Submitter`] is dropped. Each durable batch moves `head`, and its
/// events go to `committed` when given, just before.
pub fn start(
    store: Box<dyn SequencedLog>,
    rules: Rules,
    head: watch::Sender<Head>,
    committed: Option<mpsc::Sender<Committed<Vec<RecordedEvent>>>>,
) -> Result<(Submitter, thread::JoinHandle<()>), LogError> {
    start_from(store, rules, head, committed, None)
}

/// As [`start`], taking the grouping state from `folded` when it is as of
/// the log's head, instead of folding the log.
pub fn start_from(
    mut store: Box<dyn SequencedLog>,
    rules: Rules,
    head: watch::Sender<Head>,
    committed: Option<mpsc::Sender<Committed<Vec<RecordedEvent>>>>,
    folded: Option<Folded>,
) -> Result<(Submitter, thread::JoinHandle<()>), LogError> {
    store.catch_up()?;
    let at = store.head().position;
    let index = match folded.and_then(|folded| folded.index_at(at)) {
        Some(index) => index,
        None => rebuild_index(store.as_ref())?,
    };
    tracing::info!(incidents = index.len(), head = store.head().position, "sequencer ready");
    let out_of_service = OutOfService::new();
    let release = Release::start(
        store.detach_sync()?,
        Publisher { head, committed },
        out_of_service.clone(),
    )?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let (progress, progress_seen) = watch::channel(Instant::now());
    let answer_within = store.answer_within();
    let bound = answer_within.map(|within| AnswerBound {
        within,
        progress: progress_seen,
    });
    let sequencer = Sequencer {
        store,
        index,
        rules,
        release,
        out_of_service: out_of_service.clone(),
        unsettled: None,
        stale: false,
        answer_within,
        progress,
        stored: 0,
    };
    let thread = thread::Builder::new()
        .name("truce-sequencer".into())
        .spawn(move || sequencer.run(rx))?;
    Ok((
        Submitter {
            tx,
            out_of_service,
            bound,
        },
        thread,
    ))
}

pub(super) fn corrupt(position: u64, what: String) -> LogError {
    LogError::Corrupt { position, what }
}

/// Replays the log into the grouping index. Only each event's incident
/// summary is decoded: the index holds nothing else.
pub(super) fn rebuild_index(store: &dyn SequencedLog) -> Result<IncidentIndex, LogError> {
    let mut index = IncidentIndex::default();
    let mut next = 1;
    loop {
        let entries = store.read(next, 4096)?;
        if entries.is_empty() {
            return Ok(index);
        }
        for entry in entries {
            let incident = StoredEvent::decode(entry.position, entry.payload.into())
                .and_then(|event| event.incident())
                .map_err(|e| corrupt(entry.position, e))?;
            index.upsert(incident);
            next = entry.position + 1;
        }
    }
}

impl Sequencer {
    fn run(mut self, mut rx: mpsc::Receiver<(Command, Reply)>) {
        let most = if self.store.is_shared() {
            MAX_SHARED_BATCH
        } else {
            MAX_BATCH
        };
        let mut batch = Vec::with_capacity(most);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < most {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
        self.release.finish();
        tracing::info!("sequencer stopped");
    }

    fn commit(&mut self, batch: &mut Vec<(Command, Reply)>) {
        let started = Instant::now();
        let stored_before = self.stored;
        let mut pending: Vec<(Command, Reply)> = std::mem::take(batch);
        let mut conflicts = 0;
        loop {
            // A caller that stopped waiting (past its bound, or gone) is
            // not decided again: nothing more of its command is appended.
            pending.retain(|(_, reply)| !reply.is_closed());
            if pending.is_empty() {
                return;
            }
            if let Some(reason) = self.out_of_service.reason() {
                refuse_all(pending, &reason);
                return;
            }
            let then = match self.recover() {
                Ok(()) => match self.attempt(pending) {
                    Attempt::Answered { clean } => {
                        if clean {
                            self.note_progress(started.elapsed(), self.stored - stored_before);
                        }
                        return;
                    }
                    Attempt::Again { pending: rest, then } => {
                        pending = rest;
                        then
                    }
                },
                Err(_) => Again::Unreachable,
            };
            if let Some(reason) = self.before_again(then, &mut conflicts) {
                refuse_all(pending, reason);
                return;
            }
        }
    }

    /// Tells callers a batch that stored `stored` entries in `took`
    /// completed, if it kept up.
    fn note_progress(&self, took: Duration, stored: usize) {
        if self.answer_within.is_some_and(|within| kept_up(took, stored, within)) {
            self.progress.send_replace(Instant::now());
        }
    }

    /// Waits as `then` says before a batch is decided again (`conflicts`
    /// so far counted); why the rest is refused instead, if it is.
    fn before_again(&self, then: Again, conflicts: &mut u32) -> Option<&'static str> {
        match then {
            Again::Conflict => {
                *conflicts += 1;
                if *conflicts >= MAX_ATTEMPTS {
                    return Some("other ingest replicas kept appending first; nothing was stored, retry");
                }
                back_off(*conflicts);
            }
            Again::Rest => {}
            // A log that bounds no caller is not waited for.
            Again::Unreachable if self.answer_within.is_none() => return Some(UNREACHABLE),
            // Callers are answered by their bound meanwhile.
            Again::Unreachable => {
                if self.out_of_service.reason().is_none() {
                    thread::sleep(WAIT_OUT);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
