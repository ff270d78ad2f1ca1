//! `truce.v1.LogService`: the log, for followers on other machines.

use std::{pin::Pin, time::Duration};

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use truce_log::{Checkpoint, CheckpointSigner, Head, Incarnation, LogEntry, LogError, LogReader};
use truce_proto::{
    ServiceError,
    v1::{self, log_service_server::LogService, read_log_response::Kind},
};
use truce_serve::{Stopping, auth::Authenticator};

/// How often an idle follower hears the head, so it can tell a quiet log
/// from a dead connection.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// The log a feed serves.
#[derive(Debug, Clone)]
pub enum FeedLog {
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
pub struct LogFeed {
    reader: FeedLog,
    auth: Authenticator,
    signer: Arc<CheckpointSigner>,
    stopping: Stopping,
}

impl LogFeed {
    /// Serves `reader`'s log to callers `auth` admits, signing checkpoints
    /// with `signer`, until `stopping`.
    pub fn new(reader: FeedLog, auth: Authenticator, signer: Arc<CheckpointSigner>, stopping: Stopping) -> LogFeed {
        LogFeed {
            reader,
            auth,
            signer,
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
        self.auth.reader(&request)?;
        let request = request.into_inner();
        if !request.incarnation.is_empty() && request.incarnation != self.reader.incarnation().as_str() {
            return Err(ServiceError::FailedPrecondition(format!(
                "this log is incarnation {}, not {}",
                self.reader.incarnation(),
                request.incarnation
            ))
            .into());
        }
        if request.until_position != 0 && request.until_position < request.from_position.max(1) {
            return Err(ServiceError::invalid("until_position", "must not be before from_position").into());
        }
        let (tx, rx) = mpsc::channel(64);
        let mut entries = self.reader.follow(request.from_position).await?;
        let info = self.info().await?;
        let feed = self.clone();
        tokio::spawn(async move {
            let message = |kind| Ok(v1::ReadLogResponse { kind: Some(kind) });
            if tx.send(message(Kind::Info(info))).await.is_err() {
                return;
            }
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout(HEARTBEAT, entries.next()) => next,
                    () = feed.stopping.wait() => {
                        let _ = tx.send(Err(Status::unavailable("the ingest service is shutting down"))).await;
                        return;
                    }
                };
                let out = match next {
                    Err(_idle) => match feed.info().await {
                        Ok(info) => message(Kind::Heartbeat(info)),
                        Err(error) => Err(error.into()),
                    },
                    Ok(None) => Err(Status::unavailable("the log closed")),
                    Ok(Some(Ok(entry))) => message(Kind::Entry(v1::LogEntry {
                        position: entry.position,
                        hash: entry.hash.to_vec(),
                        event: entry.payload,
                    })),
                    Ok(Some(Err(error))) => Err(ServiceError::Internal(error.to_string()).into()),
                };
                // A range ends after its last position.
                let end_of_range = matches!(&out, Ok(v1::ReadLogResponse { kind: Some(Kind::Entry(e)) })
                    if request.until_position != 0 && e.position >= request.until_position);
                let last = out.is_err() || end_of_range;
                if tx.send(out).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
