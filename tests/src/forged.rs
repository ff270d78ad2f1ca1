//! Logs served as an attacker would serve them: a `LogService` that answers
//! with whatever entries and signed head a test gives it, so `truce verify
//! --log` can be shown a log rewritten, cut short or signed by another key,
//! on either log backend (the entries are read from the real service
//! first).

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use ed25519_dalek::{Signer, SigningKey};
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use truce_proto::v1::{self, log_service_server::LogService};

use crate::PATIENCE;

/// A `LogService` serving a fixed log, stopped on drop.
pub struct ForgedLog {
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl ForgedLog {
    /// Serves `entries` (ReadLog) and `head` (GetLogHead), exactly as given.
    pub async fn serve(entries: Vec<v1::LogEntry>, head: v1::GetLogHeadResponse) -> ForgedLog {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let service = Served {
            entries: Arc::new(entries),
            head,
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(v1::log_service_server::LogServiceServer::new(service))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        ForgedLog { addr, _stop: stop }
    }

    /// Its URL, for `truce verify --log`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[derive(Clone)]
struct Served {
    entries: Arc<Vec<v1::LogEntry>>,
    head: v1::GetLogHeadResponse,
}

type Entries = Pin<Box<dyn Stream<Item = Result<v1::ReadLogResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LogService for Served {
    type ReadLogStream = Entries;

    async fn read_log(&self, request: Request<v1::ReadLogRequest>) -> Result<Response<Entries>, Status> {
        let request = request.into_inner();
        let until = if request.until_position == 0 {
            u64::MAX
        } else {
            request.until_position
        };
        let info = v1::ReadLogResponse {
            kind: Some(v1::read_log_response::Kind::Info(v1::LogInfo {
                incarnation: self.head.incarnation.clone(),
                head_position: self.head.position,
            })),
        };
        let entries: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.position >= request.from_position.max(1) && e.position <= until)
            .map(|e| v1::ReadLogResponse {
                kind: Some(v1::read_log_response::Kind::Entry(e.clone())),
            })
            .collect();
        let stream = tokio_stream::iter(std::iter::once(info).chain(entries)).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_log_head(
        &self,
        _request: Request<v1::GetLogHeadRequest>,
    ) -> Result<Response<v1::GetLogHeadResponse>, Status> {
        Ok(Response::new(self.head.clone()))
    }
}

/// The real service's log through its `LogService`: its signed head and
/// every entry up to it. `token` is a bearer token, if the service needs
/// one.
pub async fn read_log(addr: SocketAddr, token: Option<&str>) -> (v1::GetLogHeadResponse, Vec<v1::LogEntry>) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = v1::log_service_client::LogServiceClient::new(channel);
    let head = client
        .get_log_head(with(token, v1::GetLogHeadRequest {}))
        .await
        .expect("GetLogHead")
        .into_inner();
    let mut entries = Vec::new();
    if head.position > 0 {
        let mut stream = client
            .read_log(with(
                token,
                v1::ReadLogRequest {
                    from_position: 1,
                    incarnation: head.incarnation.clone(),
                    until_position: head.position,
                },
            ))
            .await
            .expect("ReadLog")
            .into_inner();
        while let Some(message) = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("ReadLog stalled")
            .expect("ReadLog failed")
        {
            if let Some(v1::read_log_response::Kind::Entry(entry)) = message.kind {
                let last = entry.position >= head.position;
                entries.push(entry);
                if last {
                    break;
                }
            }
        }
    }
    (head, entries)
}

/// `message` with `token` as its bearer token, if any.
fn with<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(token) => crate::secure::with_token(token, message),
        None => Request::new(message),
    }
}

/// Recomputes every hash from the first entry on, as an operator who
/// rewrote an entry would to keep the chain consistent.
pub fn rechain(entries: &mut [v1::LogEntry]) {
    let mut previous = truce_log::GENESIS_HASH;
    for entry in entries {
        let hash = truce_log::chain_hash(&previous, &entry.event);
        entry.hash = hash.to_vec();
        previous = hash;
    }
}

/// A head of log `incarnation` at `position` with `hash`, signed by `key`.
pub fn signed_head(key: &SigningKey, incarnation: &str, position: u64, hash: &[u8]) -> v1::GetLogHeadResponse {
    let checkpoint = truce_log::Checkpoint {
        incarnation: incarnation.to_owned(),
        position,
        hash: hash.try_into().expect("a 32-byte hash"),
    };
    v1::GetLogHeadResponse {
        incarnation: checkpoint.incarnation.clone(),
        position,
        hash: hex::encode(hash),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(key.sign(&checkpoint.signed_bytes()).to_bytes()),
    }
}

/// The head of `entries` (the last one's position and hash), signed by
/// `key`.
pub fn head_of(key: &SigningKey, incarnation: &str, entries: &[v1::LogEntry]) -> v1::GetLogHeadResponse {
    let last = entries.last().expect("a log with entries");
    signed_head(key, incarnation, last.position, &last.hash)
}
