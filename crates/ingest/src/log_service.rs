//! `truce.v1.LogService`: the log, for followers on other machines.
//!
//! A `ReadLog` stream is held to the rules of a subscription: capped in
//! all, per party and per address; ended RESOURCE_EXHAUSTED when its reader
//! takes nothing for the stall timeout; ended UNAUTHENTICATED when its
//! caller's credential is revoked or rotated out.

use std::{pin::Pin, time::Duration};

use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use truce_log::{Checkpoint, CheckpointSigner, Head, Incarnation, LogEntry, LogError, LogReader};
use truce_proto::{
    ServiceError,
    v1::{self, log_service_server::LogService, read_log_response::Kind},
};
use truce_serve::{
    Stopping,
    admission::{Admission, StreamLimits, Streams},
    auth::Authenticator,
    outbound::{Outbound, Stop, outbound},
    revocation::Revocation,
};

/// How often an idle follower hears the head, so it can tell a quiet log
/// from a dead connection.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// Messages a log reader may have queued beyond what HTTP/2 flow control
/// holds.
const QUEUE: usize = 64;

/// The log a feed serves.
#[derive(Debug, Clone)]
pub(crate) enum FeedLog {
    /// The embedded log of this process.
    Embedded(LogReader),
    /// The JetStream stream, read on the callers' behalf.
    JetStream(truce_jetstream::JetStreamLog),
}

type Entries = Pin<Box<dyn Stream<Item = Result<LogEntry, LogError>> + Send>>;

impl FeedLog {
    fn incarnation(&self) -> &Incarnation {
        match self {
            FeedLog::Embedded(reader) => reader.incarnation(),
            FeedLog::JetStream(log) => log.incarnation(),
        }
    }

    async fn head(&self) -> Result<Head, ServiceError> {
        match self {
            FeedLog::Embedded(reader) => Ok(reader.head()),
            FeedLog::JetStream(log) => log.head().await.map_err(unavailable),
        }
    }

    async fn follow(&self, from: u64) -> Result<Entries, ServiceError> {
        match self {
            FeedLog::Embedded(reader) => Ok(Box::pin(truce_log::follow(reader.clone(), from))),
            FeedLog::JetStream(log) => Ok(Box::pin(log.follow(from).await.map_err(unavailable)?)),
        }
    }
}

fn unavailable(error: LogError) -> ServiceError {
    ServiceError::Unavailable(error.to_string())
}

/// Serves the log to followers.
#[derive(Debug, Clone)]
pub(crate) struct LogFeed {
    reader: FeedLog,
    auth: Authenticator,
    signer: Arc<CheckpointSigner>,
    admission: Arc<Admission>,
    stall: Duration,
    stopping: Stopping,
}

impl LogFeed {
    /// Serves `reader`'s log to callers `auth` admits, signing checkpoints
    /// with `signer`, holding readers to `limits`, until `stopping`.
    pub(crate) fn new(
        reader: FeedLog,
        auth: Authenticator,
        signer: Arc<CheckpointSigner>,
        limits: StreamLimits,
        stopping: Stopping,
    ) -> LogFeed {
        LogFeed {
            reader,
            auth,
            signer,
            admission: Admission::new(limits.caps, Streams::LOG_READERS),
            stall: limits.stall_timeout,
            stopping,
        }
    }

    async fn info(&self) -> Result<v1::LogInfo, ServiceError> {
        Ok(v1::LogInfo {
            incarnation: self.reader.incarnation().to_string(),
            head_position: self.reader.head().await?.position,
        })
    }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<v1::ReadLogResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LogService for LogFeed {
    async fn get_log_head(
        &self,
        request: Request<v1::GetLogHeadRequest>,
    ) -> Result<Response<v1::GetLogHeadResponse>, Status> {
        self.auth.reader(&request)?;
        let head = self.reader.head().await?;
        let checkpoint = Checkpoint {
            incarnation: self.reader.incarnation().to_string(),
            position: head.position,
            hash: head.hash,
        };
        let signature = self.signer.sign(&checkpoint);
        Ok(Response::new(v1::GetLogHeadResponse {
            incarnation: checkpoint.incarnation,
            position: checkpoint.position,
            hash: hex::encode(checkpoint.hash),
            public_key: hex::encode(self.signer.public_key()),
            signature: hex::encode(signature),
        }))
    }

    type ReadLogStream = EntryStream;

    async fn read_log(&self, request: Request<v1::ReadLogRequest>) -> Result<Response<EntryStream>, Status> {
        let caller = self.auth.reader(&request)?;
        let address = request.remote_addr().map(|a| a.ip());
        let request = request.into_inner();
        if !request.incarnation.is_empty() && request.incarnation != self.reader.incarnation().as_str() {
            return Err(ServiceError::FailedPrecondition(format!(
                "this log is incarnation {}, not {}",
                self.reader.incarnation(),
                truce_domain::quote(&request.incarnation)
            ))
            .into());
        }
        if request.until_position != 0 && request.until_position < request.from_position.max(1) {
            return Err(ServiceError::invalid("until_position", "must not be before from_position").into());
        }
        let permit = self.admission.admit(&caller, address)?;
        let entries = self.reader.follow(request.from_position).await?;
        let info = self.info().await?;
        let (out, outgoing) = outbound(QUEUE);
        let feed = self.clone();
        let revocation = Revocation::new(self.auth.clone(), caller);
        tokio::spawn(async move {
            let mut reading = Reading {
                feed: &feed,
                out: &out,
                delivered: request.from_position.saturating_sub(1),
            };
            let outcome = tokio::select! {
                outcome = reading.run(info, entries, request.until_position) => outcome,
                () = feed.stopping.wait() => Err(Stop::End(Status::unavailable("the ingest service is shutting down"))),
                () = out.closed() => Err(Stop::Gone),
                () = revocation.revoked() => Err(Stop::End(Revocation::refusal().into())),
            };
            drop(permit);
            if let Err(Stop::End(status)) = outcome {
                out.finish(status);
            }
        });
        Ok(Response::new(Box::pin(outgoing)))
    }
}

/// One `ReadLog` stream's progress.
struct Reading<'a> {
    feed: &'a LogFeed,
    out: &'a Outbound<v1::ReadLogResponse>,
    /// The last position queued for the reader.
    delivered: u64,
}

impl Reading<'_> {
    /// Sends the log from where `entries` starts, with heartbeats in
    /// silences, through `until` (0: for ever).
    async fn run(&mut self, info: v1::LogInfo, mut entries: Entries, until: u64) -> Result<(), Stop> {
        self.send(Kind::Info(info)).await?;
        loop {
            let kind = match tokio::time::timeout(HEARTBEAT, entries.next()).await {
                // A heartbeat says nothing while messages wait to be taken.
                Err(_idle) => match self.out.waiting() {
                    Some(waited) if waited >= self.feed.stall => return Err(self.stalled()),
                    Some(_) => continue,
                    None => Kind::Heartbeat(self.feed.info().await.map_err(|e| Stop::End(e.into()))?),
                },
                Ok(None) => return Err(Stop::End(Status::unavailable("the log closed"))),
                Ok(Some(Ok(entry))) => Kind::Entry(v1::LogEntry {
                    position: entry.position,
                    hash: entry.hash.to_vec(),
                    event: entry.payload,
                }),
                Ok(Some(Err(error))) => return Err(Stop::End(ServiceError::Internal(error.to_string()).into())),
            };
            let position = match &kind {
                Kind::Entry(entry) => Some(entry.position),
                _ => None,
            };
            self.send(kind).await?;
            if let Some(position) = position {
                self.delivered = position;
                // A range ends after its last position.
                if until != 0 && position >= until {
                    return Ok(());
                }
            }
        }
    }

    /// Queues one message; a reader that takes nothing for the stall
    /// timeout is ended with where to read on from.
    async fn send(&mut self, kind: Kind) -> Result<(), Stop> {
        let message = v1::ReadLogResponse { kind: Some(kind) };
        match self.out.send(message, self.feed.stall).await {
            Err(Stop::Stalled) => Err(self.stalled()),
            other => other,
        }
    }

    /// How a reader that took nothing for the stall timeout is ended:
    /// with where to read on from.
    fn stalled(&self) -> Stop {
        Stop::End(
            ServiceError::ResourceExhausted {
                message: format!(
                    "the log reader took nothing for {:?}; read again from the position after the one in the details",
                    self.feed.stall
                ),
                reason: "SLOW_CONSUMER",
                metadata: vec![("position", self.delivered.to_string())],
            }
            .into(),
        )
    }
}
