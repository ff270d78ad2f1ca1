//! `truce.v1.IngestService`: validation at the border, then the sequencer.

use std::{pin::Pin, time::SystemTime};

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use truce_domain::{
    FieldViolation, IncidentId, PartyId, ReportId, Timestamp, Violations,
    incident::IncidentStatus,
    report::{ReportSignature, bounded_text, limits},
    review::Review,
    statement::Statement,
};
use truce_proto::{
    ServiceError,
    convert::{Received, report_digest, report_from_wire, statement_signature_holds, timestamp_to_wire},
    v1::{self, ingest_service_server::IngestService},
};

use truce_auth::{PartyKeys, Principal, Role};
use truce_serve::{
    auth::{Authenticator, Caller},
    limits::CallKind,
};

use crate::sequencer::{Accepted, Amendment, Command, Revised, Submission, Submitter, Withdrawal};

mod bulk;

/// The gRPC face of ingest.
#[derive(Debug, Clone)]
pub(crate) struct Ingest {
    submitter: Submitter,
    auth: Authenticator,
    /// Open bulk streams, held to the stream caps like log readers.
    bulk: std::sync::Arc<truce_serve::admission::Admission>,
    /// Raised at shutdown: open bulk streams end, so they do not hold it.
    stopping: truce_serve::Stopping,
}

impl Ingest {
    /// A service handing reports to `submitter`, checking report signatures
    /// against the parties' keys known to `auth`, with bulk streams capped
    /// by `caps`.
    pub(crate) fn new(
        submitter: Submitter,
        auth: Authenticator,
        caps: truce_serve::admission::Caps,
        stopping: truce_serve::Stopping,
    ) -> Ingest {
        Ingest {
            submitter,
            auth,
            bulk: truce_serve::admission::Admission::new(caps, truce_serve::admission::Streams::BULK_STREAMS),
            stopping,
        }
    }

    /// Validates a request into a submission, naming every invalid field.
    fn validate(&self, request: v1::SubmitReportRequest, received_at: Timestamp) -> Result<Submission, ServiceError> {
        let signature = request.signature;
        let mut submission = validate(request.report, request.client_report_id, received_at)?;
        let statement = match &submission.client_report_id {
            Some(client_report_id) => Ok(Statement::Submit {
                client_report_id,
                report: &submission.report,
            }),
            None => Err(FieldViolation::new(
                "client_report_id",
                "is required with a signature: the signature is good for the submission with this key only",
            )),
        };
        submission.signature = self.signature(Some(&submission.report.reporting_party), statement, &signature)?;
        Ok(submission)
    }

    /// The verified signature of `party` over `statement`, if it signed
    /// (`statement` is an error when the request lacks a part a signed one
    /// needs; `party` is `None` for an anonymous retraction).
    fn signature(
        &self,
        party: Option<&PartyId>,
        statement: Result<Statement<'_>, FieldViolation>,
        signature: &[u8],
    ) -> Result<Option<ReportSignature>, ServiceError> {
        let keys = party.and_then(|party| self.auth.party_keys(party));
        check_signature(party, statement, signature, keys.as_ref())
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
    }

    /// Validates an amendment by `caller`, naming every invalid field.
    fn amendment(&self, caller: &Caller, mut request: v1::AmendReportRequest) -> Result<Amendment, ServiceError> {
        speak_as(caller, request.report.as_mut())?;
        let received_at = now();
        let mut v = Violations::default();
        let report_id = v.check("report_id", request.report_id.parse::<ReportId>());
        let reason = v.check("reason", bounded_text(&request.reason, limits::REASON_CHARS, true));
        let report = match &request.report {
            None => v.check("report", Err("is required".to_owned())),
            Some(wire) => match report_from_wire(wire, "report", Received::At(received_at)) {
                Ok(report) => Some(report),
                Err(violations) => {
                    violations.into_iter().for_each(|fv| v.add(fv.field, fv.description));
                    None
                }
            },
        };
        let (Some(report_id), Some(reason), Some(report)) = (report_id, reason, report) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()));
        };
        let replaces_version = (request.replaces_version != 0).then_some(request.replaces_version);
        let statement = match replaces_version {
            Some(replaces_version) => Ok(Statement::Amend {
                report_id,
                replaces_version,
                report: &report,
                reason: &reason,
            }),
            None => Err(version_required()),
        };
        let signature = self.signature(Some(&report.reporting_party), statement, &request.signature)?;
        Ok(Amendment {
            report_id,
            report,
            reason,
            received_at,
            signature,
            replaces_version,
            by: caller.principal().map(|p| p.party.clone()),
        })
    }

    /// Validates a retraction by `caller`, naming every invalid field. The
    /// signature is checked against the caller's party: the sequencer
    /// refuses a retraction of another party's report.
    fn withdrawal(&self, caller: &Caller, request: v1::RetractReportRequest) -> Result<Withdrawal, ServiceError> {
        let mut v = Violations::default();
        let report_id = v.check("report_id", request.report_id.parse::<ReportId>());
        let reason = v.check("reason", bounded_text(&request.reason, limits::REASON_CHARS, true));
        let (Some(report_id), Some(reason)) = (report_id, reason) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()));
        };
        let by = caller.principal().map(|p| p.party.clone());
        let replaces_version = (request.replaces_version != 0).then_some(request.replaces_version);
        let statement = match (&by, replaces_version) {
            (Some(party), Some(replaces_version)) => Ok(Statement::Retract {
                party,
                report_id,
                replaces_version,
                reason: &reason,
            }),
            (None, _) => Err(FieldViolation::new(
                "signature",
                "cannot be checked for an anonymous caller, who speaks for no party",
            )),
            (_, None) => Err(version_required()),
        };
        let signature = self.signature(by.as_ref(), statement, &request.signature)?;
        Ok(Withdrawal {
            report_id,
            reason,
            signature,
            replaces_version,
            by,
        })
    }
}

/// A signed revision names the version it replaces, since its signature is
/// bound to it.
fn version_required() -> FieldViolation {
    FieldViolation::new(
        "replaces_version",
        "is required with a signature: the report's current version, which the signature is bound to",
    )
}

fn revised_to_wire(revised: Revised) -> v1::ReviseReportResponse {
    v1::ReviseReportResponse {
        position: revised.position.0,
        report: Some(v1::StoredReport::from(&revised.report)),
        incident: Some(v1::IncidentSummary::from(&revised.incident)),
    }
}

/// Checks a party's signature over `statement` against the party's
/// registered keys, and whether the party must sign at all: a party that
/// requires signatures signs its submissions, amendments and retractions
/// alike, or a retraction could withdraw a signed report unsigned.
fn check_signature(
    party: Option<&PartyId>,
    statement: Result<Statement<'_>, FieldViolation>,
    signature: &[u8],
    keys: Option<&PartyKeys>,
) -> Result<Option<ReportSignature>, FieldViolation> {
    if signature.is_empty() {
        return match (party, keys) {
            (Some(party), Some(keys)) if keys.require_signatures => Err(FieldViolation::new(
                "signature",
                format!("is required: party {party} signs its reports, amendments and retractions"),
            )),
            _ => Ok(None),
        };
    }
    let statement = statement?;
    let party = statement.party();
    let signature: [u8; 64] = signature.try_into().map_err(|_| {
        FieldViolation::new(
            "signature",
            format!("must be a 64-byte Ed25519 signature (has {} bytes)", signature.len()),
        )
    })?;
    let keys = keys.map(|k| k.signing_keys.as_slice()).unwrap_or_default();
    if keys.is_empty() {
        return Err(FieldViolation::new(
            "signature",
            format!("party {party} has no registered signing key"),
        ));
    }
    keys.iter()
        .map(|&public_key| ReportSignature { public_key, signature })
        .find(|candidate| statement_signature_holds(&statement, candidate))
        .map(Some)
        .ok_or_else(|| {
            FieldViolation::new(
                "signature",
                format!(
                    "does not verify with any key of party {party} over the statement to {} {} (truce-report-v2: \
                     the act, party, report, replaced version, content and reason)",
                    statement.action().name(),
                    statement.subject()
                ),
            )
        })
}

/// Speaks for the caller's own party: fills in an empty reporting party,
/// refuses another one. An anonymous caller (insecure mode) keeps the party
/// it names.
fn as_caller(caller: &Caller, mut request: v1::SubmitReportRequest) -> Result<v1::SubmitReportRequest, ServiceError> {
    speak_as(caller, request.report.as_mut())?;
    Ok(request)
}

/// Fills in or checks `report`'s party against the caller's.
fn speak_as(caller: &Caller, report: Option<&mut v1::Report>) -> Result<(), ServiceError> {
    if let (Caller::Principal(principal), Some(report)) = (caller, report) {
        let own = principal.party.as_str();
        if report.reporting_party.is_empty() {
            report.reporting_party = own.to_owned();
        } else if report.reporting_party != own {
            return Err(ServiceError::PermissionDenied(format!(
                "principal {:?} reports for party {own:?} only, not {}",
                principal.name,
                truce_domain::quote(&report.reporting_party)
            )));
        }
    }
    Ok(())
}

/// Validates a report and its key into a submission, naming every invalid
/// field.
fn validate(
    report: Option<v1::Report>,
    client_report_id: String,
    received_at: Timestamp,
) -> Result<Submission, ServiceError> {
    let mut violations = Vec::new();
    let client_report_id = if client_report_id.is_empty() {
        None
    } else {
        match client_report_id.parse() {
            Ok(key) => Some(key),
            Err(rule) => {
                violations.push(truce_domain::FieldViolation::new("client_report_id", rule));
                None
            }
        }
    };
    let Some(wire) = report else {
        violations.push(truce_domain::FieldViolation::new("report", "is required"));
        return Err(ServiceError::InvalidArgument(violations));
    };
    match report_from_wire(&wire, "report", Received::At(received_at)) {
        Ok(report) if violations.is_empty() => Ok(Submission {
            client_report_id,
            report,
            digest: report_digest(&wire),
            received_at,
            signature: None,
        }),
        Ok(_) => Err(ServiceError::InvalidArgument(violations)),
        Err(more) => {
            violations.extend(more);
            Err(ServiceError::InvalidArgument(violations))
        }
    }
}

fn to_response(a: Accepted) -> v1::SubmitReportResponse {
    v1::SubmitReportResponse {
        report_id: a.report_id.to_string(),
        incident_id: a.incident_id.to_string(),
        opened_incident: a.opened_incident,
        position: a.report_id.0.0,
        received_at: Some(timestamp_to_wire(a.received_at)),
        replayed: a.replayed,
    }
}

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

/// Validates a ruling by `principal`.
fn review_from_request(request: v1::ReviewIncidentRequest, principal: &Principal) -> Result<Review, ServiceError> {
    let mut v = Violations::default();
    let incident_id = v.check("incident_id", request.incident_id.parse::<IncidentId>());
    let status = match <IncidentStatus as truce_proto::convert::WireEnum>::from_number(request.status) {
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
            reviewer: principal.name.clone(),
            reviewer_party: principal.party.clone(),
            status,
            finding,
            responsible,
        }),
        _ => Err(ServiceError::InvalidArgument(v.into_vec())),
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<v1::SubmitReportsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Ingest {
    async fn amend_report(
        &self,
        request: Request<v1::AmendReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        let caller = self.auth.writer(&request, "amend reports", Principal::may_report)?;
        let amendment = self.amendment(&caller, request.into_inner())?;
        let revised = self.submitter.revise(Command::Amend(amendment)).await?;
        Ok(Response::new(revised_to_wire(revised)))
    }

    async fn retract_report(
        &self,
        request: Request<v1::RetractReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        let caller = self.auth.writer(&request, "retract reports", Principal::may_report)?;
        let withdrawal = self.withdrawal(&caller, request.into_inner())?;
        let revised = self.submitter.revise(Command::Retract(withdrawal)).await?;
        Ok(Response::new(revised_to_wire(revised)))
    }

    async fn review_incident(
        &self,
        request: Request<v1::ReviewIncidentRequest>,
    ) -> Result<Response<v1::ReviewIncidentResponse>, Status> {
        let caller = self
            .auth
            .writer(&request, "review incidents", |p| p.has(Role::Monitor))?;
        let Some(principal) = caller.principal().cloned() else {
            return Err(ServiceError::PermissionDenied("reviews need a monitor's identity".into()).into());
        };
        let review = review_from_request(request.into_inner(), &principal)?;
        let reviewed = self.submitter.review(review).await?;
        Ok(Response::new(v1::ReviewIncidentResponse {
            position: reviewed.position.0,
            incident: Some(v1::IncidentSummary::from(&reviewed.incident)),
        }))
    }

    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<Response<v1::SubmitReportResponse>, Status> {
        let caller = self.auth.writer(&request, "submit reports", Principal::may_report)?;
        let submission = self.validate(as_caller(&caller, request.into_inner())?, now())?;
        let accepted = self.submitter.submit(submission).await?;
        Ok(Response::new(to_response(accepted)))
    }

    type SubmitReportsStream = ResultStream;

    async fn submit_reports(
        &self,
        request: Request<Streaming<v1::SubmitReportsRequest>>,
    ) -> Result<Response<Self::SubmitReportsStream>, Status> {
        // Opening the stream takes a place among the open bulk streams and
        // is charged as a call (to the read allowance: a caller over its
        // write rate still opens one, and its reports are refused one by
        // one with the delay); each report in it is charged as a write.
        let caller = Caller::of(&request)?;
        caller.require("submit reports", Principal::may_report)?;
        let peer = request.remote_addr();
        let permit = self.bulk.admit(&caller, peer.map(|a| a.ip()))?;
        self.auth.charge(&caller, CallKind::Read, 1)?;
        Ok(Response::new(bulk::serve(
            self.clone(),
            caller,
            peer,
            request.into_inner(),
            permit,
        )))
    }
}
