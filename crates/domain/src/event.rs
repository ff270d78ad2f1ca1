//! The events of the log. Every change to the record is one of these; the
//! query side is a fold over them.

use std::sync::Arc;

use crate::{
    PartyId, Position, ReportId, Timestamp,
    incident::IncidentSummary,
    report::{ReportSignature, StoredReport},
    review::Review,
    statement::Statement,
};

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
    /// A reporter amended its report.
    ReportAmended(ReportAmended),
    /// A reporter retracted its report.
    ReportRetracted(ReportRetracted),
}

/// A reporter amended its report: a new version, never an edit in place.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAmended {
    /// The new version: same id and incident, the next version number.
    /// Shared, so the views that keep it take no copy.
    pub report: Arc<StoredReport>,
    /// The incident's summary after it.
    pub incident: Arc<IncidentSummary>,
    /// The position of the incident's previous event.
    pub previous_position: Position,
}

/// A reporter retracted its report; the report stays in the record.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRetracted {
    /// The report.
    pub report_id: ReportId,
    /// The party that reported and retracted it.
    pub reporting_party: PartyId,
    /// Why.
    pub reason: String,
    /// The incident's summary after it.
    pub incident: Arc<IncidentSummary>,
    /// The position of the incident's previous event.
    pub previous_position: Position,
    /// The version retracted; 0 in events recorded before it was kept.
    pub version: u32,
    /// The party's signature over the retraction's statement, if it
    /// signed.
    pub signature: Option<ReportSignature>,
}

/// A monitor ruled on an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentReviewed {
    /// The ruling.
    pub review: Review,
    /// The incident's summary after it.
    pub incident: Arc<IncidentSummary>,
    /// The position of the incident's previous event.
    pub previous_position: Position,
}

/// A report was accepted into an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRecorded {
    /// The report as stored; shared, so the views that keep it take no
    /// copy.
    pub report: Arc<StoredReport>,
    /// True when it opened its incident.
    pub opened_incident: bool,
    /// The incident's summary after it; carried in the event so that a
    /// subscriber replaying history can filter without rebuilding state.
    pub incident: Arc<IncidentSummary>,
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
        self.shared_incident()
    }

    /// The same, shared: the sequencer's state, the event and the query
    /// view all hold this one summary.
    pub fn shared_incident(&self) -> &Arc<IncidentSummary> {
        match &self.body {
            EventBody::ReportRecorded(recorded) => &recorded.incident,
            EventBody::IncidentReviewed(reviewed) => &reviewed.incident,
            EventBody::ReportAmended(amended) => &amended.incident,
            EventBody::ReportRetracted(retracted) => &retracted.incident,
        }
    }

    /// The report the event recorded and its party's signature, when it
    /// recorded a signed report.
    pub fn signed_report(&self) -> Option<(&StoredReport, &ReportSignature)> {
        let report = match &self.body {
            EventBody::ReportRecorded(recorded) => &recorded.report,
            EventBody::ReportAmended(amended) => &amended.report,
            EventBody::IncidentReviewed(_) | EventBody::ReportRetracted(_) => return None,
        };
        report.signature.as_ref().map(|s| (report.as_ref(), s))
    }

    /// The party's signature on this event and the statement it must
    /// cover, when the event is signed. The statement is `None` for a
    /// signed submission without a client key: no statement names it, so
    /// only a content-only signature of the first scheme can be on it.
    pub fn signed_statement(&self) -> Option<(&ReportSignature, Option<Statement<'_>>)> {
        match &self.body {
            EventBody::ReportRecorded(recorded) => recorded.report.signature.as_ref().map(|signature| {
                let statement = recorded
                    .report
                    .client_report_id
                    .as_ref()
                    .map(|client_report_id| Statement::Submit {
                        client_report_id,
                        report: &recorded.report.report,
                    });
                (signature, statement)
            }),
            EventBody::ReportAmended(amended) => amended
                .report
                .signature
                .as_ref()
                .map(|signature| (signature, Some(Statement::of_amendment(&amended.report)))),
            EventBody::ReportRetracted(retracted) => retracted.signature.as_ref().map(|signature| {
                let statement = Statement::Retract {
                    party: &retracted.reporting_party,
                    report_id: retracted.report_id,
                    replaces_version: retracted.version,
                    reason: &retracted.reason,
                };
                (signature, Some(statement))
            }),
            EventBody::IncidentReviewed(_) => None,
        }
    }

    /// The position of the incident's previous event, if any.
    pub fn previous_position(&self) -> Option<Position> {
        match &self.body {
            EventBody::ReportRecorded(recorded) => recorded.previous_position,
            EventBody::IncidentReviewed(reviewed) => Some(reviewed.previous_position),
            EventBody::ReportAmended(amended) => Some(amended.previous_position),
            EventBody::ReportRetracted(retracted) => Some(retracted.previous_position),
        }
    }
}
