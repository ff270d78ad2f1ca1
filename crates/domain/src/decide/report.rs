//! A new report: an idempotent retry is answered as before; otherwise the
//! report joins the incident it names, or the incident of the same event,
//! or opens one, and its zone is derived from the deployment's geometry.

use std::sync::Arc;

use super::{Decision, Outcome, Record, Rules, Stamp, summary_of};
use crate::{
    FieldViolation, IncidentId, ReportId, Timestamp,
    event::{EventBody, RecordedEvent, ReportRecorded},
    ids::ClientReportId,
    incident::IncidentSummary,
    rejection::{Refusal, Rejection},
    report::{Report, ReportSignature, StoredReport},
    statement::Statement,
};

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

impl Submission {
    /// The log's idempotency key: the client's key, scoped to its party
    /// (two parties may use the same key).
    pub fn idempotency_key(&self) -> Option<String> {
        self.client_report_id
            .as_ref()
            .map(|key| format!("{}/{}", self.report.reporting_party, key.as_str()))
    }

    /// What the reporting party signs to submit this, or why it cannot
    /// be signed: a signed submission needs a key, which makes its
    /// signature good for this one report.
    pub fn statement(&self) -> Result<Statement<'_>, FieldViolation> {
        match &self.client_report_id {
            Some(client_report_id) => Ok(Statement::Submit {
                client_report_id,
                report: &self.report,
            }),
            None => Err(FieldViolation::new(
                "client_report_id",
                "is required with a signature: the signature is good for the submission with this key only",
            )),
        }
    }
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

/// Decides a report.
pub(super) fn decide<R: Record>(
    submission: Submission,
    stamp: Stamp,
    rules: &Rules,
    record: &R,
) -> Result<Decision, Refusal<R::Error>> {
    if let Some(key) = submission.idempotency_key()
        && let Some(earlier) = record.keyed(&key).map_err(Refusal::Unreadable)?
    {
        return repeat(earlier, &submission);
    }
    let position = stamp.position;
    let (incident_id, opened) = match submission.report.incident_id {
        Some(id) => (summary_of(record, id)?.id, false),
        None => match record.incidents().find_match(&submission.report, &rules.grouping) {
            Some(id) => (id, false),
            None => (IncidentId(position), true),
        },
    };
    let stored = StoredReport {
        report_id: ReportId(position),
        incident_id,
        received_at: submission.received_at,
        derived_zone: rules.zone_of(&submission.report.location),
        report: submission.report,
        client_report_id: submission.client_report_id,
        signature: submission.signature,
        version: 1,
        version_position: position,
        amendment_reason: None,
        retraction: None,
    };
    let (summary, previous_position) = if opened {
        (IncidentSummary::open(&stored, stamp.recorded_at), None)
    } else {
        let mut summary = summary_of(record, incident_id)?.clone();
        let previous = summary.updated_position;
        summary.absorb(&stored, stamp.recorded_at);
        (summary, Some(previous))
    };
    let accepted = Accepted {
        report_id: stored.report_id,
        incident_id,
        opened_incident: opened,
        received_at: stored.received_at,
        replayed: false,
    };
    let event = RecordedEvent {
        position,
        recorded_at: stamp.recorded_at,
        body: EventBody::ReportRecorded(ReportRecorded {
            report: Arc::new(stored),
            opened_incident: opened,
            incident: Arc::new(summary),
            content_digest: submission.digest,
            previous_position,
        }),
    };
    Ok(Decision::Record {
        event,
        outcome: Outcome::Accepted(accepted),
    })
}

/// The answer to a retry of the report `earlier` recorded under the same
/// key: the same answer, if the content is the same; a key reused for
/// other content is refused.
fn repeat<E>(earlier: RecordedEvent, submission: &Submission) -> Result<Decision, Refusal<E>> {
    let of = earlier.position;
    let EventBody::ReportRecorded(recorded) = earlier.body else {
        return Err(Refusal::Inconsistent(format!(
            "an idempotency key points at position {of}, which holds no report"
        )));
    };
    if recorded.content_digest != submission.digest {
        return Err(Rejection::KeyReused.into());
    }
    Ok(Decision::Repeat {
        of,
        accepted: Accepted {
            report_id: recorded.report.report_id,
            incident_id: recorded.report.incident_id,
            opened_incident: recorded.opened_incident,
            received_at: recorded.report.received_at,
            replayed: true,
        },
    })
}
