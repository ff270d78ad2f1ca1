//! The pump from an ingest service's `LogService.ReadLog`.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tonic::{
    Streaming,
    transport::{Channel, ClientTlsConfig, Endpoint},
};
use truce_log::{Incarnation, LogEntry};
use truce_proto::v1::{self, log_service_client::LogServiceClient, read_log_response::Kind};

use super::{Fatal, UPSTREAM_SILENCE_LIMIT};
use crate::{state::QueryState, upstream::IngestUpstream};

/// Which log the ingest service holds: what it answers a read from beyond
/// any end.
pub(super) async fn incarnation(upstream: &IngestUpstream) -> anyhow::Result<Incarnation> {
    let mut client = connect(&upstream.endpoint, upstream.tls.as_ref()).await?;
    let request = v1::ReadLogRequest {
        from_position: u64::MAX,
        incarnation: String::new(),
        until_position: 0,
    };
    let mut stream = client
        .read_log(read_log_request(request, upstream.token.as_deref()))
        .await?
        .into_inner();
    match stream.message().await? {
        Some(v1::ReadLogResponse {
            kind: Some(Kind::Info(info)),
        }) => Ok(Incarnation::from_text(&info.incarnation)),
        _ => anyhow::bail!("the ingest service did not describe its log"),
    }
}

/// Reads the upstream log from `from` into `tx` until the stream breaks.
/// `Ok` means "reconnect"; `Err` means the upstream is another log.
pub(super) async fn pump(
    upstream: IngestUpstream,
    from: u64,
    incarnation: String,
    tx: mpsc::Sender<LogEntry>,
    state: Arc<QueryState>,
) -> Result<(), Fatal> {
    let Some(mut stream) = open(&upstream, from, incarnation).await? else {
        return Ok(());
    };
    let mut expected = from;
    loop {
        let Some(message) = next_message(&mut stream, &upstream.endpoint).await else {
            return Ok(());
        };
        state.heard_from_log();
        match message.kind {
            Some(Kind::Entry(entry)) => {
                let Some(entry) = entry_from_wire(entry, expected) else {
                    return Ok(());
                };
                expected += 1;
                if tx.send(entry).await.is_err() {
                    return Ok(());
                }
            }
            Some(Kind::Info(_)) | Some(Kind::Heartbeat(_)) | None => {}
        }
    }
}

/// Asks the upstream for its log from `from`: `None` when it cannot be
/// asked now (try again later), `Err` when it holds another log.
async fn open(
    upstream: &IngestUpstream,
    from: u64,
    incarnation: String,
) -> Result<Option<Streaming<v1::ReadLogResponse>>, Fatal> {
    let mut client = match connect(&upstream.endpoint, upstream.tls.as_ref()).await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "cannot reach the ingest service");
            return Ok(None);
        }
    };
    let request = v1::ReadLogRequest {
        from_position: from,
        incarnation,
        until_position: 0,
    };
    match client
        .read_log(read_log_request(request, upstream.token.as_deref()))
        .await
    {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => Err(Fatal(format!(
            "{} (delete the query data directory to follow the new log)",
            status.message()
        ))),
        Err(status) => {
            tracing::debug!(%status, "ReadLog refused");
            Ok(None)
        }
    }
}

/// The next message on `stream`; `None` once it ended, failed or went
/// silent for longer than heartbeats allow.
async fn next_message(stream: &mut Streaming<v1::ReadLogResponse>, endpoint: &str) -> Option<v1::ReadLogResponse> {
    match tokio::time::timeout(UPSTREAM_SILENCE_LIMIT, stream.message()).await {
        Ok(Ok(Some(message))) => Some(message),
        Ok(Ok(None)) => None,
        Ok(Err(status)) => {
            tracing::debug!(%status, "upstream log stream ended");
            None
        }
        Err(_) => {
            tracing::warn!(%endpoint, "upstream log silent; reconnecting");
            None
        }
    }
}

/// `entry` as the replica stores it, if it is the `expected` one and whole;
/// `None` (reconnect) otherwise.
fn entry_from_wire(entry: v1::LogEntry, expected: u64) -> Option<LogEntry> {
    if entry.position != expected {
        tracing::warn!(
            expected,
            got = entry.position,
            "upstream skipped a position; reconnecting"
        );
        return None;
    }
    let Ok(hash) = entry.hash.as_slice().try_into() else {
        tracing::warn!(position = entry.position, "upstream hash is not 32 bytes; reconnecting");
        return None;
    };
    Some(LogEntry {
        position: entry.position,
        hash,
        payload: entry.event,
    })
}

/// A ReadLog request carrying `token`.
fn read_log_request(message: v1::ReadLogRequest, token: Option<&str>) -> tonic::Request<v1::ReadLogRequest> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn connect(
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<LogServiceClient<Channel>, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(endpoint.to_owned())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(LogServiceClient::new(channel).max_decoding_message_size(truce_serve::MAX_MESSAGE_BYTES * 4))
}
