//! `truce.v1.IngestService`: each call is authorized, converted at the
//! border (`truce_proto::ingest`), its signature checked, and handed to the
//! sequencer; the answer is converted back.

use std::{pin::Pin, time::SystemTime};

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use truce_auth::{Principal, Role};
use truce_domain::{FieldViolation, PartyId, Timestamp, report::ReportSignature, statement::Statement};
use truce_proto::{
    ServiceError, ingest as border,
    v1::{self, ingest_service_server::IngestService},
};
use truce_serve::{
    auth::{Authenticator, Caller},
    limits::CallKind,
};

use crate::sequencer::{Command, Submission, Submitter};

mod bulk;
mod signature;

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

    /// The submission `caller` makes with `request`: speaking for its own
    /// party, every field valid, its signature checked.
    fn submission(&self, caller: &Caller, mut request: v1::SubmitReportRequest) -> Result<Submission, ServiceError> {
        speak_as(caller, request.report.as_mut())?;
        let mut submission = border::submission(&request, now())?;
        submission.signature = self.signature(
            Some(&submission.report.reporting_party),
            submission.statement(),
            &request.signature,
        )?;
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
        signature::check_signature(party, statement, signature, keys.as_ref())
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
    }
}

/// The caller's party, which a revision must come from; `None` for an
/// anonymous caller in insecure mode.
fn party_of(caller: &Caller) -> Option<PartyId> {
    caller.principal().map(|p| p.party.clone())
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

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<v1::SubmitReportsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Ingest {
    async fn amend_report(
        &self,
        request: Request<v1::AmendReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        let caller = self.auth.writer(&request, "amend reports", Principal::may_report)?;
        let mut request = request.into_inner();
        speak_as(&caller, request.report.as_mut())?;
        let mut amendment = border::amendment(&request, now(), party_of(&caller))?;
        amendment.signature = self.signature(
            Some(&amendment.report.reporting_party),
            amendment.statement(),
            &request.signature,
        )?;
        let revised = self.submitter.revise(Command::Amend(amendment)).await?;
        Ok(Response::new(border::revised(&revised)))
    }

    async fn retract_report(
        &self,
        request: Request<v1::RetractReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        let caller = self.auth.writer(&request, "retract reports", Principal::may_report)?;
        let request = request.into_inner();
        // The signature is checked against the caller's party: the
        // sequencer refuses a retraction of another party's report.
        let mut withdrawal = border::withdrawal(&request, party_of(&caller))?;
        withdrawal.signature = self.signature(withdrawal.by.as_ref(), withdrawal.statement(), &request.signature)?;
        let revised = self.submitter.revise(Command::Retract(withdrawal)).await?;
        Ok(Response::new(border::revised(&revised)))
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
        let review = border::review(request.get_ref(), &principal.name, &principal.party)?;
        let reviewed = self.submitter.review(review).await?;
        Ok(Response::new(border::reviewed(&reviewed)))
    }

    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<Response<v1::SubmitReportResponse>, Status> {
        let caller = self.auth.writer(&request, "submit reports", Principal::may_report)?;
        let submission = self.submission(&caller, request.into_inner())?;
        let accepted = self.submitter.submit(submission).await?;
        Ok(Response::new(border::submitted(&accepted)))
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
