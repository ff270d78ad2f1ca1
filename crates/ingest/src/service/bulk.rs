//! `SubmitReports`, the bulk stream. Each report in it is held to what a
//! `SubmitReport` call of its own would be: the credential the stream was
//! opened with must still be in force, the write is charged, the party
//! checked. A stream whose credential is revoked or rotated out ends
//! UNAUTHENTICATED, after the results of the reports before: at its next
//! report or at the reload, whichever comes first, and nothing it sends
//! after is stored.
//!
//! Results are awaited in the order requests arrived, while later requests
//! are already with the sequencer: pipelining without reordering. The
//! pending queue bounds how far ahead a client gets.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};
use truce_proto::{ServiceError, v1};
use truce_serve::{admission::Permit, auth::Caller, limits::CallKind, revocation::Revocation};

use super::{Ingest, ResultStream, border};
use crate::sequencer::Accepted;

/// How many bulk results may be outstanding on one stream: enough to
/// pipeline a fast importer, small enough to bound its memory.
const BULK_WINDOW: usize = 1024;

/// What the writer of results waits for next.
enum Pending {
    /// The answer to one request.
    Answer(oneshot::Receiver<Result<Accepted, ServiceError>>),
    /// The end of the stream, with this status.
    End(Status),
}

/// The method, as refusals name it.
const METHOD: &str = "/truce.v1.IngestService/SubmitReports";

/// Serves one bulk stream of `caller`'s, from `peer`.
pub(super) fn serve(
    service: Ingest,
    caller: Caller,
    peer: Option<SocketAddr>,
    inbound: Streaming<v1::SubmitReportsRequest>,
    permit: Permit,
) -> ResultStream {
    let (pending_tx, pending_rx) = mpsc::channel(BULK_WINDOW);
    let (out_tx, out_rx) = mpsc::channel(BULK_WINDOW);
    tokio::spawn(async move {
        read(service, caller, peer, inbound, pending_tx).await;
        // The stream's place is free once nothing more is read from it.
        drop(permit);
    });
    tokio::spawn(write(pending_rx, out_tx));
    Box::pin(ReceiverStream::new(out_rx))
}

/// Takes each request as it arrives and hands it on, until the client
/// ends the stream or its credential is no longer in force.
async fn read(
    service: Ingest,
    caller: Caller,
    peer: Option<SocketAddr>,
    mut inbound: Streaming<v1::SubmitReportsRequest>,
    pending: mpsc::Sender<Pending>,
) {
    let revocation = Revocation::new(service.auth.clone(), caller.clone());
    let revoked = revocation.revoked();
    tokio::pin!(revoked);
    let stopping = service.stopping.clone();
    let stopped = stopping.wait();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            next = inbound.next() => next,
            () = &mut revoked => {
                let _ = pending.send(Pending::End(Revocation::refusal().into())).await;
                return;
            }
            () = &mut stopped => {
                let stopping = ServiceError::Unavailable(
                    "the service is shutting down; send again what was not answered, with the same keys".into(),
                );
                let _ = pending.send(Pending::End(stopping.into())).await;
                return;
            }
        };
        let request = match next {
            None => break,
            Some(Ok(request)) => request,
            Some(Err(status)) => {
                tracing::debug!(%status, "bulk stream ended by the client");
                break;
            }
        };
        // Checked for every report, as a call of its own would be.
        if let Err(error) = revocation.check() {
            let _ = pending.send(Pending::End(error.into())).await;
            return;
        }
        let (answer_tx, answer_rx) = oneshot::channel();
        if pending.send(Pending::Answer(answer_rx)).await.is_err() {
            return;
        }
        let outcome = match request.request {
            None => Err(ServiceError::invalid("request", "is required")),
            Some(request) => service
                .auth
                .charge(&caller, CallKind::Write, 1)
                .and_then(|()| service.submission(&caller, request)),
        };
        match outcome {
            Err(error) => {
                // Over the rate, or for another party: logged as a refused
                // call would be.
                service.auth.refused_in_stream(METHOD, &caller, peer, &error);
                let _ = answer_tx.send(Err(error));
            }
            Ok(submission) => {
                let submitter = service.submitter.clone();
                tokio::spawn(async move {
                    let _ = answer_tx.send(submitter.submit(submission).await);
                });
            }
        }
    }
}

/// Sends each result in the order the requests came, then the final
/// status if there is one.
async fn write(mut pending: mpsc::Receiver<Pending>, out: mpsc::Sender<Result<v1::SubmitReportsResponse, Status>>) {
    let mut index = 0u64;
    while let Some(next) = pending.recv().await {
        let answer = match next {
            Pending::Answer(answer) => answer,
            Pending::End(status) => {
                let _ = out.send(Err(status)).await;
                return;
            }
        };
        let result = match answer.await {
            Ok(Ok(accepted)) => v1::submit_reports_response::Result::Accepted(border::submitted(&accepted)),
            Ok(Err(error)) => v1::submit_reports_response::Result::Rejected(error.to_rejection()),
            Err(_) => v1::submit_reports_response::Result::Rejected(
                ServiceError::Unavailable("the ingest service is shutting down".into()).to_rejection(),
            ),
        };
        let message = v1::SubmitReportsResponse {
            index,
            result: Some(result),
        };
        if out.send(Ok(message)).await.is_err() {
            return;
        }
        index += 1;
    }
}
