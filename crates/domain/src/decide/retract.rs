//! A retraction: the party that made a report withdraws it. The report
//! stays in the record, marked, and no longer counts in the incident.

use std::sync::Arc;

use super::{Decision, Outcome, Record, Stamp, revise};
use crate::{
    FieldViolation, PartyId, ReportId,
    event::{EventBody, RecordedEvent, ReportRetracted},
    rejection::Refusal,
    report::{ReportSignature, Retraction, StoredReport},
    statement::Statement,
};

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
    /// The version it retracts, as for
    /// [`Amendment::replaces_version`](super::Amendment::replaces_version).
    pub replaces_version: Option<u32>,
    /// The caller's party, as for [`Amendment::by`](super::Amendment::by).
    pub by: Option<PartyId>,
}

impl Withdrawal {
    /// What the caller's party signs to retract the report, or why it
    /// cannot be signed.
    pub fn statement(&self) -> Result<Statement<'_>, FieldViolation> {
        let Some(party) = &self.by else {
            return Err(FieldViolation::new(
                "signature",
                "cannot be checked for an anonymous caller, who speaks for no party",
            ));
        };
        let replaces_version = self.replaces_version.ok_or_else(revise::version_required)?;
        Ok(Statement::Retract {
            party,
            report_id: self.report_id,
            replaces_version,
            reason: &self.reason,
        })
    }
}

/// Decides a retraction.
pub(super) fn decide<R: Record>(
    withdrawal: Withdrawal,
    stamp: Stamp,
    record: &R,
) -> Result<Decision, Refusal<R::Error>> {
    let (incident, current) = revise::revisable(
        withdrawal.report_id,
        withdrawal.by.as_ref(),
        withdrawal.replaces_version,
        record,
    )?;
    let retracted = StoredReport {
        retraction: Some(Retraction {
            position: stamp.position,
            recorded_at: stamp.recorded_at,
            reason: withdrawal.reason.clone(),
        }),
        ..StoredReport::clone(&current)
    };
    let summary = revise::refolded(&incident, &retracted, stamp.position, stamp.recorded_at);
    let event = RecordedEvent {
        position: stamp.position,
        recorded_at: stamp.recorded_at,
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
    Ok(Decision::Record {
        event,
        outcome: Outcome::Revised(Box::new(revise::Revised {
            position: stamp.position,
            report: retracted,
            incident: summary,
        })),
    })
}
