//! Following the log into the view.
//!
//! In one process with the ingest service, the follower reads the ingest
//! log directly. On its own, it keeps a replica of the log in its data
//! directory, fed by `LogService.ReadLog` and checked link by link against
//! the hash chain; the replica is what subscribers catch up from and what a
//! restart replays, so a restarted query service serves at once and then
//! continues from where its replica ends.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::StreamExt;
use truce_domain::{Position, Timestamp, event::RecordedEvent, incident::IncidentSummary};
use truce_log::{Committed, Head, Incarnation, LogEntry, LogError, LogReader, LogStore, ReadAhead};
use truce_proto::{
    convert::event_from_wire,
    v1::{self, log_service_client::LogServiceClient, read_log_response::Kind},
};
use truce_serve::Stopping;

use crate::{fanout::Fanout, recent::Recent, view::View};

/// Changes kept for the live dispatchers; subscribers of one that falls
/// further behind read the log instead.
pub const LIVE_BUFFER: usize = 1024;

/// A follower that hears nothing from the upstream, not even a heartbeat
/// (sent every 2 s), for this long treats the connection as dead.
const UPSTREAM_SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// Entries appended to the replica in one transaction at most.
const REPLICA_BATCH: usize = 1024;

/// An applied event, as live subscribers receive it: with the incident's
/// summary before it, which the view had at hand, so a subscriber can tell
/// an incident leaving its filter without reading the log.
#[derive(Debug)]
pub struct LiveChange {
    /// The event.
    pub event: RecordedEvent,
    /// The incident's summary before the event; `None` if it opened it.
    pub before: Option<Arc<IncidentSummary>>,
    /// The change as sent to subscribers it matches, encoded by the first.
    pub as_change: std::sync::OnceLock<truce_proto::frame::Frame>,
    /// The change as sent to subscribers it leaves, encoded by the first.
    pub as_departure: std::sync::OnceLock<truce_proto::frame::Frame>,
}

/// How fresh the view is.
#[derive(Debug)]
enum Freshness {
    /// Reading the log in this process: never stale.
    Local,
    /// Following a remote log: when it was last heard from (Unix nanos).
    Remote(AtomicI64),
}

/// The query side's state, shared by the follower and every call.
#[derive(Debug)]
pub struct QueryState {
    /// Incidents and reports as of some position.
    pub view: RwLock<View>,
    /// Each applied event, for the live dispatchers.
    pub live: broadcast::Sender<Arc<LiveChange>>,
    /// Live subscribers, attached to the dispatchers.
    pub fanout: Fanout,
    /// The last changes applied, for subscribers that fell behind.
    pub recent: Recent,
    /// The log, for history.
    pub history: LogReader,
    /// The position of the last applied event.
    pub applied: watch::Sender<Position>,
    freshness: Freshness,
}

impl QueryState {
    fn new(history: LogReader, remote: bool) -> Arc<QueryState> {
        let live = broadcast::channel(LIVE_BUFFER).0;
        Arc::new(QueryState {
            view: RwLock::new(View::default()),
            fanout: Fanout::start(&live, history.incarnation()),
            recent: Recent::default(),
            live,
            history,
            applied: watch::channel(Position::ZERO).0,
            freshness: if remote {
                Freshness::Remote(AtomicI64::new(now().0))
            } else {
                Freshness::Local
            },
        })
    }

    /// Which log the view follows.
    pub fn incarnation(&self) -> &Incarnation {
        self.history.incarnation()
    }

    /// Reads the view. Poisoning is not possible in practice (the writer
    /// does not panic while holding it), and a poisoned view is still whole
    /// since each event is applied before the lock is released.
    pub fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// When the log was last heard from: now, for a log in this process.
    pub fn log_heard_at(&self) -> Timestamp {
        match &self.freshness {
            Freshness::Local => now(),
            Freshness::Remote(at) => Timestamp(at.load(Ordering::Relaxed)),
        }
    }

    fn heard_from_log(&self) {
        if let Freshness::Remote(at) = &self.freshness {
            at.store(now().0, Ordering::Relaxed);
        }
    }

    /// Applies decoded events in order, then tells live subscribers.
    fn apply(&self, events: Vec<RecordedEvent>) {
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        let changes: Vec<Arc<LiveChange>> = {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            events
                .into_iter()
                .map(|event| {
                    let before = view.apply(&event);
                    Arc::new(LiveChange {
                        event,
                        before,
                        as_change: Default::default(),
                        as_departure: Default::default(),
                    })
                })
                .collect()
        };
        // Held before they are handed out, so a subscriber that finds a
        // change already dispatched finds it held.
        self.recent.hold(&changes);
        for change in changes {
            // No receivers is fine: nobody is subscribed.
            let _ = self.live.send(change);
        }
        self.applied.send_replace(last);
    }

    /// Replays the history from the view's position through `last`. The
    /// next page is read and decoded on another task while one is applied.
    async fn catch_up_to(&self, last: Position) -> Result<(), LogError> {
        let from = self.read_view().position().next();
        let mut pages = ReadAhead::new(self.history.clone(), from.0, last.0, (4096, usize::MAX), |entries| {
            decode(&entries)
        });
        loop {
            let events = pages.next_page().await?;
            if events.is_empty() {
                return Ok(());
            }
            self.apply(events);
        }
    }

    /// The event at `position` of the log.
    pub async fn event_at(&self, position: Position) -> Result<RecordedEvent, LogError> {
        let entries = self.history.read(position.0, 1).await?;
        match entries.first() {
            Some(entry) if entry.position == position.0 => Ok(decode(std::slice::from_ref(entry))?.remove(0)),
            _ => Err(LogError::Corrupt {
                position: position.0,
                what: "an event the view refers to is missing from the log".into(),
            }),
        }
    }

    /// `summary` as it stood at `position`: walks back through the
    /// incident's earlier events in the log while they are later than
    /// `position`. `None` when the incident did not exist yet. Costs one
    /// log read per change since `position`, and no memory in between.
    pub async fn as_of(
        &self,
        summary: Arc<IncidentSummary>,
        position: Position,
    ) -> Result<Option<Arc<IncidentSummary>>, LogError> {
        let mut current = summary;
        while current.updated_position > position {
            let event = self.event_at(current.updated_position).await?;
            match event.previous_position() {
                None => return Ok(None),
                Some(previous) => current = Arc::new(self.event_at(previous).await?.incident().clone()),
            }
        }
        Ok(Some(current))
    }

    /// The last position recorded before `time` (0 if none): a binary
    /// search over the log by recording time.
    pub async fn position_before(&self, time: Timestamp) -> Result<Position, LogError> {
        let (mut low, mut high) = (0u64, self.history.head().position);
        // Invariant: everything at or before `low` was recorded before
        // `time`; everything after `high` at or after it.
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if self.event_at(Position(middle)).await?.recorded_at < time {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Ok(Position(low))
    }
}

fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

fn decode(entries: &[LogEntry]) -> Result<Vec<RecordedEvent>, LogError> {
    entries
        .iter()
        .map(|e| {
            event_from_wire(e.position, &e.payload).map_err(|what| LogError::Corrupt {
                position: e.position,
                what,
            })
        })
        .collect()
}

/// Builds the view from `reader` (the ingest service's own log) and keeps
/// following it: each durable batch's events arrive from the sequencer on
/// `committed` and are applied as they are, without reading them back or
/// decoding them, and dropping a batch once applied answers its writers.
/// Whatever this follower missed (batches dropped while it was behind) it
/// reads from the log first, so nothing is skipped.
pub async fn follow_local(
    reader: LogReader,
    mut committed: mpsc::Receiver<Committed<Vec<RecordedEvent>>>,
    stopping: Stopping,
) -> Result<Arc<QueryState>, LogError> {
    let state = QueryState::new(reader.clone(), false);
    state.build_view().await?;
    tracing::info!(position = %state.read_view().position(), "view built from the local log");
    let follower = Arc::clone(&state);
    let mut head = reader.watch_head();
    tokio::spawn(async move {
        loop {
            // The head moves just before its batch is sent: a batch waiting
            // is taken first, and a head that moved without one means
            // batches were dropped (or one is on its way), so the log is
            // read up to it; a batch applies only past the view.
            let mut batch = tokio::select! {
                biased;
                () = stopping.wait() => return,
                batch = committed.recv() => match batch {
                    Some(batch) => Some(batch),
                    None => return, // the sequencer stopped
                },
                changed = head.changed() => match changed {
                    Ok(()) => None,
                    Err(_) => return,
                },
            };
            let events = batch.as_mut().map(Committed::take).unwrap_or_default();
            let before = events
                .first()
                .map_or_else(|| reader.head().position, |e| e.position.0.saturating_sub(1));
            if let Err(error) = follower.catch_up_to(Position(before)).await {
                tracing::error!(%error, "cannot read the log; the view stops here");
                return;
            }
            let applied = follower.read_view().position();
            follower.apply(events.into_iter().filter(|e| e.position > applied).collect());
            // Applied and broadcast: now its writers are answered.
            drop(batch);
        }
    });
    Ok(state)
}

/// Where a standalone query service gets the log from, and where it keeps
/// its replica.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The log's source.
    pub source: Source,
    /// Where the replica lives.
    pub replica_dir: PathBuf,
}

/// A log to follow.
#[derive(Debug, Clone)]
pub enum Source {
    /// An ingest service's `LogService.ReadLog`.
    Ingest(IngestUpstream),
    /// The JetStream stream itself.
    JetStream(truce_jetstream::JetStreamSettings),
}

impl Source {
    fn describe(&self) -> &str {
        match self {
            Source::Ingest(ingest) => &ingest.endpoint,
            Source::JetStream(settings) => &settings.url,
        }
    }
}

/// An ingest service to follow.
#[derive(Debug, Clone)]
pub struct IngestUpstream {
    /// The ingest service, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// The bearer token to read the log with, if the upstream wants one.
    pub token: Option<String>,
    /// TLS toward an `https://` upstream: its CA, and a client certificate
    /// when it authenticates by mutual TLS.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Upstream {
    /// Following the ingest service at `endpoint` anonymously, keeping the
    /// replica in `replica_dir`.
    pub fn ingest(endpoint: impl Into<String>, replica_dir: impl Into<PathBuf>) -> Upstream {
        Upstream {
            source: Source::Ingest(IngestUpstream {
                endpoint: endpoint.into(),
                token: None,
                tls: None,
            }),
            replica_dir: replica_dir.into(),
        }
    }
}

/// A ReadLog request carrying `token`.
fn read_log_request(message: v1::ReadLogRequest, token: Option<&str>) -> tonic::Request<v1::ReadLogRequest> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Opens the replica (waiting for the upstream to learn the log's identity
/// if there is none yet), builds the view from it and keeps it following
/// the upstream, reconnecting as needed.
pub async fn follow_remote(upstream: Upstream, stopping: Stopping) -> anyhow::Result<Arc<QueryState>> {
    let replica_file = upstream.replica_dir.join("log.sqlite3");
    let store = if replica_file.exists() {
        LogStore::open(&upstream.replica_dir)?
    } else {
        let incarnation = loop {
            match upstream_incarnation(&upstream.source).await {
                Ok(incarnation) => break incarnation,
                Err(error) => {
                    tracing::warn!(upstream = %upstream.source.describe(), %error, "waiting for the upstream log to create the replica");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stopping.wait() => anyhow::bail!("stopped before the replica existed"),
                    }
                }
            }
        };
        LogStore::open_replica(&upstream.replica_dir, &incarnation)?
    };
    let (head_tx, head_rx) = watch::channel(store.head());
    let history = LogReader::new(store.path(), store.incarnation().clone(), head_rx);
    let state = QueryState::new(history, true);
    state.build_view().await?;
    tracing::info!(position = %state.read_view().position(), "view built from the replica");
    tokio::spawn(replicate(upstream, store, head_tx, Arc::clone(&state), stopping));
    Ok(state)
}

async fn connect(
    endpoint: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<LogServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?;
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

async fn upstream_incarnation(source: &Source) -> anyhow::Result<Incarnation> {
    let upstream = match source {
        Source::Ingest(ingest) => ingest,
        Source::JetStream(settings) => {
            let log = truce_jetstream::JetStreamLog::connect(settings.clone()).await?;
            return Ok(log.incarnation().clone());
        }
    };
    let token = upstream.token.as_deref();
    let mut client = connect(&upstream.endpoint, upstream.tls.as_ref()).await?;
    let request = v1::ReadLogRequest {
        from_position: u64::MAX,
        incarnation: String::new(),
        until_position: 0,
    };
    let mut stream = client.read_log(read_log_request(request, token)).await?.into_inner();
    match stream.message().await? {
        Some(v1::ReadLogResponse {
            kind: Some(Kind::Info(info)),
        }) => Ok(Incarnation::from_text(&info.incarnation)),
        _ => anyhow::bail!("the ingest service did not describe its log"),
    }
}

/// Copies the upstream log into the replica and the view, forever.
async fn replicate(
    upstream: Upstream,
    mut store: LogStore,
    head: watch::Sender<Head>,
    state: Arc<QueryState>,
    stopping: Stopping,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (tx, mut rx) = mpsc::channel::<LogEntry>(REPLICA_BATCH);
        let from = store.head().position + 1;
        let incarnation = store.incarnation().to_string();
        let pump = match &upstream.source {
            Source::Ingest(ingest) => {
                tokio::spawn(pump_upstream(ingest.clone(), from, incarnation, tx, Arc::clone(&state)))
            }
            Source::JetStream(settings) => tokio::spawn(pump_jetstream(
                settings.clone(),
                from,
                incarnation,
                tx,
                Arc::clone(&state),
            )),
        };
        let mut batch = Vec::with_capacity(REPLICA_BATCH);
        loop {
            batch.clear();
            let received = tokio::select! {
                n = rx.recv_many(&mut batch, REPLICA_BATCH) => n,
                () = stopping.wait() => {
                    pump.abort();
                    return;
                }
            };
            if received == 0 {
                break;
            }
            backoff = Duration::from_millis(100);
            let entries = std::mem::take(&mut batch);
            let appended = tokio::task::spawn_blocking(move || {
                let result = store.append_replicated(&entries).map(|_| ());
                (store, entries, result)
            })
            .await;
            let (returned, entries, result) = match appended {
                Ok(parts) => parts,
                Err(error) => {
                    tracing::error!(%error, "replica writer failed; the view stops here");
                    return;
                }
            };
            store = returned;
            // Readers of the replica first: a subscriber reading history
            // must find every entry the view has applied.
            if result.is_ok() {
                head.send_replace(store.head());
            }
            if let Err(error) = result.and_then(|()| decode(&entries).map(|events| state.apply(events))) {
                tracing::error!(%error, "cannot apply the upstream log; the view stops here");
                pump.abort();
                return;
            }
        }
        match pump.await {
            Ok(Err(Fatal(reason))) => {
                tracing::error!(%reason, "cannot follow the upstream log; the view stops here");
                return;
            }
            _ => {
                tracing::warn!(upstream = %upstream.source.describe(), retry_in = ?backoff, "lost the upstream log; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopping.wait() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Reads the JetStream stream from `from` into `tx` until the connection
/// is lost. After [`LIVENESS_PROBE`] with no entry it asks the server for
/// the stream's end (waiting as long again for the answer), so a quiet log
/// is told from an unreachable one; entries arriving are proof enough.
async fn pump_jetstream(
    settings: truce_jetstream::JetStreamSettings,
    from: u64,
    incarnation: String,
    tx: mpsc::Sender<LogEntry>,
    state: Arc<QueryState>,
) -> Result<(), Fatal> {
    let log = match tokio::time::timeout(UPSTREAM_SILENCE_LIMIT, truce_jetstream::JetStreamLog::connect(settings)).await
    {
        Ok(Ok(log)) => log,
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot reach JetStream");
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    if log.incarnation().as_str() != incarnation {
        return Err(Fatal(format!(
            "the stream is log {}, the replica of {incarnation} (delete the query data directory to follow the new log)",
            log.incarnation()
        )));
    }
    let entries = match log.follow(from).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(%error, "cannot read the stream");
            return Ok(());
        }
    };
    let mut entries = std::pin::pin!(entries);
    let quiet = tokio::time::sleep(LIVENESS_PROBE);
    let mut quiet = std::pin::pin!(quiet);
    let mut expected = from;
    loop {
        tokio::select! {
            entry = entries.next() => match entry {
                Some(Ok(entry)) => {
                    state.heard_from_log();
                    quiet.as_mut().reset(tokio::time::Instant::now() + LIVENESS_PROBE);
                    if entry.position != expected {
                        tracing::warn!(expected, got = entry.position, "the stream skipped a position; reconnecting");
                        return Ok(());
                    }
                    expected += 1;
                    if tx.send(entry).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading the stream failed; reconnecting");
                    return Ok(());
                }
                None => return Ok(()),
            },
            () = &mut quiet => match log.last_position_within(LIVENESS_PROBE).await {
                Ok(_) => {
                    state.heard_from_log();
                    quiet.as_mut().reset(tokio::time::Instant::now() + LIVENESS_PROBE);
                }
                Err(error) => {
                    tracing::warn!(%error, "JetStream does not answer; reconnecting");
                    return Ok(());
                }
            },
        }
    }
}

/// How long a follower of JetStream goes without an entry before it checks
/// that the server answers, and how long it waits for the answer.
const LIVENESS_PROBE: Duration = Duration::from_secs(2);

/// A failure that retrying cannot fix.
#[derive(Debug)]
struct Fatal(String);

/// Reads the upstream log from `from` into `tx` until the stream breaks.
/// `Ok` means "reconnect"; `Err` means the upstream is another log.
async fn pump_upstream(
    upstream: IngestUpstream,
    from: u64,
    incarnation: String,
    tx: mpsc::Sender<LogEntry>,
    state: Arc<QueryState>,
) -> Result<(), Fatal> {
    let endpoint = &upstream.endpoint;
    let mut client = match connect(endpoint, upstream.tls.as_ref()).await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "cannot reach the ingest service");
            return Ok(());
        }
    };
    let request = v1::ReadLogRequest {
        from_position: from,
        incarnation,
        until_position: 0,
    };
    let mut stream = match client
        .read_log(read_log_request(request, upstream.token.as_deref()))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            return Err(Fatal(format!(
                "{} (delete the query data directory to follow the new log)",
                status.message()
            )));
        }
        Err(status) => {
            tracing::debug!(%status, "ReadLog refused");
            return Ok(());
        }
    };
    let mut expected = from;
    loop {
        let message = match tokio::time::timeout(UPSTREAM_SILENCE_LIMIT, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(status)) => {
                tracing::debug!(%status, "upstream log stream ended");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(%endpoint, "upstream log silent; reconnecting");
                return Ok(());
            }
        };
        state.heard_from_log();
        match message.kind {
            Some(Kind::Entry(entry)) => {
                if entry.position != expected {
                    tracing::warn!(
                        expected,
                        got = entry.position,
                        "upstream skipped a position; reconnecting"
                    );
                    return Ok(());
                }
                let Ok(hash) = entry.hash.as_slice().try_into() else {
                    tracing::warn!(position = entry.position, "upstream hash is not 32 bytes; reconnecting");
                    return Ok(());
                };
                expected += 1;
                let entry = LogEntry {
                    position: entry.position,
                    hash,
                    payload: entry.event,
                };
                if tx.send(entry).await.is_err() {
                    return Ok(());
                }
            }
            Some(Kind::Info(_)) | Some(Kind::Heartbeat(_)) | None => {}
        }
    }
}
