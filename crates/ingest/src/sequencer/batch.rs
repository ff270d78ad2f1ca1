//! Deciding a batch: each command decided by the domain against the log
//! and the batch so far, its event encoded at the next position, the whole
//! batch appended once.

use std::{collections::HashMap, sync::Arc};

use truce_domain::{
    IncidentId, Position, Timestamp,
    decide::{Decision, Record, Stamp, decide},
    event::RecordedEvent,
    grouping::IncidentIndex,
    incident::IncidentSummary,
};
use truce_log::{LogError, NewEntry, SequencedLog};
use truce_proto::{
    ServiceError,
    convert::{event_from_wire, event_to_wire},
};

use super::{
    Again, Attempt, Command, Outcome, Sequencer,
    answers::{log_failure, refused},
    corrupt,
    settle::Outcomes,
};
use crate::release::Reply;

/// An event admitted to the current batch.
pub(super) struct Admitted {
    pub(super) entry: NewEntry,
    /// The event the entry encodes, until it is handed on once durable.
    pub(super) event: Option<RecordedEvent>,
    /// What the entry replaced in the state, to take it out again if it
    /// is not stored (on a shared log: the embedded one rebuilds instead).
    pub(super) undo: Option<Undo>,
}

/// An incident's summary before an entry changed it.
pub(super) struct Undo {
    pub(super) incident: IncidentId,
    /// `None` when the entry opened it.
    pub(super) before: Option<Arc<IncidentSummary>>,
}

/// What was decided for one command: the answer it is owed, and the entry
/// of the batch that answer rests on (its own, or the earlier one it
/// repeats), if any.
pub(super) struct Answer {
    pub(super) rests_on: Option<usize>,
    pub(super) outcome: Outcome,
}

/// What is recorded as a command of the batch sees it: the log, and the
/// commands of the batch decided before it.
struct Recorded<'a> {
    store: &'a dyn SequencedLog,
    index: &'a IncidentIndex,
    admitted: &'a [Admitted],
    keys_in_batch: &'a HashMap<String, usize>,
    /// Where the log holds the batch's idempotency keys, looked up at once.
    known: &'a HashMap<String, Option<u64>>,
}

impl Record for Recorded<'_> {
    type Error = LogError;

    fn incidents(&self) -> &IncidentIndex {
        self.index
    }

    fn event(&self, position: Position) -> Result<Option<RecordedEvent>, LogError> {
        match batch_index(self.store, position) {
            Some(i) if i < self.admitted.len() => Ok(self.admitted[i].event.clone()),
            _ => read_event(self.store, position.0),
        }
    }

    /// A key of this batch names its entry; any other is looked up in the
    /// log and its event read from there, wherever the log's end is: another
    /// writer may have recorded it past what this one has seen.
    fn keyed(&self, key: &str) -> Result<Option<RecordedEvent>, LogError> {
        if let Some(&i) = self.keys_in_batch.get(key) {
            return Ok(self.admitted[i].event.clone());
        }
        let found = match self.known.get(key) {
            Some(found) => *found,
            None => self.store.find_key(key)?,
        };
        let Some(position) = found else { return Ok(None) };
        match read_event(self.store, position)? {
            Some(event) => Ok(Some(event)),
            None => Err(corrupt(
                position,
                "an idempotency key points at a position the log does not hold".into(),
            )),
        }
    }
}

/// The event the log holds at `position`.
fn read_event(store: &dyn SequencedLog, position: u64) -> Result<Option<RecordedEvent>, LogError> {
    store
        .payload(position)?
        .map(|bytes| event_from_wire(position, &bytes).map_err(|e| corrupt(position, e)))
        .transpose()
}

/// The index in the batch being decided of the entry at `position`, if it
/// is past what the log holds.
fn batch_index(store: &dyn SequencedLog, position: Position) -> Option<usize> {
    let first = store.head().position + 1;
    position.0.checked_sub(first).and_then(|i| usize::try_from(i).ok())
}

impl Sequencer {
    /// Decides `pending` and appends it once.
    pub(super) fn attempt(&mut self, pending: Vec<(Command, Reply)>) -> Attempt {
        let (known, unreachable) = match self.look_up_keys(&pending) {
            Ok(known) => (known, None),
            // Nothing decided yet: the batch waits for the log.
            Err(LogError::Unavailable(why)) if self.answer_within.is_some() => {
                tracing::debug!(%why, "cannot look keys up; waiting for the log");
                return Attempt::Again {
                    pending,
                    then: Again::Unreachable,
                };
            }
            Err(error) => (HashMap::new(), Some(log_failure(error))),
        };
        // A shared log may refuse the batch; keep the commands to decide
        // them again.
        let retained: Option<Vec<Command>> = self
            .store
            .is_shared()
            .then(|| pending.iter().map(|(command, _)| command.clone()).collect());
        let (outcomes, admitted, clean) = self.decide_all(pending, &known, unreachable);
        let entries: Vec<NewEntry> = admitted.iter().map(|a| a.entry.clone()).collect();
        let appended = if entries.is_empty() {
            Ok(self.store.head())
        } else {
            self.store.append(&entries)
        };
        match (appended, retained) {
            (Ok(head), retained) => self.appended(head, &entries, outcomes, admitted, retained, clean),
            (Err(error), Some(retained)) => self.failed_shared(error, outcomes, retained, admitted),
            (Err(error), None) => {
                tracing::error!(%error, reports = entries.len(), "append failed; nothing of the batch was stored");
                self.failed_embedded(outcomes, admitted);
                Attempt::Answered { clean: false }
            }
        }
    }

    /// Decides each command of `pending` in turn, each seeing the ones
    /// before it; once the log could not be read (`unreachable`), the rest
    /// are answered so, not made to wait for it one read after another.
    /// Also says whether nothing was refused for the log's sake.
    fn decide_all(
        &mut self,
        pending: Vec<(Command, Reply)>,
        known: &HashMap<String, Option<u64>>,
        mut unreachable: Option<ServiceError>,
    ) -> (Outcomes, Vec<Admitted>, bool) {
        let recorded_at = Timestamp::from_system(std::time::SystemTime::now());
        let mut admitted: Vec<Admitted> = Vec::with_capacity(pending.len());
        let mut keys_in_batch: HashMap<String, usize> = HashMap::new();
        let mut outcomes: Outcomes = Vec::with_capacity(pending.len());
        for (command, reply) in pending {
            let outcome = match &unreachable {
                Some(error) => Err(error.clone()),
                None => self.decide_one(command, recorded_at, known, &mut admitted, &mut keys_in_batch),
            };
            if let Err(error @ ServiceError::Unavailable(_)) = &outcome {
                unreachable = Some(error.clone());
            }
            outcomes.push((reply, outcome));
        }
        (outcomes, admitted, unreachable.is_none())
    }

    /// Has the domain decide `command` against the log and the batch so
    /// far, and admits the event it decided to the batch.
    fn decide_one(
        &mut self,
        command: Command,
        recorded_at: Timestamp,
        known: &HashMap<String, Option<u64>>,
        admitted: &mut Vec<Admitted>,
        keys_in_batch: &mut HashMap<String, usize>,
    ) -> Result<Answer, ServiceError> {
        let key = match &command {
            Command::Report(submission) => submission.idempotency_key(),
            _ => None,
        };
        let stamp = Stamp {
            position: Position(self.store.head().position + 1 + admitted.len() as u64),
            recorded_at,
        };
        let record = Recorded {
            store: self.store.as_ref(),
            index: &self.index,
            admitted,
            keys_in_batch,
            known,
        };
        let (event, outcome) = match decide(command, stamp, &self.rules, &record).map_err(refused)? {
            // A retry of a key of this batch rests on its entry; of one in
            // the log, on nothing.
            Decision::Repeat { accepted, .. } => {
                return Ok(Answer {
                    rests_on: key.and_then(|key| keys_in_batch.get(&key).copied()),
                    outcome: Outcome::Accepted(accepted),
                });
            }
            Decision::Record { event, outcome } => (event, outcome),
        };
        let undo = self.upsert(Arc::clone(event.shared_incident()));
        if let Some(key) = &key {
            keys_in_batch.insert(key.clone(), admitted.len());
        }
        admitted.push(Admitted {
            entry: NewEntry {
                position: event.position.0,
                payload: event_to_wire(&event),
                idempotency_key: key,
            },
            event: Some(event),
            undo,
        });
        Ok(Answer {
            rests_on: Some(admitted.len() - 1),
            outcome,
        })
    }

    /// Where the log holds each idempotency key of `pending`'s reports,
    /// asked all at once.
    pub(super) fn look_up_keys(&self, pending: &[(Command, Reply)]) -> Result<HashMap<String, Option<u64>>, LogError> {
        let keys: Vec<String> = pending
            .iter()
            .filter_map(|(command, _)| match command {
                Command::Report(submission) => submission.idempotency_key(),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.store.find_keys(&keys)?;
        Ok(keys.into_iter().zip(found).collect())
    }

    /// Puts `summary` in the state, remembering on a shared log what it
    /// replaced.
    pub(super) fn upsert(&mut self, summary: Arc<IncidentSummary>) -> Option<Undo> {
        let undo = self.store.is_shared().then(|| Undo {
            incident: summary.id,
            before: self.index.get(summary.id).cloned().map(Arc::new),
        });
        self.index.upsert(summary);
        undo
    }
}
