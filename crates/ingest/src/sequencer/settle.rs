//! Settling a batch: answering what the log stored, putting back what it
//! did not, and working out, after an append to a shared log failed part
//! way, which entries it holds.

use std::sync::Arc;

use truce_domain::event::RecordedEvent;
use truce_log::{Head, LogError, NewEntry};
use truce_proto::{ServiceError, convert::StoredEvent};

use super::{
    Again, Attempt, Command, Outcome, Sequencer,
    answers::{in_doubt_error, not_stored},
    batch::{Admitted, Answer},
    corrupt, rebuild_index,
};
use crate::release::{Reply, Settled};

/// A batch whose append failed part way, its decisions still in the
/// state: at least `appended` of its entries are stored.
pub(super) struct Unsettled {
    admitted: Vec<Admitted>,
    appended: usize,
}

/// Each command's reply and what was decided for it.
pub(super) type Outcomes = Vec<(Reply, Result<Answer, ServiceError>)>;

impl Sequencer {
    /// After the log took the batch's `entries` (all of them, or, a
    /// shared log whose time for one batch was up, the first few):
    /// answers what it stored and gives back the rest to decide again.
    pub(super) fn appended(
        &mut self,
        head: Head,
        entries: &[NewEntry],
        outcomes: Outcomes,
        admitted: Vec<Admitted>,
        retained: Option<Vec<Command>>,
        clean: bool,
    ) -> Attempt {
        let stored = stored_of(entries, head);
        if stored > 0 {
            self.release.committed();
        }
        if stored == admitted.len() {
            let moved = (!entries.is_empty()).then_some(head);
            self.answer(outcomes, admitted, stored, moved);
            return Attempt::Answered { clean };
        }
        let Some(retained) = retained else {
            self.answer(outcomes, admitted, stored, Some(head));
            return Attempt::Answered { clean: false };
        };
        self.roll_back(&admitted[stored..]);
        self.settled(outcomes, retained, admitted, stored, None, Again::Rest)
    }

    /// After an append to the embedded log failed, storing nothing: the
    /// batch's decisions are in the index, so it is rebuilt as the log has
    /// it, and every command is answered not stored.
    pub(super) fn failed_embedded(&mut self, outcomes: Outcomes, admitted: Vec<Admitted>) {
        let moved = match self.resync() {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::error!(%error, "cannot rebuild state after a failed append; refusing reports");
                self.out_of_service.declare("storage is failing; see the server log");
                None
            }
        };
        self.answer(outcomes, admitted, 0, moved);
    }

    /// After an append to a shared log failed: works out what was stored,
    /// answers that, and gives back what is to be decided again.
    pub(super) fn failed_shared(
        &mut self,
        error: LogError,
        outcomes: Outcomes,
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
    pub(super) fn answer_unsettled(
        &mut self,
        outcomes: Outcomes,
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
                    Ok(answer) if in_doubt.is_some_and(|i| answer.rests_on == Some(i)) => {
                        Err(in_doubt_error(error, &command))
                    }
                    Ok(answer) if answer.rests_on.is_some_and(|i| i >= appended) => Err(not_stored()),
                    outcome => resolve(outcome),
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
    pub(super) fn settled(
        &mut self,
        outcomes: Outcomes,
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
                Ok(answer)
                    if let Some((i, error)) = doubted
                        && answer.rests_on == Some(i) =>
                {
                    answers.push((reply, Err(in_doubt_error(error, &command))));
                }
                Ok(answer) if answer.rests_on.is_some_and(|i| i >= stored) => pending.push((command, reply)),
                _ => answers.push((reply, resolve(outcome))),
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
    pub(super) fn answer(
        &mut self,
        outcomes: Outcomes,
        mut admitted: Vec<Admitted>,
        stored: usize,
        moved: Option<Head>,
    ) {
        let answers = outcomes
            .into_iter()
            .map(|(reply, outcome)| {
                let answer = match outcome {
                    Ok(answer) if answer.rests_on.is_some_and(|i| i >= stored) => Err(not_stored()),
                    outcome => resolve(outcome),
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

    /// Before deciding: settles the batch whose failed append could not be
    /// read back, and rebuilds the state if a failure left it unknown. An
    /// error says the log still cannot be read, or (anything but the log
    /// being unreachable) that the service is now out.
    pub(super) fn recover(&mut self) -> Result<(), LogError> {
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
    pub(super) fn cannot_settle(&self, error: &LogError) {
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
    pub(super) fn settle(&mut self, admitted: &[Admitted], appended: usize) -> Result<usize, LogError> {
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
    pub(super) fn roll_back(&mut self, admitted: &[Admitted]) {
        for undo in admitted.iter().rev().filter_map(|a| a.undo.as_ref()) {
            match &undo.before {
                Some(before) => self.index.upsert(Arc::clone(before)),
                None => self.index.remove(undo.incident),
            }
        }
    }

    /// Rebuilds the state from the log, after a failure left it unknown,
    /// and returns the head.
    pub(super) fn resync(&mut self) -> Result<Head, LogError> {
        self.store.catch_up()?;
        self.index = rebuild_index(self.store.as_ref())?;
        self.stale = false;
        Ok(self.store.head())
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

/// The events of a stored batch, handed on once it is durable.
fn take_events(admitted: &mut [Admitted]) -> Vec<RecordedEvent> {
    admitted.iter_mut().filter_map(|a| a.event.take()).collect()
}

/// The answer for a settled decision.
fn resolve(outcome: Result<Answer, ServiceError>) -> Result<Outcome, ServiceError> {
    outcome.map(|answer| answer.outcome)
}
