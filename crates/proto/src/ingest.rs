//! `truce.v1.IngestService` at the border: each request into the domain's
//! command, naming every invalid field with its path; each answer back into
//! its response. Who the caller is and what it may do is the service's
//! business, not the border's: conversions take the caller's party when the
//! command records it.

use truce_domain::{
    IncidentId, PartyId, ReportId, Timestamp, Violations,
    decide::{Accepted, Amendment, Reviewed, Revised, Submission, Withdrawal},
    incident::IncidentStatus,
    report::{bounded_text, limits},
    review::Review,
};

use crate::{
    ServiceError,
    convert::{Received, WireEnum, report_digest, report_from_wire, timestamp_to_wire},
    v1,
};

/// A report to submit, received at `received_at`. The signature, if any, is
/// checked by the service against the party's keys.
pub fn submission(request: &v1::SubmitReportRequest, received_at: Timestamp) -> Result<Submission, ServiceError> {
    let mut v = Violations::default();
    let client_report_id = match request.client_report_id.as_str() {
        "" => None,
        key => v.check("client_report_id", key.parse()),
    };
    let report = required_report(&mut v, request.report.as_ref(), received_at);
    match report {
        Some((report, digest)) if v.is_empty() => Ok(Submission {
            client_report_id,
            report,
            digest,
            received_at,
            signature: None,
        }),
        _ => Err(ServiceError::InvalidArgument(v.into_vec())),
    }
}

/// A new version of a report, by `by` (`None`: an anonymous caller in
/// insecure mode).
pub fn amendment(
    request: &v1::AmendReportRequest,
    received_at: Timestamp,
    by: Option<PartyId>,
) -> Result<Amendment, ServiceError> {
    let mut v = Violations::default();
    let report_id = v.check("report_id", request.report_id.parse::<ReportId>());
    let reason = v.check("reason", bounded_text(&request.reason, limits::REASON_CHARS, true));
    let report = required_report(&mut v, request.report.as_ref(), received_at);
    let (Some(report_id), Some(reason), Some((report, _))) = (report_id, reason, report) else {
        return Err(ServiceError::InvalidArgument(v.into_vec()));
    };
    Ok(Amendment {
        report_id,
        report,
        reason,
        received_at,
        signature: None,
        replaces_version: replaces_version(request.replaces_version),
        by,
    })
}

/// A report's retraction by `by`, as for [`amendment`].
pub fn withdrawal(request: &v1::RetractReportRequest, by: Option<PartyId>) -> Result<Withdrawal, ServiceError> {
    let mut v = Violations::default();
    let report_id = v.check("report_id", request.report_id.parse::<ReportId>());
    let reason = v.check("reason", bounded_text(&request.reason, limits::REASON_CHARS, true));
    let (Some(report_id), Some(reason)) = (report_id, reason) else {
        return Err(ServiceError::InvalidArgument(v.into_vec()));
    };
    Ok(Withdrawal {
        report_id,
        reason,
        signature: None,
        replaces_version: replaces_version(request.replaces_version),
        by,
    })
}

/// A ruling by the monitor `reviewer`, speaking for the mediator party
/// `party`.
pub fn review(request: &v1::ReviewIncidentRequest, reviewer: &str, party: &PartyId) -> Result<Review, ServiceError> {
    let mut v = Violations::default();
    let incident_id = v.check("incident_id", request.incident_id.parse::<IncidentId>());
    let status = match IncidentStatus::from_number(request.status) {
        Some(IncidentStatus::Reported) => v.check("status", Err("a review cannot set REPORTED".to_owned())),
        Some(status) => Some(status),
        None => v.check("status", Err("is required (UNSPECIFIED is not allowed)".to_owned())),
    };
    let finding = v.check("finding", bounded_text(&request.finding, limits::SUMMARY_CHARS, true));
    let responsible = match (status, request.responsible_party.is_empty()) {
        (Some(IncidentStatus::ConfirmedBreach), true) => {
            v.check("responsible_party", Err("is required for CONFIRMED_BREACH".to_owned()))
        }
        (Some(IncidentStatus::ConfirmedBreach), false) => v
            .check("responsible_party", request.responsible_party.parse::<PartyId>())
            .map(Some),
        (_, true) => Some(None),
        (_, false) => v.check("responsible_party", Err("is only for CONFIRMED_BREACH".to_owned())),
    };
    match (incident_id, status, finding, responsible) {
        (Some(incident_id), Some(status), Some(finding), Some(responsible)) if v.is_empty() => Ok(Review {
            incident_id,
            reviewer: reviewer.to_owned(),
            reviewer_party: party.clone(),
            status,
            finding,
            responsible,
        }),
        _ => Err(ServiceError::InvalidArgument(v.into_vec())),
    }
}

/// The answer to a submitted report.
pub fn submitted(accepted: &Accepted) -> v1::SubmitReportResponse {
    v1::SubmitReportResponse {
        report_id: accepted.report_id.to_string(),
        incident_id: accepted.incident_id.to_string(),
        opened_incident: accepted.opened_incident,
        position: accepted.report_id.0.0,
        received_at: Some(timestamp_to_wire(accepted.received_at)),
        replayed: accepted.replayed,
    }
}

/// The answer to an amendment or retraction.
pub fn revised(revised: &Revised) -> v1::ReviseReportResponse {
    v1::ReviseReportResponse {
        position: revised.position.0,
        report: Some(v1::StoredReport::from(&revised.report)),
        incident: Some(v1::IncidentSummary::from(&revised.incident)),
    }
}

/// The answer to a review.
pub fn reviewed(reviewed: &Reviewed) -> v1::ReviewIncidentResponse {
    v1::ReviewIncidentResponse {
        position: reviewed.position.0,
        incident: Some(v1::IncidentSummary::from(&reviewed.incident)),
    }
}

/// The report of a request that must carry one, with its content digest,
/// its violations added to `v`.
fn required_report(
    v: &mut Violations,
    wire: Option<&v1::Report>,
    received_at: Timestamp,
) -> Option<(truce_domain::report::Report, [u8; 32])> {
    let Some(wire) = wire else {
        v.add("report", "is required");
        return None;
    };
    match report_from_wire(wire, "report", Received::At(received_at)) {
        Ok(report) => Some((report, report_digest(wire))),
        Err(violations) => {
            violations.into_iter().for_each(|fv| v.add(fv.field, fv.description));
            None
        }
    }
}

/// The version a revision replaces, when the request names one (0: none).
fn replaces_version(number: u32) -> Option<u32> {
    (number != 0).then_some(number)
}
