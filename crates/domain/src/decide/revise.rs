//! What amending and retracting share: who may revise a report, which
//! version, and the incident refolded around the new version.

use std::sync::Arc;

use super::Record;
use crate::{
    FieldViolation, PartyId, Position, ReportId,
    event::{EventBody, RecordedEvent},
    incident::{Incident, IncidentSummary},
    rejection::{Refusal, Rejection},
    report::StoredReport,
    statement::replaces_current,
};

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

/// Why a revision naming no version cannot be signed: its signature is
/// bound to the version it replaces.
pub(super) fn version_required() -> FieldViolation {
    FieldViolation::new(
        "replaces_version",
        "is required with a signature: the report's current version, which the signature is bound to",
    )
}

/// The incident of the report to revise and the report's current version,
/// once `by` may revise that version (`replaces`, when the request names
/// one). A party is told the same whether the report is another party's or
/// does not exist, so that it cannot probe which ids exist.
pub(super) fn revisable<R: Record>(
    report_id: ReportId,
    by: Option<&PartyId>,
    replaces: Option<u32>,
    record: &R,
) -> Result<(Incident, Arc<StoredReport>), Refusal<R::Error>> {
    let not_found = || match by {
        Some(by) => Rejection::NotPermitted(format!(
            "{by} made no report {report_id}: only the party that made a report may amend or retract it"
        )),
        None => Rejection::NotFound {
            kind: "report",
            id: report_id.to_string(),
        },
    };
    let incident_id = match record.event(report_id.0).map_err(Refusal::Unreadable)? {
        Some(RecordedEvent {
            body: EventBody::ReportRecorded(recorded),
            ..
        }) => recorded.report.incident_id,
        _ => return Err(not_found().into()),
    };
    let summary = record.incidents().get(incident_id).ok_or_else(not_found)?;
    let incident = history(summary, record)?;
    let current = incident.report(report_id).cloned().ok_or_else(not_found)?;
    if by.is_some_and(|by| *by != current.report.reporting_party) {
        return Err(not_found().into());
    }
    if let Some(retraction) = &current.retraction {
        return Err(Rejection::Stale(format!("{report_id} was retracted at position {}", retraction.position)).into());
    }
    replaces_current(report_id, current.version, replaces).map_err(Rejection::Stale)?;
    Ok((incident, current))
}

/// `incident`'s summary refolded with `revised` in place of its earlier
/// version, as of `position`.
pub(super) fn refolded(
    incident: &Incident,
    revised: &StoredReport,
    position: Position,
    recorded_at: crate::Timestamp,
) -> IncidentSummary {
    let reports = incident.reports.iter().map(|r| {
        if r.report_id == revised.report_id {
            revised
        } else {
            r.as_ref()
        }
    });
    incident.summary.refolded(reports, position, recorded_at)
}

/// The incident with every report in its current version, rebuilt from its
/// events: they link back from its last one, so this reads only the
/// incident's own events, oldest first once reversed.
fn history<R: Record>(summary: &IncidentSummary, record: &R) -> Result<Incident, Refusal<R::Error>> {
    let mut events = Vec::new();
    let mut at = Some(summary.updated_position);
    while let Some(position) = at {
        let event = record
            .event(position)
            .map_err(Refusal::Unreadable)?
            .ok_or_else(|| Refusal::Inconsistent(format!("{} links to missing position {position}", summary.id)))?;
        at = event.previous_position();
        events.push(event);
    }
    let mut events = events.into_iter().rev();
    let Some(RecordedEvent {
        body: EventBody::ReportRecorded(opening),
        ..
    }) = events.next()
    else {
        return Err(Refusal::Inconsistent(format!(
            "{} does not begin with a report",
            summary.id
        )));
    };
    let mut incident = Incident::opened(opening.report, opening.incident);
    for event in events {
        incident.apply(&event);
    }
    Ok(incident)
}
