//! An amendment: a new version of a report, by the party that made it,
//! in the same incident. The earlier version stays in the record.

use std::sync::Arc;

use super::{Decision, Outcome, Record, Rules, Stamp, revise};
use crate::{
    FieldViolation, PartyId, ReportId, Timestamp,
    event::{EventBody, RecordedEvent, ReportAmended},
    rejection::{Refusal, Rejection},
    report::{Report, ReportSignature, StoredReport},
    statement::Statement,
};

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

impl Amendment {
    /// What the reporting party signs to make this amendment, or why it
    /// cannot be signed.
    pub fn statement(&self) -> Result<Statement<'_>, FieldViolation> {
        let replaces_version = self.replaces_version.ok_or_else(revise::version_required)?;
        Ok(Statement::Amend {
            report_id: self.report_id,
            replaces_version,
            report: &self.report,
            reason: &self.reason,
        })
    }
}

/// Decides an amendment.
pub(super) fn decide<R: Record>(
    amendment: Amendment,
    stamp: Stamp,
    rules: &Rules,
    record: &R,
) -> Result<Decision, Refusal<R::Error>> {
    let (incident, current) = revise::revisable(
        amendment.report_id,
        amendment.by.as_ref(),
        amendment.replaces_version,
        record,
    )?;
    let party = &current.report.reporting_party;
    if amendment.report.reporting_party != *party {
        return Err(Rejection::invalid(
            "report.reporting_party",
            format!("must stay {party}: a report is amended by the party that made it"),
        )
        .into());
    }
    if let Some(other) = amendment.report.incident_id
        && other != current.incident_id
    {
        return Err(Rejection::invalid(
            "report.incident_id",
            format!(
                "an amendment stays in {}; retract and report anew to move it",
                current.incident_id
            ),
        )
        .into());
    }
    let amended = StoredReport {
        received_at: amendment.received_at,
        derived_zone: rules.zone_of(&amendment.report.location),
        report: amendment.report,
        signature: amendment.signature,
        version: current.version + 1,
        version_position: stamp.position,
        amendment_reason: Some(amendment.reason),
        ..StoredReport::clone(&current)
    };
    let summary = revise::refolded(&incident, &amended, stamp.position, stamp.recorded_at);
    let event = RecordedEvent {
        position: stamp.position,
        recorded_at: stamp.recorded_at,
        body: EventBody::ReportAmended(ReportAmended {
            report: Arc::new(amended.clone()),
            incident: Arc::new(summary.clone()),
            previous_position: incident.summary.updated_position,
        }),
    };
    Ok(Decision::Record {
        event,
        outcome: Outcome::Revised(Box::new(revise::Revised {
            position: stamp.position,
            report: amended,
            incident: summary,
        })),
    })
}
