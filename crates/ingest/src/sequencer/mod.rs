//! The sequencer: the single thread that decides where each report goes
//! and appends it.
//!
//! Reports arrive validated on a bounded channel. The sequencer takes
//! whatever has queued up (up to [`MAX_BATCH`]), and for each: resolves an
//! idempotent retry, chooses or opens its incident, derives its zone and
//! encodes its event at the next position. The whole batch is then one
//! transaction and is answered only once it is on disk: this is the group
//! commit that lets hundreds of concurrent submitters share a sync. On the
//! embedded log the fsync happens on a thread of its own ([`crate::release`]),
//! while the sequencer decides the next batch.
//! Grouping is sequential by construction, so two reports of the same
//! event arriving together cannot both open an incident.

use std::{
    collections::HashMap,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot, watch};
use truce_domain::{
    IncidentId, PartyId, Position, ReportId, Timestamp,
    event::{EventBody, IncidentReviewed, RecordedEvent, ReportAmended, ReportRecorded, ReportRetracted},
    geo::Demarcation,
    grouping::{GroupingPolicy, IncidentIndex},
    ids::ClientReportId,
    incident::{Incident, IncidentSummary},
    report::{Report, ReportSignature, Retraction, StoredReport},
    review::{Refusal, Review, apply_review},
    statement::replaces_current,
};
use truce_log::{Committed, Head, LogError, NewEntry, SequencedLog};

use crate::{
    folded::Folded,
    release::{OutOfService, Publisher, Release, Reply, Settled},
};
use truce_proto::{
    ServiceError,
    convert::{StoredEvent, event_from_wire, event_to_wire},
};

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

/// A validated report to record.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The client's idempotency key, if any.
    pub client_report_id: Option<ClientReportId>,
    /// The report.
    pub report: Report,
    /// SHA-256 of its canonical encoding.
    pub digest: [u8; 32],
    /// When it arrived.
    pub received_at: Timestamp,
    /// The party's verified signature, if it signed.
    pub signature: Option<ReportSignature>,
}

/// Where a report was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Its id.
    pub report_id: ReportId,
    /// Its incident.
    pub incident_id: IncidentId,
    /// True when it opened the incident.
    pub opened_incident: bool,
    /// When it was received.
    pub received_at: Timestamp,
    /// True when this answers an earlier submission with the same key.
    pub replayed: bool,
}

/// Where a review was recorded, and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    /// The review's position.
    pub position: Position,
    /// The incident after it.
    pub incident: IncidentSummary,
}

/// A validated amendment: a new version of a report.
#[derive(Debug, Clone)]
pub struct Amendment {
    /// The report amended.
    pub report_id: ReportId,
    /// The new version.
    pub report: Report,
    /// Why.
    pub reason: String,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The party's verified signature over the amendment's statement, if
    /// it signed.
    pub signature: Option<ReportSignature>,
    /// The version it replaces, when the request names one (a signed one
    /// does): it applies to that version only.
    pub replaces_version: Option<u32>,
    /// The caller's party, which must be the reporting party; `None` for an
    /// anonymous caller in insecure mode.
    pub by: Option<PartyId>,
}

/// A validated retraction.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// The report retracted.
    pub report_id: ReportId,
    /// Why.
    pub reason: String,
    /// The party's verified signature over the retraction's statement, if
    /// it signed.
    pub signature: Option<ReportSignature>,
    /// The version it retracts, as for [`Amendment::replaces_version`].
    pub replaces_version: Option<u32>,
    /// The caller's party, as for [`Amendment::by`].
    pub by: Option<PartyId>,
}

/// Where an amendment or retraction was recorded, and what it left.
#[derive(Debug, Clone, PartialEq)]
pub struct Revised {
    /// The event's position.
    pub position: Position,
    /// The report's current version.
    pub report: StoredReport,
    /// The incident after it.
    pub incident: IncidentSummary,
}

/// What the sequencer is asked to record.
// Reports are the common case and the largest variant; boxing would cost
// an allocation per report for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Command {
    /// A report.
    Report(Submission),
    /// A monitor's ruling.
    Review(Review),
    /// A new version of a report.
    Amend(Amendment),
    /// A report's withdrawal.
    Retract(Withdrawal),
}

/// What it recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A report.
    Accepted(Accepted),
    /// A ruling (rare, and large: boxed).
    Reviewed(Box<Reviewed>),
    /// An amendment or retraction (rare, and large: boxed).
    Revised(Box<Revised>),
}

/// Hands submissions to the sequencer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Submitter {
    tx: mpsc::Sender<(Command, Reply)>,
    out_of_service: OutOfService,
    /// How long a caller waits while writes do not get through, when the
    /// log bounds it.
    bound: Option<AnswerBound>,
}

/// How long a caller waits on a log that bounds it.
#[derive(Debug, Clone)]
struct AnswerBound {
    /// Past this with no batch completing, a caller is answered.
    within: Duration,
    /// When the sequencer last completed a batch in time (see
    /// [`kept_up`]).
    progress: watch::Receiver<Instant>,
}

impl AnswerBound {
    /// Returns once a caller that began waiting at `started` is owed an
    /// answer: it has waited `within`, and no batch completed in time over
    /// the last `within`.
    async fn overdue(&self, started: Instant) {
        loop {
            let due = answer_due(started, *self.progress.borrow(), self.within);
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// When a caller that began waiting at `started` is answered UNAVAILABLE,
/// the sequencer having last completed a batch in time at `progress`:
/// once it has waited `within` with no batch completing meanwhile. While
/// batches complete, callers wait their turn however busy the log.
fn answer_due(started: Instant, progress: Instant, within: Duration) -> Instant {
    started.max(progress) + within
}

/// Whether a batch that stored `stored` entries in `took` counts as
/// progress for callers bound by `within`: completed within three quarters
/// of it, at a pace that would store a full batch ([`MAX_SHARED_BATCH`])
/// in that time too. A caller is then answered within 1.75 times the bound
/// (the batch ahead of its own, and the bound) whatever the log does, slow
/// or silent; only one queued behind more than a batch waits longer, and
/// only while the log keeps that pace: a busy log, not a failing one.
fn kept_up(took: Duration, stored: usize, within: Duration) -> bool {
    let most = within * 3 / 4;
    took <= most && (stored == 0 || took * MAX_SHARED_BATCH as u32 <= most * stored as u32)
}

impl Submitter {
    /// Holds the reason once storage has failed and every write is
    /// refused until the process restarts.
    pub fn out_of_service(&self) -> watch::Receiver<Option<String>> {
        self.out_of_service.watch()
    }

    async fn send(&self, command: Command) -> Result<Outcome, ServiceError> {
        let advice = retry_advice(&command);
        let exchange = async {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send((command, reply))
                .await
                .map_err(|_| ServiceError::Unavailable("the ingest service is shutting down".into()))?;
            answer
                .await
                .map_err(|_| ServiceError::Unavailable("the ingest service is shutting down".into()))?
        };
        let Some(bound) = &self.bound else {
            return exchange.await;
        };
        // A caller answered so stops waiting: the sequencer decides no
        // command whose caller is gone, but one already being appended
        // may still be recorded.
        let started = Instant::now();
        tokio::select! {
            answer = exchange => answer,
            () = bound.overdue(started) => Err(ServiceError::Unavailable(format!(
                "the write was not stored within {:?} (the log is failing or slow, or other ingest replicas \
                 keep appending first); it may or may not be recorded: {advice}",
                bound.within
            ))),
        }
    }

    /// Records `submission`, returning once it is durable.
    pub async fn submit(&self, submission: Submission) -> Result<Accepted, ServiceError> {
        match self.send(Command::Report(submission)).await? {
            Outcome::Accepted(accepted) => Ok(accepted),
            _ => Err(internal("a report was answered as something else")),
        }
    }

    /// Records `review`, returning once it is durable.
    pub async fn review(&self, review: Review) -> Result<Reviewed, ServiceError> {
        match self.send(Command::Review(review)).await? {
            Outcome::Reviewed(reviewed) => Ok(*reviewed),
            _ => Err(internal("a review was answered as something else")),
        }
    }

    /// Records an amendment or a retraction, returning once it is durable.
    pub async fn revise(&self, command: Command) -> Result<Revised, ServiceError> {
        match self.send(command).await? {
            Outcome::Revised(revised) => Ok(*revised),
            _ => Err(internal("a revision was answered as something else")),
        }
    }
}

/// What the sequencer needs to decide.
#[derive(Debug, Clone)]
pub struct Rules {
    /// When reports are near enough to group.
    pub grouping: GroupingPolicy,
    /// The demarcation geometry, if configured.
    pub demarcation: Option<Demarcation>,
    /// Mediator parties that must agree on a confirmed breach.
    pub quorum: usize,
}

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

/// A batch whose append failed part way, its decisions still in the
/// state: at least `appended` of its entries are stored.
struct Unsettled {
    admitted: Vec<Admitted>,
    appended: usize,
}

/// How one attempt at a batch ended.
enum Attempt {
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
enum Again {
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

fn corrupt(position: u64, what: String) -> LogError {
    LogError::Corrupt { position, what }
}

/// Replays the log into the grouping index. Only each event's incident
/// summary is decoded: the index holds nothing else.
fn rebuild_index(store: &dyn SequencedLog) -> Result<IncidentIndex, LogError> {
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

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grouping: GroupingPolicy::default(),
            demarcation: None,
            quorum: truce_domain::review::DEFAULT_QUORUM,
        }
    }
}

/// An event admitted to the current batch.
struct Admitted {
    entry: NewEntry,
    /// The event the entry encodes, until it is handed on once durable.
    event: Option<RecordedEvent>,
    outcome: Outcome,
    /// The report's content digest, for retries within the batch.
    digest: Option<[u8; 32]>,
    /// What the entry replaced in the state, to take it out again if it
    /// is not stored (on a shared log: the embedded one rebuilds instead).
    undo: Option<Undo>,
}

/// An incident's summary before an entry changed it.
struct Undo {
    incident: IncidentId,
    /// `None` when the entry opened it.
    before: Option<Arc<IncidentSummary>>,
}

/// What the sequencer decided for one submission.
enum Decision {
    /// Recorded as `admitted[i]` of the batch.
    New(usize),
    /// A retry of `admitted[i]` within the same batch.
    Echo(usize),
    /// A retry of a report already in the log: its answer.
    Replay(Accepted),
}

impl Decision {
    /// The entry of the batch the answer depends on, if any.
    fn entry(&self) -> Option<usize> {
        match self {
            Decision::New(i) | Decision::Echo(i) => Some(*i),
            Decision::Replay(_) => None,
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

    /// Decides `pending` and appends it once.
    fn attempt(&mut self, pending: Vec<(Command, Reply)>) -> Attempt {
        // Once the log failed to answer, the rest of the batch is not
        // made to wait for it again, one read after another.
        let mut unreachable: Option<ServiceError> = None;
        let known = match self.look_up_keys(&pending) {
            Ok(known) => known,
            // Nothing decided yet: the batch waits for the log.
            Err(LogError::Unavailable(why)) if self.answer_within.is_some() => {
                tracing::debug!(%why, "cannot look keys up; waiting for the log");
                return Attempt::Again {
                    pending,
                    then: Again::Unreachable,
                };
            }
            Err(error) => {
                unreachable = Some(log_failure(error));
                HashMap::new()
            }
        };
        // A shared log may refuse the batch; keep the commands to decide
        // them again.
        let retained: Option<Vec<Command>> = self
            .store
            .is_shared()
            .then(|| pending.iter().map(|(command, _)| command.clone()).collect());
        let recorded_at = Timestamp::from_system(std::time::SystemTime::now());
        let mut admitted: Vec<Admitted> = Vec::with_capacity(pending.len());
        let mut keys_in_batch: HashMap<String, usize> = HashMap::new();
        let mut outcomes: Vec<(Reply, Result<Decision, ServiceError>)> = Vec::with_capacity(pending.len());
        for (command, reply) in pending {
            let outcome = match &unreachable {
                Some(error) => Err(error.clone()),
                None => match command {
                    Command::Report(submission) => {
                        self.admit(submission, recorded_at, &known, &mut admitted, &mut keys_in_batch)
                    }
                    Command::Review(review) => self.admit_review(review, recorded_at, &mut admitted),
                    Command::Amend(amendment) => self.admit_amendment(amendment, recorded_at, &mut admitted),
                    Command::Retract(withdrawal) => self.admit_withdrawal(withdrawal, recorded_at, &mut admitted),
                },
            };
            if let Err(error @ ServiceError::Unavailable(_)) = &outcome {
                unreachable = Some(error.clone());
            }
            outcomes.push((reply, outcome));
        }
        let entries: Vec<NewEntry> = admitted.iter().map(|a| a.entry.clone()).collect();
        let appended = if entries.is_empty() {
            Ok(self.store.head())
        } else {
            self.store.append(&entries)
        };
        let clean = unreachable.is_none();
        match (appended, retained) {
            (Ok(head), retained) => {
                let stored = stored_of(&entries, head);
                if stored > 0 {
                    self.release.committed();
                }
                if stored == admitted.len() {
                    let moved = (!entries.is_empty()).then_some(head);
                    self.answer(outcomes, admitted, stored, moved);
                    return Attempt::Answered { clean };
                }
                // The log took the first entries only (its time for one
                // batch was up): the rest is decided again.
                let Some(retained) = retained else {
                    self.answer(outcomes, admitted, stored, Some(head));
                    return Attempt::Answered { clean: false };
                };
                self.roll_back(&admitted[stored..]);
                self.settled(outcomes, retained, admitted, stored, None, Again::Rest)
            }
            (Err(error), Some(retained)) => self.failed_shared(error, outcomes, retained, admitted),
            (Err(error), None) => {
                tracing::error!(%error, reports = entries.len(), "append failed; nothing of the batch was stored");
                // Grouping decisions of the failed batch are in the
                // index; put it back as the log has it.
                let moved = match self.resync() {
                    Ok(head) => Some(head),
                    Err(error) => {
                        tracing::error!(%error, "cannot rebuild state after a failed append; refusing reports");
                        self.out_of_service.declare("storage is failing; see the server log");
                        None
                    }
                };
                self.answer(outcomes, admitted, 0, moved);
                Attempt::Answered { clean: false }
            }
        }
    }

    /// After an append to a shared log failed: works out what was stored,
    /// answers that, and gives back what is to be decided again.
    fn failed_shared(
        &mut self,
        error: LogError,
        outcomes: Vec<(Reply, Result<Decision, ServiceError>)>,
        retained: Vec<Command>,
        mut admitted: Vec<Admitted>,
    ) -> Attempt {
        let failure = match Failure::of(&error) {
            // Nothing was sent: the whole batch waits for the log.
            Some(Failure::Unsent) if self.answer_within.is_some() => {
                tracing::debug!(%error, "the log cannot be reached; waiting for it");
                self.roll_back(&admitted);
                return self.settled(outcomes, retained, admitted, 0, None, Again::Unreachable);
            }
            Some(failure) => failure,
            None => {
                tracing::error!(%error, "append failed; rebuilding the state from the log");
                match self.resync() {
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(%error, "cannot rebuild state after a failed append; refusing reports");
                        self.stale = true;
                    }
                }
                self.answer(outcomes, admitted, 0, None);
                return Attempt::Answered { clean: false };
            }
        };
        let appended = failure.appended();
        let in_doubt = failure.in_doubt();
        match self.settle(&admitted, appended) {
            Ok(stored) => {
                tracing::debug!(
                    appended,
                    stored,
                    admitted = admitted.len(),
                    head = self.store.head().position,
                    "settled a failed append"
                );
                // The entry in flight when the append failed, if it is not
                // in the log, may yet land there: it is answered so, never
                // decided again.
                let doubted = in_doubt.filter(|_| stored == appended).map(|i| (i, &error));
                let then = match failure {
                    Failure::Conflict { .. } => Again::Conflict,
                    _ => Again::Rest,
                };
                self.settled(outcomes, retained, admitted, stored, doubted, then)
            }
            Err(settling) => {
                let unreachable = matches!(settling, LogError::Unavailable(_));
                if unreachable {
                    tracing::warn!(%error, %settling, "cannot read the log after a failed append; settling it before the next batch");
                } else {
                    self.cannot_settle(&settling);
                }
                self.answer_unsettled(outcomes, retained, &mut admitted, appended, in_doubt, &error);
                if unreachable {
                    self.unsettled = Some(Unsettled { admitted, appended });
                }
                Attempt::Answered { clean: false }
            }
        }
    }

    /// Answers a batch whose failed append could not be settled: what is
    /// known stored is acknowledged, the entry in flight is in doubt, and
    /// the rest (never sent) is not stored.
    fn answer_unsettled(
        &mut self,
        outcomes: Vec<(Reply, Result<Decision, ServiceError>)>,
        retained: Vec<Command>,
        admitted: &mut [Admitted],
        appended: usize,
        in_doubt: Option<usize>,
        error: &LogError,
    ) {
        let answers = outcomes
            .into_iter()
            .zip(retained)
            .map(|((reply, outcome), command)| {
                let answer = match outcome {
                    Ok(decision) if in_doubt.is_some_and(|i| decision.entry() == Some(i)) => {
                        Err(in_doubt_error(error, &command))
                    }
                    Ok(decision) if decision.entry().is_some_and(|i| i >= appended) => Err(not_stored()),
                    outcome => resolve(outcome, admitted),
                };
                (reply, answer)
            })
            .collect();
        self.stored += appended;
        self.release.release(Settled {
            head: (appended > 0).then(|| self.store.head()),
            events: take_events(&mut admitted[..appended]),
            answers,
        });
    }

    /// Answers what the first `stored` entries of `admitted` settle
    /// (`doubted`: the entry in flight that is not in the log, answered in
    /// doubt), releases them, and gives back the commands whose answer
    /// rests on an entry not stored, to decide again after `then`.
    fn settled(
        &mut self,
        outcomes: Vec<(Reply, Result<Decision, ServiceError>)>,
        retained: Vec<Command>,
        mut admitted: Vec<Admitted>,
        stored: usize,
        doubted: Option<(usize, &LogError)>,
        then: Again,
    ) -> Attempt {
        let mut answers = Vec::with_capacity(outcomes.len());
        let mut pending = Vec::new();
        for ((reply, outcome), command) in outcomes.into_iter().zip(retained) {
            match &outcome {
                Ok(decision)
                    if let Some((i, error)) = doubted
                        && decision.entry() == Some(i) =>
                {
                    answers.push((reply, Err(in_doubt_error(error, &command))));
                }
                Ok(decision) if decision.entry().is_some_and(|i| i >= stored) => pending.push((command, reply)),
                _ => answers.push((reply, resolve(outcome, &admitted))),
            }
        }
        self.stored += stored;
        self.release.release(Settled {
            head: Some(self.store.head()),
            events: take_events(&mut admitted[..stored]),
            answers,
        });
        if pending.is_empty() {
            return Attempt::Answered { clean: false };
        }
        tracing::debug!(again = pending.len(), "deciding again after a failed append");
        Attempt::Again { pending, then }
    }

    /// Answers every command of a batch the log took whole (`stored` is
    /// all of it) or refused whole (`stored` is 0, each admitted entry
    /// answered not stored), and releases it.
    fn answer(
        &mut self,
        outcomes: Vec<(Reply, Result<Decision, ServiceError>)>,
        mut admitted: Vec<Admitted>,
        stored: usize,
        moved: Option<Head>,
    ) {
        let answers = outcomes
            .into_iter()
            .map(|(reply, outcome)| {
                let answer = match outcome {
                    Ok(decision) if decision.entry().is_some_and(|i| i >= stored) => Err(not_stored()),
                    outcome => resolve(outcome, &admitted),
                };
                (reply, answer)
            })
            .collect();
        self.stored += stored;
        self.release.release(Settled {
            head: moved,
            events: take_events(&mut admitted[..stored]),
            answers,
        });
    }

    /// Where the log holds each idempotency key of `pending`'s reports,
    /// asked all at once.
    fn look_up_keys(&self, pending: &[(Command, Reply)]) -> Result<HashMap<String, Option<u64>>, LogError> {
        let keys: Vec<String> = pending
            .iter()
            .filter_map(|(command, _)| match command {
                Command::Report(submission) => idempotency_key(submission),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.store.find_keys(&keys)?;
        Ok(keys.into_iter().zip(found).collect())
    }

    /// Before deciding: settles the batch whose failed append could not be
    /// read back, and rebuilds the state if a failure left it unknown. An
    /// error says the log still cannot be read, or (anything but the log
    /// being unreachable) that the service is now out.
    fn recover(&mut self) -> Result<(), LogError> {
        if let Some(mut unsettled) = self.unsettled.take() {
            match self.settle(&unsettled.admitted, unsettled.appended) {
                Ok(stored) => self.release.release(Settled {
                    head: Some(self.store.head()),
                    events: take_events(&mut unsettled.admitted[..stored]),
                    answers: Vec::new(),
                }),
                Err(error @ LogError::Unavailable(_)) => {
                    tracing::warn!(%error, "the log is still unreachable");
                    self.unsettled = Some(unsettled);
                    return Err(error);
                }
                Err(error) => {
                    self.cannot_settle(&error);
                    return Err(error);
                }
            }
        }
        if self.stale {
            match self.resync() {
                Ok(head) => self.release.release(Settled {
                    head: Some(head),
                    events: Vec::new(),
                    answers: Vec::new(),
                }),
                Err(error @ LogError::Unavailable(_)) => {
                    tracing::warn!(%error, "the log is still unreachable");
                    return Err(error);
                }
                Err(error) => {
                    self.cannot_settle(&error);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Takes the service out: what the log holds after a failed append
    /// cannot be read back as entries of this log (not the log being
    /// unreachable, which passes: that is waited out), so the state is
    /// unknown, and asking again would get the same answer; a restart
    /// rebuilds the state from the log, or says what is wrong with it.
    fn cannot_settle(&self, error: &LogError) {
        tracing::error!(%error, "cannot read the log back after a failed append; refusing writes until restarted");
        self.out_of_service
            .declare("the shared log could not be read back after a failed append; see the server log");
    }

    /// After an append that another writer beat or that failed part way:
    /// reads the log to its end, works out how many of `admitted` were
    /// stored (at least `appended`; they are a prefix, since each entry
    /// names the one before it), takes the rest out of the state, and
    /// applies what the other writers appended. All or nothing: once the
    /// log is read, nothing else is asked of it, and the state changes
    /// only once every entry read is decoded; an error after the read
    /// (entries that do not decode) is not the log being unreachable.
    fn settle(&mut self, admitted: &[Admitted], appended: usize) -> Result<usize, LogError> {
        let caught_up = self.store.catch_up()?;
        let stored = appended + ours_first(&admitted[appended..], &caught_up);
        let others = &caught_up[stored - appended..];
        let incidents = others
            .iter()
            .map(|entry| {
                StoredEvent::decode(entry.position, entry.payload.clone().into())
                    .and_then(|event| event.incident())
                    .map_err(|e| corrupt(entry.position, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.roll_back(&admitted[stored..]);
        for incident in incidents {
            self.index.upsert(incident);
        }
        Ok(stored)
    }

    /// Takes `admitted` (the end of a batch, not stored) out of the state,
    /// last first.
    fn roll_back(&mut self, admitted: &[Admitted]) {
        for undo in admitted.iter().rev().filter_map(|a| a.undo.as_ref()) {
            match &undo.before {
                Some(before) => self.index.upsert(Arc::clone(before)),
                None => self.index.remove(undo.incident),
            }
        }
    }

    /// Puts `summary` in the state, remembering on a shared log what it
    /// replaced.
    fn upsert(&mut self, summary: Arc<IncidentSummary>) -> Option<Undo> {
        let undo = self.store.is_shared().then(|| Undo {
            incident: summary.id,
            before: self.index.get(summary.id).cloned().map(Arc::new),
        });
        self.index.upsert(summary);
        undo
    }

    /// Rebuilds the state from the log, after a failure left it unknown,
    /// and returns the head.
    fn resync(&mut self) -> Result<Head, LogError> {
        self.store.catch_up()?;
        self.index = rebuild_index(self.store.as_ref())?;
        self.stale = false;
        Ok(self.store.head())
    }

    /// Decides one submission: a new report admitted to the batch, the
    /// answer to an idempotent retry, or a rejection.
    fn admit(
        &mut self,
        submission: Submission,
        recorded_at: Timestamp,
        known: &HashMap<String, Option<u64>>,
        admitted: &mut Vec<Admitted>,
        keys_in_batch: &mut HashMap<String, usize>,
    ) -> Result<Decision, ServiceError> {
        let key = idempotency_key(&submission);
        if let Some(key) = &key {
            if let Some(&i) = keys_in_batch.get(key) {
                let earlier = &admitted[i];
                return match (&earlier.outcome, earlier.digest) {
                    (Outcome::Accepted(_), Some(digest)) if digest == submission.digest => Ok(Decision::Echo(i)),
                    _ => Err(key_reused()),
                };
            }
            let found = match known.get(key) {
                Some(found) => *found,
                None => self.store.find_key(key).map_err(log_failure)?,
            };
            if let Some(position) = found {
                return self.replay(position, &submission).map(Decision::Replay);
            }
        }
        let position = Position((self.store.head().position + 1) + admitted.len() as u64);
        let report_id = ReportId(position);
        let (incident_id, opened) = match submission.report.incident_id {
            Some(id) => {
                if self.index.get(id).is_none() {
                    return Err(ServiceError::NotFound {
                        kind: "incident",
                        id: id.to_string(),
                    });
                }
                (id, false)
            }
            None => match self.index.find_match(&submission.report, &self.rules.grouping) {
                Some(id) => (id, false),
                None => (IncidentId(position), true),
            },
        };
        let derived_zone = match (&self.rules.demarcation, submission.report.location.point) {
            (Some(demarcation), Some(point)) => demarcation.zone_of(point),
            _ => None,
        };
        let stored = StoredReport {
            report_id,
            incident_id,
            received_at: submission.received_at,
            report: submission.report,
            derived_zone,
            client_report_id: submission.client_report_id,
            signature: submission.signature,
            version: 1,
            version_position: position,
            amendment_reason: None,
            retraction: None,
        };
        let (summary, previous_position) = if opened {
            (IncidentSummary::open(&stored, recorded_at), None)
        } else {
            let mut summary = self
                .index
                .get(incident_id)
                .cloned()
                .ok_or_else(|| internal("incident vanished"))?;
            let previous = summary.updated_position;
            summary.absorb(&stored, recorded_at);
            (summary, Some(previous))
        };
        let accepted = Accepted {
            report_id,
            incident_id,
            opened_incident: opened,
            received_at: stored.received_at,
            replayed: false,
        };
        let summary = Arc::new(summary);
        let event = RecordedEvent {
            position,
            recorded_at,
            body: EventBody::ReportRecorded(ReportRecorded {
                report: Arc::new(stored),
                opened_incident: opened,
                incident: Arc::clone(&summary),
                content_digest: submission.digest,
                previous_position,
            }),
        };
        let undo = self.upsert(summary);
        if let Some(key) = &key {
            keys_in_batch.insert(key.clone(), admitted.len());
        }
        admitted.push(Admitted {
            entry: NewEntry {
                position: position.0,
                payload: event_to_wire(&event),
                idempotency_key: key,
            },
            event: Some(event),
            outcome: Outcome::Accepted(accepted),
            digest: Some(submission.digest),
            undo,
        });
        Ok(Decision::New(admitted.len() - 1))
    }

    /// Decides one review.
    fn admit_review(
        &mut self,
        review: Review,
        recorded_at: Timestamp,
        admitted: &mut Vec<Admitted>,
    ) -> Result<Decision, ServiceError> {
        let mut incident = self
            .index
            .get(review.incident_id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound {
                kind: "incident",
                id: review.incident_id.to_string(),
            })?;
        let position = Position((self.store.head().position + 1) + admitted.len() as u64);
        let previous_position = incident.updated_position;
        apply_review(&mut incident, &review, self.rules.quorum, recorded_at, position).map_err(
            |refusal| match refusal {
                Refusal::OwnParty(why) => ServiceError::PermissionDenied(why),
                Refusal::AlreadyRuled(why) => ServiceError::FailedPrecondition(why),
            },
        )?;
        let event = RecordedEvent {
            position,
            recorded_at,
            body: EventBody::IncidentReviewed(IncidentReviewed {
                review,
                incident: Arc::new(incident.clone()),
                previous_position,
            }),
        };
        let undo = self.upsert(Arc::clone(event.shared_incident()));
        admitted.push(Admitted {
            entry: NewEntry {
                position: position.0,
                payload: event_to_wire(&event),
                idempotency_key: None,
            },
            event: Some(event),
            outcome: Outcome::Reviewed(Box::new(Reviewed { position, incident })),
            digest: None,
            undo,
        });
        Ok(Decision::New(admitted.len() - 1))
    }

    /// The event at `position`, durable or admitted to this batch.
    fn event_at(&self, position: Position, admitted: &[Admitted]) -> Result<Option<RecordedEvent>, ServiceError> {
        let durable = self.store.head().position + 1;
        let payload = if position.0 >= durable {
            admitted
                .get((position.0 - durable) as usize)
                .map(|a| a.entry.payload.clone())
        } else {
            self.store.payload(position.0).map_err(log_failure)?
        };
        payload
            .map(|bytes| event_from_wire(position.0, &bytes).map_err(internal))
            .transpose()
    }

    /// The incident with every report in its current version, rebuilt from
    /// its events: they link back from its last one, so this reads only
    /// the incident's own events, oldest first once reversed.
    fn incident_history(&self, summary: &IncidentSummary, admitted: &[Admitted]) -> Result<Incident, ServiceError> {
        let mut events = Vec::new();
        let mut at = Some(summary.updated_position);
        while let Some(position) = at {
            let event = self
                .event_at(position, admitted)?
                .ok_or_else(|| internal(format!("{} links to missing position {position}", summary.id)))?;
            at = event.previous_position();
            events.push(event);
        }
        let mut events = events.into_iter().rev();
        let Some(RecordedEvent {
            body: EventBody::ReportRecorded(opening),
            ..
        }) = events.next()
        else {
            return Err(internal(format!("{} does not begin with a report", summary.id)));
        };
        let mut incident = Incident::opened(opening.report, opening.incident);
        for event in events {
            incident.apply(&event);
        }
        Ok(incident)
    }

    /// The incident of the report to revise and the report's current
    /// version, once `by` may revise it. A party is told the same whether
    /// the report is another party's or does not exist, so that it cannot
    /// probe which ids exist.
    fn revisable(
        &self,
        report_id: ReportId,
        by: Option<&PartyId>,
        admitted: &[Admitted],
    ) -> Result<(Incident, Arc<StoredReport>), ServiceError> {
        let not_found = || match by {
            Some(by) => ServiceError::PermissionDenied(format!(
                "{by} made no report {report_id}: only the party that made a report may amend or retract it"
            )),
            None => ServiceError::NotFound {
                kind: "report",
                id: report_id.to_string(),
            },
        };
        let incident_id = match self.event_at(report_id.0, admitted)? {
            Some(RecordedEvent {
                body: EventBody::ReportRecorded(recorded),
                ..
            }) => recorded.report.incident_id,
            _ => return Err(not_found()),
        };
        let summary = self.index.get(incident_id).ok_or_else(not_found)?;
        let incident = self.incident_history(summary, admitted)?;
        let current = incident.report(report_id).cloned().ok_or_else(not_found)?;
        let party = &current.report.reporting_party;
        if by.is_some_and(|by| by != party) {
            return Err(not_found());
        }
        if let Some(retraction) = &current.retraction {
            return Err(ServiceError::FailedPrecondition(format!(
                "{report_id} was retracted at position {}",
                retraction.position
            )));
        }
        Ok((incident, current))
    }

    /// Decides one amendment.
    fn admit_amendment(
        &mut self,
        amendment: Amendment,
        recorded_at: Timestamp,
        admitted: &mut Vec<Admitted>,
    ) -> Result<Decision, ServiceError> {
        let (incident, current) = self.revisable(amendment.report_id, amendment.by.as_ref(), admitted)?;
        replaces_current(current.report_id, current.version, amendment.replaces_version)
            .map_err(ServiceError::FailedPrecondition)?;
        let party = &current.report.reporting_party;
        if amendment.report.reporting_party != *party {
            return Err(ServiceError::invalid(
                "report.reporting_party",
                format!("must stay {party}: a report is amended by the party that made it"),
            ));
        }
        if let Some(other) = amendment.report.incident_id
            && other != current.incident_id
        {
            return Err(ServiceError::invalid(
                "report.incident_id",
                format!(
                    "an amendment stays in {}; retract and report anew to move it",
                    current.incident_id
                ),
            ));
        }
        let position = Position((self.store.head().position + 1) + admitted.len() as u64);
        let derived_zone = match (&self.rules.demarcation, amendment.report.location.point) {
            (Some(demarcation), Some(point)) => demarcation.zone_of(point),
            _ => None,
        };
        let amended = StoredReport {
            received_at: amendment.received_at,
            report: amendment.report,
            derived_zone,
            signature: amendment.signature,
            version: current.version + 1,
            version_position: position,
            amendment_reason: Some(amendment.reason),
            ..StoredReport::clone(&current)
        };
        let summary = incident.summary.refolded(
            incident.reports.iter().map(|r| {
                if r.report_id == amended.report_id {
                    &amended
                } else {
                    r.as_ref()
                }
            }),
            position,
            recorded_at,
        );
        let event = RecordedEvent {
            position,
            recorded_at,
            body: EventBody::ReportAmended(ReportAmended {
                report: Arc::new(amended.clone()),
                incident: Arc::new(summary.clone()),
                previous_position: incident.summary.updated_position,
            }),
        };
        Ok(self.admit_revision(event, amended, summary, admitted))
    }

    /// Decides one retraction.
    fn admit_withdrawal(
        &mut self,
        withdrawal: Withdrawal,
        recorded_at: Timestamp,
        admitted: &mut Vec<Admitted>,
    ) -> Result<Decision, ServiceError> {
        let (incident, current) = self.revisable(withdrawal.report_id, withdrawal.by.as_ref(), admitted)?;
        replaces_current(current.report_id, current.version, withdrawal.replaces_version)
            .map_err(ServiceError::FailedPrecondition)?;
        let position = Position((self.store.head().position + 1) + admitted.len() as u64);
        let retracted = StoredReport {
            retraction: Some(Retraction {
                position,
                recorded_at,
                reason: withdrawal.reason.clone(),
            }),
            ..StoredReport::clone(&current)
        };
        let summary = incident.summary.refolded(
            incident.reports.iter().map(|r| {
                if r.report_id == retracted.report_id {
                    &retracted
                } else {
                    r.as_ref()
                }
            }),
            position,
            recorded_at,
        );
        let event = RecordedEvent {
            position,
            recorded_at,
            body: EventBody::ReportRetracted(ReportRetracted {
                report_id: current.report_id,
                reporting_party: current.report.reporting_party.clone(),
                reason: withdrawal.reason,
                incident: Arc::new(summary.clone()),
                previous_position: incident.summary.updated_position,
                version: current.version,
                signature: withdrawal.signature,
            }),
        };
        Ok(self.admit_revision(event, retracted, summary, admitted))
    }

    fn admit_revision(
        &mut self,
        event: RecordedEvent,
        report: StoredReport,
        incident: IncidentSummary,
        admitted: &mut Vec<Admitted>,
    ) -> Decision {
        let undo = self.upsert(Arc::clone(event.shared_incident()));
        let position = event.position;
        admitted.push(Admitted {
            entry: NewEntry {
                position: position.0,
                payload: event_to_wire(&event),
                idempotency_key: None,
            },
            event: Some(event),
            outcome: Outcome::Revised(Box::new(Revised {
                position,
                report,
                incident,
            })),
            digest: None,
            undo,
        });
        Decision::New(admitted.len() - 1)
    }

    /// The original answer for a key seen in an earlier batch.
    fn replay(&self, position: u64, submission: &Submission) -> Result<Accepted, ServiceError> {
        let payload = self
            .store
            .payload(position)
            .map_err(log_failure)?
            .ok_or_else(|| internal(format!("idempotency key points at missing position {position}")))?;
        let event = event_from_wire(position, &payload).map_err(internal)?;
        let EventBody::ReportRecorded(recorded) = event.body else {
            return Err(internal(format!(
                "idempotency key points at position {position}, which is no report"
            )));
        };
        if recorded.content_digest != submission.digest {
            return Err(key_reused());
        }
        Ok(Accepted {
            report_id: recorded.report.report_id,
            incident_id: recorded.report.incident_id,
            opened_incident: recorded.opened_incident,
            received_at: recorded.report.received_at,
            replayed: true,
        })
    }
}

/// How an append to a shared log failed, for settling it.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// Nothing was sent (the log unreachable, or no stream leader to take
    /// the first entry): nothing is stored.
    Unsent,
    /// Another writer appended first: the first `appended` entries are
    /// stored, none after.
    Conflict { appended: usize },
    /// Interrupted: the first `appended` entries are stored, the next was
    /// in flight and may or may not be, none after it was sent.
    InDoubt { appended: usize },
}

impl Failure {
    /// The failure `error` reports, if settling can tell what was stored.
    fn of(error: &LogError) -> Option<Failure> {
        match error {
            LogError::Conflict { appended, .. } => Some(Failure::Conflict { appended: *appended }),
            LogError::Unavailable(_) => Some(Failure::Unsent),
            LogError::Uncertain { appended, .. } => Some(Failure::InDoubt { appended: *appended }),
            _ => None,
        }
    }

    /// Entries known stored.
    fn appended(self) -> usize {
        match self {
            Failure::Unsent => 0,
            Failure::Conflict { appended } | Failure::InDoubt { appended } => appended,
        }
    }

    /// The entry that may or may not be stored.
    fn in_doubt(self) -> Option<usize> {
        match self {
            Failure::Unsent | Failure::Conflict { .. } => None,
            Failure::InDoubt { appended } => Some(appended),
        }
    }
}

/// How many of `entries` a log that answered `head` stored: all of them,
/// or (a shared log whose time for one batch was up) the first few.
fn stored_of(entries: &[NewEntry], head: Head) -> usize {
    match entries.first() {
        Some(first) => ((head.position + 1).saturating_sub(first.position) as usize).min(entries.len()),
        None => 0,
    }
}

/// How many of `admitted` begin `caught_up`, entry for entry.
fn ours_first(admitted: &[Admitted], caught_up: &[truce_log::LogEntry]) -> usize {
    admitted
        .iter()
        .zip(caught_up)
        .take_while(|(ours, entry)| entry.position == ours.entry.position && entry.payload == ours.entry.payload)
        .count()
}

/// Answers every command of `pending` UNAVAILABLE for `reason`.
fn refuse_all(pending: Vec<(Command, Reply)>, reason: &str) {
    for (_, reply) in pending {
        let _ = reply.send(Err(ServiceError::Unavailable(reason.to_owned())));
    }
}

/// Why writes are refused while the log cannot be read.
const UNREACHABLE: &str = "the log is unreachable; nothing was stored, retry";

fn not_stored() -> ServiceError {
    ServiceError::Unavailable("the log failed; this write was not stored, retry".into())
}

/// The answer for a write whose append was sent and not confirmed.
fn in_doubt_error(error: &LogError, command: &Command) -> ServiceError {
    ServiceError::Unavailable(format!(
        "the log did not confirm the write ({error}); it may or may not be recorded: {}",
        retry_advice(command)
    ))
}

/// How to retry `command` safely when it may or may not be recorded.
fn retry_advice(command: &Command) -> &'static str {
    match command {
        Command::Report(submission) if submission.client_report_id.is_some() => {
            "retry it with the same client_report_id"
        }
        Command::Report(_) => {
            "a retry without a client_report_id may record it twice; read the incident first, or send \
             reports with a client_report_id"
        }
        Command::Review(_) => "read the incident before reviewing it again",
        Command::Amend(_) | Command::Retract(_) => {
            "read the report's current version first; a retry naming replaces_version is refused if this \
             one was recorded"
        }
    }
}

/// The events of a stored batch, handed on once it is durable.
fn take_events(admitted: &mut [Admitted]) -> Vec<RecordedEvent> {
    admitted.iter_mut().filter_map(|a| a.event.take()).collect()
}

/// The answer for a settled decision.
fn resolve(outcome: Result<Decision, ServiceError>, admitted: &[Admitted]) -> Result<Outcome, ServiceError> {
    outcome.map(|decision| match decision {
        Decision::New(i) => admitted[i].outcome.clone(),
        Decision::Echo(i) => match &admitted[i].outcome {
            Outcome::Accepted(accepted) => Outcome::Accepted(Accepted {
                replayed: true,
                ..accepted.clone()
            }),
            other => other.clone(),
        },
        Decision::Replay(accepted) => Outcome::Accepted(accepted),
    })
}

/// The log's idempotency key of a report: its party's client key.
fn idempotency_key(submission: &Submission) -> Option<String> {
    submission
        .client_report_id
        .as_ref()
        .map(|k| format!("{}/{}", submission.report.reporting_party, k.as_str()))
}

fn key_reused() -> ServiceError {
    ServiceError::AlreadyExists(
        "client_report_id was already used by this party for a different report; use a new key for new content".into(),
    )
}

/// A log that cannot be reached is worth a retry; anything else is a
/// fault.
fn log_failure(error: LogError) -> ServiceError {
    match error {
        LogError::Unavailable(why) => {
            ServiceError::Unavailable(format!("the log is unreachable ({why}); nothing was recorded, retry"))
        }
        other => internal(other),
    }
}

fn internal(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use truce_proto::{
        convert::{Received, report_digest, report_from_wire},
        v1,
    };

    use truce_log::LogStore;

    use super::*;
    use crate::testing::{DOWN_DELAY, FailingDisk, SHARED_ANSWER_WITHIN, Script, SharedLog, Trouble, wire_report};

    fn submission(key: Option<&str>, wire: &v1::Report) -> Submission {
        Submission {
            client_report_id: key.map(|k| k.parse().unwrap()),
            report: report_from_wire(wire, "report", Received::Stored).unwrap(),
            digest: report_digest(wire),
            received_at: Timestamp(0),
            signature: None,
        }
    }

    fn started(dir: &std::path::Path) -> (Submitter, watch::Receiver<Head>) {
        let store = LogStore::open(dir).unwrap();
        let (head_tx, head_rx) = watch::channel(store.head());
        let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
        (submitter, head_rx)
    }

    #[tokio::test]
    async fn concurrent_duplicates_store_once_and_group_together() {
        let dir = tempfile::tempdir().unwrap();
        let (submitter, head) = started(dir.path());
        let first = wire_report("a gunman crossed");
        let second = wire_report("shots at the line");
        // Submitted together, these most likely share one batch; the
        // answers must be the same whether they do or not.
        let (a, b, c) = tokio::join!(
            submitter.submit(submission(Some("k1"), &first)),
            submitter.submit(submission(Some("k1"), &first)),
            submitter.submit(submission(Some("k2"), &second)),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.report_id, b.report_id);
        assert!(a.replayed != b.replayed, "exactly one of the two is the original");
        assert_eq!(
            c.incident_id, a.incident_id,
            "same category, area and time: one incident"
        );
        assert_eq!(head.borrow().position, 2);

        let conflict = submitter.submit(submission(Some("k1"), &second)).await.unwrap_err();
        assert!(matches!(conflict, ServiceError::AlreadyExists(_)));
        assert_eq!(head.borrow().position, 2);
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_every_write_until_restarted_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let (head_tx, head) = watch::channel(store.head());
        let (submitter, thread) =
            start(Box::new(FailingDisk(Box::new(store))), Rules::default(), head_tx, None).unwrap();
        let out_of_service = submitter.out_of_service();
        assert_eq!(*out_of_service.borrow(), None);

        let first = wire_report("shots at the line");
        let error = submitter.submit(submission(Some("k1"), &first)).await.unwrap_err();
        assert!(
            matches!(&error, ServiceError::Unavailable(why) if why.contains("could not be synced")),
            "{error:?}"
        );
        assert_eq!(head.borrow().position, 0, "readers never see what may not be on disk");
        let reason = out_of_service.borrow().clone().expect("out of service");
        assert!(reason.contains("storage is failing"), "{reason}");

        // Nothing more is appended, not even to a disk that took the last
        // write: what it holds is no longer known.
        let second = wire_report("a second crossing");
        let error = submitter.submit(submission(Some("k2"), &second)).await.unwrap_err();
        assert!(
            matches!(&error, ServiceError::Unavailable(why) if why.contains("storage is failing")),
            "{error:?}"
        );

        // Restarted over what the disk holds: the first report reached the
        // log before its sync failed, and its retry says so; the second
        // was never appended and is stored now, once.
        drop(submitter);
        thread.join().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.head().position, 1);
        let (head_tx, head) = watch::channel(store.head());
        let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
        let retried = submitter.submit(submission(Some("k1"), &first)).await.unwrap();
        assert!(retried.replayed, "the retry answers the stored report");
        let stored = submitter.submit(submission(Some("k2"), &second)).await.unwrap();
        assert!(!stored.replayed);
        assert_eq!(head.borrow().position, 2);
        assert_eq!(*submitter.out_of_service().borrow(), None);
    }

    /// A sequencer over an embedded log acting as a shared one.
    fn started_shared(
        dir: &std::path::Path,
    ) -> (
        Submitter,
        watch::Receiver<Head>,
        std::sync::Arc<std::sync::Mutex<Script>>,
    ) {
        let (store, script) = SharedLog::new(Box::new(LogStore::open(dir).unwrap()));
        let (head_tx, head_rx) = watch::channel(store.head());
        let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
        (submitter, head_rx, script)
    }

    #[tokio::test]
    async fn an_unconfirmed_write_missing_from_the_log_is_answered_in_doubt_and_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let (submitter, head, script) = started_shared(dir.path());
        script.lock().unwrap().next.push_back(Trouble::Lost);
        let report = wire_report("shots at the line");
        let error = submitter.submit(submission(Some("k1"), &report)).await.unwrap_err();
        assert!(
            matches!(&error, ServiceError::Unavailable(why) if why.contains("may or may not be recorded")),
            "{error:?}"
        );
        // It may still land: the sequencer does not append it again.
        assert_eq!(head.borrow().position, 0);
        let retried = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
        assert!(!retried.replayed);
        assert_eq!(head.borrow().position, 1);
    }

    #[tokio::test]
    async fn an_unconfirmed_write_found_in_the_log_is_acknowledged_once() {
        let dir = tempfile::tempdir().unwrap();
        let (submitter, head, script) = started_shared(dir.path());
        script.lock().unwrap().next.push_back(Trouble::Unconfirmed);
        let report = wire_report("shots at the line");
        let accepted = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
        assert!(!accepted.replayed);
        assert_eq!(head.borrow().position, 1);
        let retried = submitter.submit(submission(Some("k1"), &report)).await.unwrap();
        assert!(retried.replayed);
        assert_eq!(retried.report_id, accepted.report_id);
        assert_eq!(head.borrow().position, 1);
    }

    #[tokio::test]
    async fn callers_are_answered_within_the_bound_while_the_log_is_down_and_writes_resume_after() {
        let dir = tempfile::tempdir().unwrap();
        let (submitter, head, script) = started_shared(dir.path());
        script.lock().unwrap().down = true;
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..20 {
            let submitter = submitter.clone();
            calls.spawn(async move {
                let started = std::time::Instant::now();
                let report = wire_report(&format!("report {n}"));
                let answer = submitter.submit(submission(None, &report)).await;
                (answer, started.elapsed())
            });
        }
        while let Some(call) = calls.join_next().await {
            let (answer, took) = call.unwrap();
            assert!(matches!(answer, Err(ServiceError::Unavailable(_))), "{answer:?}");
            // Each of the log's failures takes DOWN_DELAY; the first one
            // tells every caller past the bound.
            assert!(took < DOWN_DELAY + SHARED_ANSWER_WITHIN * 2, "a call took {took:?}");
        }
        script.lock().unwrap().down = false;
        let report = wire_report("after");
        let deadline = std::time::Instant::now() + 5 * DOWN_DELAY;
        let accepted = loop {
            match submitter.submit(submission(Some("after"), &report)).await {
                Ok(accepted) => break accepted,
                Err(ServiceError::Unavailable(_)) if std::time::Instant::now() < deadline => {}
                Err(error) => panic!("{error:?}"),
            }
        };
        assert_eq!(
            accepted.report_id,
            ReportId(Position(1)),
            "nothing was stored while down"
        );
        assert_eq!(head.borrow().position, 1);
    }

    #[tokio::test]
    async fn an_unknown_incident_is_not_found_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (submitter, head) = started(dir.path());
        let mut wire = wire_report("about an incident that does not exist");
        wire.incident_id = "inc-7".into();
        let error = submitter.submit(submission(None, &wire)).await.unwrap_err();
        assert!(matches!(error, ServiceError::NotFound { kind: "incident", .. }));
        assert_eq!(head.borrow().position, 0);
    }

    #[tokio::test]
    async fn state_is_rebuilt_from_the_log_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let opened = {
            let (submitter, _) = started(dir.path());
            submitter
                .submit(submission(Some("k1"), &wire_report("first")))
                .await
                .unwrap()
        };
        // The first sequencer stops once its submitter is dropped; wait for
        // it to release the log.
        let store = loop {
            match LogStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        let (head_tx, _head) = watch::channel(store.head());
        let (submitter, _thread) = start(Box::new(store), Rules::default(), head_tx, None).unwrap();
        let joined = submitter
            .submit(submission(None, &wire_report("second")))
            .await
            .unwrap();
        assert_eq!(joined.incident_id, opened.incident_id);
        let replay = submitter
            .submit(submission(Some("k1"), &wire_report("first")))
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.report_id, opened.report_id);
    }

    /// Records one report in a new log in `dir` and stops; the store, once
    /// released, and the incident the report opened.
    async fn log_with_one_report(dir: &std::path::Path) -> (LogStore, IncidentId) {
        let opened = {
            let (submitter, _) = started(dir);
            submitter.submit(submission(None, &wire_report("first"))).await.unwrap()
        };
        loop {
            match LogStore::open(dir) {
                Ok(store) => return (store, opened.incident_id),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    #[tokio::test]
    async fn summaries_folded_at_the_head_are_the_state_and_stale_ones_are_not() {
        // The summaries the view folded are taken as the grouping state
        // when they are as of the log's head: none given, a report that
        // would join the existing incident opens its own.
        let dir = tempfile::tempdir().unwrap();
        let (store, first) = log_with_one_report(dir.path()).await;
        let (head_tx, _head) = watch::channel(store.head());
        let folded = Folded {
            position: store.head().position,
            summaries: Vec::new(),
        };
        let (submitter, _thread) = start_from(Box::new(store), Rules::default(), head_tx, None, Some(folded)).unwrap();
        let second = submitter
            .submit(submission(None, &wire_report("second")))
            .await
            .unwrap();
        assert_ne!(second.incident_id, first);

        // Summaries of an earlier position are not: the log is folded.
        let dir = tempfile::tempdir().unwrap();
        let (store, first) = log_with_one_report(dir.path()).await;
        let (head_tx, _head) = watch::channel(store.head());
        let stale = Folded {
            position: store.head().position - 1,
            summaries: Vec::new(),
        };
        let (submitter, _thread) = start_from(Box::new(store), Rules::default(), head_tx, None, Some(stale)).unwrap();
        let second = submitter
            .submit(submission(None, &wire_report("second")))
            .await
            .unwrap();
        assert_eq!(second.incident_id, first);
    }

    /// A sequencer over `log`.
    fn start_on(log: SharedLog) -> Submitter {
        let (head_tx, _head) = watch::channel(log.head());
        start(Box::new(log), Rules::default(), head_tx, None).unwrap().0
    }

    /// A report of `category` at Rafah: reports of one category group
    /// together.
    fn report_of(category: v1::Category, summary: &str) -> v1::Report {
        v1::Report {
            category: category as i32,
            ..wire_report(summary)
        }
    }

    fn crossing(summary: &str) -> v1::Report {
        report_of(v1::Category::LineCrossing, summary)
    }

    fn strike(summary: &str) -> v1::Report {
        report_of(v1::Category::AirStrike, summary)
    }

    /// The event `log` holds at `position`.
    fn stored_event(log: &SharedLog, position: Position) -> RecordedEvent {
        event_from_wire(position.0, &log.stored(position.0).expect("stored")).unwrap()
    }

    /// Submits `report` with `key` until it is answered otherwise than
    /// UNAVAILABLE, as a client does.
    async fn submit_until_answered(submitter: &Submitter, key: &str, report: &v1::Report) -> Accepted {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match submitter.submit(submission(Some(key), report)).await {
                Ok(accepted) => return accepted,
                Err(ServiceError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{key}: {error:?}"),
            }
        }
    }

    fn is_unavailable_saying(answer: &Result<Accepted, ServiceError>, words: &str) -> bool {
        matches!(answer, Err(ServiceError::Unavailable(why)) if why.contains(words))
    }

    #[tokio::test]
    async fn settling_an_append_is_all_or_nothing_when_reads_fail_once_the_log_is_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
        let (other, reader) = (log.writer(), log.writer());
        let a = start_on(log.bound_by(Duration::from_secs(5)));
        let first = a.submit(submission(Some("r0"), &crossing("r0"))).await.unwrap();

        // The sequencer is held up (looking a key up while the log is
        // down) while two reports queue, so they make one batch: an air
        // strike opening an incident, and a crossing joining the first.
        script.lock().unwrap().down = true;
        let held = {
            let a = a.clone();
            let mut wire = crossing("held");
            wire.incident_id = "inc-99".into();
            tokio::spawn(async move { a.submit(submission(Some("held"), &wire)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The air strike is stored and not confirmed, the crossing never
        // sent; then the log is down, so neither can be read back.
        script.lock().unwrap().next.push_back(Trouble::UnconfirmedThenDown);
        let opening = {
            let a = a.clone();
            tokio::spawn(async move { a.submit(submission(Some("r1"), &strike("r1"))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let joining = {
            let a = a.clone();
            tokio::spawn(async move { a.submit(submission(Some("r2"), &crossing("r2"))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        script.lock().unwrap().down = false;
        assert!(matches!(held.await.unwrap(), Err(ServiceError::NotFound { .. })));
        let (opening, joining) = (opening.await.unwrap(), joining.await.unwrap());
        assert!(
            is_unavailable_saying(&opening, "may or may not be recorded"),
            "{opening:?}"
        );
        assert!(is_unavailable_saying(&joining, "was not stored"), "{joining:?}");

        // Another writer adds a crossing to the first incident and an air
        // strike to the one the unconfirmed report opened.
        script.lock().unwrap().down = false;
        let b = start_on(other);
        let crossed = b.submit(submission(None, &crossing("r3"))).await.unwrap();
        let struck = b.submit(submission(None, &strike("r4"))).await.unwrap();
        let strikes = IncidentId(Position(2));
        assert_eq!((crossed.incident_id, struck.incident_id), (first.incident_id, strikes));

        // The next single read fails (a leader read timing out): settling
        // the batch needs none, and leaves the state as the log has it.
        script.lock().unwrap().failing_reads = 1;
        let fifth = submit_until_answered(&a, "r5", &crossing("r5")).await;
        let sixth = submit_until_answered(&a, "r6", &strike("r6")).await;
        script.lock().unwrap().failing_reads = 0;
        assert_eq!(fifth.incident_id, first.incident_id, "grouped into the first incident");
        assert_eq!(
            sixth.incident_id, strikes,
            "grouped into the incident the unconfirmed report opened"
        );
        let previous = |accepted: &Accepted| stored_event(&reader, accepted.report_id.0).previous_position();
        assert_eq!(
            previous(&fifth),
            Some(crossed.report_id.0),
            "linked to the other writer's event"
        );
        assert_eq!(previous(&sixth), Some(struck.report_id.0));

        // The unconfirmed report was stored: its retry says so. The one
        // never sent was not: its retry stores it, in the first incident.
        let retried = a.submit(submission(Some("r1"), &strike("r1"))).await.unwrap();
        assert!(retried.replayed);
        assert_eq!(retried.report_id, ReportId(Position(2)));
        let joined = a.submit(submission(Some("r2"), &crossing("r2"))).await.unwrap();
        assert!(!joined.replayed);
        assert_eq!(joined.incident_id, first.incident_id);
        assert_eq!(previous(&joined), Some(fifth.report_id.0));
    }

    #[tokio::test]
    async fn an_unconfirmed_write_that_lands_later_is_found_by_its_retry_and_forks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
        let reader = log.writer();
        let a = start_on(log);
        script.lock().unwrap().next.push_back(Trouble::Late);
        let error = a.submit(submission(Some("k1"), &crossing("first"))).await.unwrap_err();
        assert!(
            matches!(&error, ServiceError::Unavailable(why) if why.contains("same client_report_id")),
            "{error:?}"
        );
        // It lands just before the next append, decided without it: that
        // is refused, and decided again after it, joining its incident.
        let second = a.submit(submission(Some("k2"), &crossing("second"))).await.unwrap();
        assert_eq!(script.lock().unwrap().conflicts, 1);
        assert_eq!(second.report_id, ReportId(Position(2)));
        assert_eq!(second.incident_id, IncidentId(Position(1)));
        assert_eq!(
            stored_event(&reader, Position(2)).previous_position(),
            Some(Position(1))
        );
        let retried = a.submit(submission(Some("k1"), &crossing("first"))).await.unwrap();
        assert!(retried.replayed);
        assert_eq!(retried.report_id, ReportId(Position(1)));
    }

    /// Submits `count` keyed reports to `submitter` at once; each answer
    /// with how long it took.
    async fn burst(
        submitter: &Submitter,
        prefix: &str,
        count: usize,
    ) -> Vec<(String, Result<Accepted, ServiceError>, Duration)> {
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..count {
            let submitter = submitter.clone();
            let key = format!("{prefix}-{n}");
            calls.spawn(async move {
                let started = Instant::now();
                let answer = submitter.submit(submission(Some(&key), &crossing(&key))).await;
                (key, answer, started.elapsed())
            });
        }
        calls.join_all().await
    }

    #[tokio::test]
    async fn callers_are_answered_within_the_bound_while_the_log_confirms_slowly() {
        let dir = tempfile::tempdir().unwrap();
        let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
        let reader = log.writer();
        // Each entry confirmed after 150 ms: an append stops after the
        // first (half the bound), so no batch keeps up.
        script.lock().unwrap().ack_delay = Duration::from_millis(150);
        let a = start_on(log);
        let calls = burst(&a, "slow", 20).await;
        let longest = calls.iter().map(|(_, _, took)| *took).max().unwrap();
        assert!(
            longest < SHARED_ANSWER_WITHIN * 7 / 4 + Duration::from_millis(150),
            "a call took {longest:?}"
        );
        let acknowledged = calls.iter().filter(|(_, answer, _)| answer.is_ok()).count();
        assert!(acknowledged > 0, "some are stored meanwhile");
        for (key, answer, _) in &calls {
            assert!(
                answer.is_ok() || is_unavailable_saying(answer, "may or may not be recorded"),
                "{key}: {answer:?}"
            );
        }
        // Retried once the log is quick again, each key is one report.
        script.lock().unwrap().ack_delay = Duration::ZERO;
        let mut ids = std::collections::BTreeSet::new();
        for (key, answer, _) in &calls {
            let id = match answer {
                Ok(accepted) => accepted.report_id,
                Err(_) => submit_until_answered(&a, key, &crossing(key)).await.report_id,
            };
            assert!(ids.insert(id), "{key} answered with another key's report");
        }
        assert!(reader.stored(21).is_none(), "nothing stored twice");
    }

    #[tokio::test]
    async fn callers_queued_behind_a_busy_log_that_keeps_up_are_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
        // Each batch takes a third of the bound to append.
        script.lock().unwrap().append_delay = SHARED_ANSWER_WITHIN / 3;
        let a = start_on(log);
        // Four batches queued at once: the last callers wait for all four,
        // longer than the bound, while each batch keeps up.
        let calls = burst(&a, "busy", 4 * MAX_SHARED_BATCH - 10).await;
        let longest = calls.iter().map(|(_, _, took)| *took).max().unwrap();
        let refused: Vec<_> = calls.iter().filter(|(_, answer, _)| answer.is_err()).collect();
        assert!(refused.is_empty(), "{} refused, e.g. {:?}", refused.len(), refused[0]);
        assert!(
            longest > SHARED_ANSWER_WITHIN,
            "waited {longest:?}: the test needs longer"
        );
    }

    #[tokio::test]
    async fn two_writers_contending_acknowledge_every_caller_and_group_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let (log, script) = SharedLog::new(Box::new(LogStore::open(dir.path()).unwrap()));
        let other = log.writer();
        let writers = [start_on(log), start_on(other)];
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..400 {
            let submitter = writers[n % 2].clone();
            calls.spawn(async move {
                let key = format!("both-{n}");
                submitter.submit(submission(Some(&key), &crossing(&key))).await
            });
            if n % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let answers: Vec<Accepted> = calls
            .join_all()
            .await
            .into_iter()
            .map(|answer| answer.expect("acknowledged"))
            .collect();
        assert!(script.lock().unwrap().conflicts > 0, "the writers contended");
        let incidents: std::collections::BTreeSet<_> = answers.iter().map(|a| a.incident_id).collect();
        assert_eq!(incidents.len(), 1, "each writer saw the other's reports: one incident");
        let ids: std::collections::BTreeSet<_> = answers.iter().map(|a| a.report_id).collect();
        assert_eq!(ids.len(), 400);
    }

    #[test]
    fn a_batch_counts_as_progress_only_in_time_and_at_pace() {
        let within = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert!(
            kept_up(ms(300), MAX_SHARED_BATCH, within),
            "a busy log: a full batch in 0.3 s"
        );
        assert!(kept_up(ms(5), 1, within));
        assert!(kept_up(ms(700), 0, within), "nothing to store, everyone answered");
        assert!(
            !kept_up(ms(800), MAX_SHARED_BATCH, within),
            "too long for the callers behind it"
        );
        assert!(
            !kept_up(ms(450), 1, within),
            "0.45 s an entry: a queue of callers behind it would wait a minute"
        );
    }

    #[test]
    fn a_caller_is_owed_an_answer_the_bound_past_its_start_or_the_last_progress() {
        let within = Duration::from_secs(1);
        let now = Instant::now();
        let earlier = now - Duration::from_secs(5);
        assert_eq!(answer_due(now, earlier, within), now + within);
        let later = now + Duration::from_millis(500);
        assert_eq!(answer_due(now, later, within), later + within);
    }
}
