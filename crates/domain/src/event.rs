//! The events of the log. Every change to the record is one of these; the
//! query side is a fold over them.

use crate::{Position, Timestamp, incident::IncidentSummary, report::StoredReport, review::Review};

/// An event as recorded at a position of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Where it is in the log.
    pub position: Position,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// What happened.
    pub body: EventBody,
}

/// What happened.
// Most events are reports, the largest variant: boxing it would cost an
// allocation per event and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A report was accepted.
    ReportRecorded(ReportRecorded),
    /// A monitor ruled on an incident.
    IncidentReviewed(IncidentReviewed),
}

/// A monitor ruled on an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentReviewed {
    /// The ruling.
    pub review: Review,
    /// The incident's summary after it.
    pub incident: IncidentSummary,
    /// The position of the incident's previous event.
    pub previous_position: Position,
}

/// A report was accepted into an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRecorded {
    /// The report as stored.
    pub report: StoredReport,
    /// True when it opened its incident.
    pub opened_incident: bool,
    /// The incident's summary after it; carried in the event so that a
    /// subscriber replaying history can filter without rebuilding state.
    pub incident: IncidentSummary,
    /// SHA-256 of the submitted report's canonical encoding, to tell an
    /// idempotent retry from a conflicting reuse of its key.
    pub content_digest: [u8; 32],
    /// The position of the incident's previous event (its summary before
    /// this report), `None` when this report opened it. Lets a reader find
    /// an incident's earlier state without keeping every version.
    pub previous_position: Option<Position>,
}

impl RecordedEvent {
    /// The incident the event changed, as the event left it.
    pub fn incident(&self) -> &IncidentSummary {
        match &self.body {
            EventBody::ReportRecorded(recorded) => &recorded.incident,
            EventBody::IncidentReviewed(reviewed) => &reviewed.incident,
        }
    }

    /// The report the event recorded and its party's signature, when it
    /// recorded a signed report.
    pub fn signed_report(&self) -> Option<(&StoredReport, &crate::report::ReportSignature)> {
        match &self.body {
            EventBody::ReportRecorded(recorded) => recorded.report.signature.as_ref().map(|s| (&recorded.report, s)),
            EventBody::IncidentReviewed(_) => None,
        }
    }

    /// The position of the incident's previous event, if any.
    pub fn previous_position(&self) -> Option<Position> {
        match &self.body {
            EventBody::ReportRecorded(recorded) => recorded.previous_position,
            EventBody::IncidentReviewed(reviewed) => Some(reviewed.previous_position),
        }
    }
}
