//! The decisions of the record, one module per command. Each is a pure
//! function of the command, the moment and place it would be recorded
//! ([`Stamp`]), the deployment's [`Rules`] and a read-only view of what is
//! recorded ([`Record`]); it returns the event to append with the answer
//! owed once it is durable, or why the command is refused. Batching,
//! appending and answering belong to the ingest service's sequencer.

pub mod amend;
pub mod report;
pub mod retract;
pub mod review;
mod revise;

use crate::{
    IncidentId, Position, Timestamp,
    event::RecordedEvent,
    geo::Demarcation,
    grouping::{GroupingPolicy, IncidentIndex},
    incident::IncidentSummary,
    rejection::{Refusal, Rejection},
    report::{Location, Zone},
    review::{DEFAULT_QUORUM, Review},
};

pub use amend::Amendment;
pub use report::{Accepted, Submission};
pub use retract::Withdrawal;
pub use review::Reviewed;
pub use revise::Revised;

/// The deployment's rules the decisions apply.
#[derive(Debug, Clone)]
pub struct Rules {
    /// When reports are near enough to group.
    pub grouping: GroupingPolicy,
    /// The demarcation geometry, if configured.
    pub demarcation: Option<Demarcation>,
    /// Mediator parties that must agree on an outcome.
    pub quorum: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grouping: GroupingPolicy::default(),
            demarcation: None,
            quorum: DEFAULT_QUORUM,
        }
    }
}

impl Rules {
    /// The zone a report at `location` is in by the configured geometry,
    /// whatever the reporter states.
    pub fn zone_of(&self, location: &Location) -> Option<Zone> {
        self.demarcation.as_ref()?.zone_of(location.point?)
    }
}

/// Where and when a decided event is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The position it takes.
    pub position: Position,
    /// The time it is recorded at.
    pub recorded_at: Timestamp,
}

/// What is recorded, read-only: the log and, for a batch being decided,
/// the events decided before this one.
pub trait Record {
    /// Why reading failed.
    type Error;
    /// Every incident's current summary.
    fn incidents(&self) -> &IncidentIndex;
    /// The event at `position`, if there is one.
    fn event(&self, position: Position) -> Result<Option<RecordedEvent>, Self::Error>;
    /// The event recorded under the idempotency key `key`, if any.
    fn keyed(&self, key: &str) -> Result<Option<RecordedEvent>, Self::Error>;
}

/// A command to the record.
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

/// The answer owed for a command once its event is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A report.
    Accepted(Accepted),
    /// A ruling (rare, and large: boxed).
    Reviewed(Box<Reviewed>),
    /// An amendment or retraction (rare, and large: boxed).
    Revised(Box<Revised>),
}

/// What the record decides for a command it does not refuse.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A new event, and the answer owed once it is durable.
    Record {
        /// The event to append at the stamp's position.
        event: RecordedEvent,
        /// The answer.
        outcome: Outcome,
    },
    /// A retry of the submission recorded at `of`: answered as it was,
    /// nothing appended.
    Repeat {
        /// Where the original is (in the log, or earlier in the batch).
        of: Position,
        /// Its answer, marked as a replay.
        accepted: Accepted,
    },
}

/// Decides `command`.
pub fn decide<R: Record>(
    command: Command,
    stamp: Stamp,
    rules: &Rules,
    record: &R,
) -> Result<Decision, Refusal<R::Error>> {
    match command {
        Command::Report(submission) => report::decide(submission, stamp, rules, record),
        Command::Review(review) => review::decide(review, stamp, rules, record).map_err(Refusal::Rejected),
        Command::Amend(amendment) => amend::decide(amendment, stamp, rules, record),
        Command::Retract(withdrawal) => retract::decide(withdrawal, stamp, record),
    }
}

/// The summary of incident `id`, or that it does not exist.
fn summary_of(record: &impl Record, id: IncidentId) -> Result<&IncidentSummary, Rejection> {
    record.incidents().get(id).ok_or_else(|| Rejection::NotFound {
        kind: "incident",
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests;
