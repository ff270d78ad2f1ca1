//! The floors: the same gRPC services with as little as possible behind
//! them, as limits for truce's figures on this machine.
//!
//! - Bare: `SubmitReport` answers at once and broadcasts the report to
//!   every subscription: the limit of the RPC layer itself.
//! - Durable (`--durable DIR`): reports are group-committed to a file with
//!   `fdatasync` before they are answered and broadcast, as truce delivers
//!   only durable changes: the physical limit of this job on this machine.
//!   As in truce, one thread writes batches while another syncs, and the
//!   file is written in place over space allocated ahead.
//!
//! Both apply each subscription's filter, in truce's own filter language
//! to the incident the report opens, so a comparison with filters gives
//! them the same work; an unfiltered subscription takes everything. Each
//! change is encoded once and its bytes shared by every stream, as truce
//! does.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{
    Request, Response, Status, Streaming,
    codegen::{BoxFuture, Service, StdError, http},
};
use truce_domain::{IncidentId, Position, ReportId, Timestamp, filter::Filter, incident::IncidentSummary};
use truce_proto::{
    convert::stored_report_from_wire,
    frame::{Frame, FrameCodec},
    v1::{
        self,
        ingest_service_server::{IngestService, IngestServiceServer},
    },
};

/// Settings of `floor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen; the address is printed as `listening ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Group-commit reports to a file in this directory, with fdatasync,
    /// before answering and broadcasting them.
    #[arg(long)]
    durable: Option<PathBuf>,
}

/// One accepted report, as subscribers get it: the same message truce
/// sends for a report that opens an incident (the report, the incident's
/// summary, a resume token), so that every system sends as many bytes.
struct Change {
    position: u64,
    frame: Frame,
    /// The incident the report opens, for filters.
    incident: Option<IncidentSummary>,
}

impl Change {
    fn new(position: u64, report: Option<v1::Report>) -> Change {
        let stored = v1::StoredReport {
            report_id: ReportId(Position(position)).to_string(),
            incident_id: IncidentId(Position(position)).to_string(),
            position,
            received_at: Some(prost_types::Timestamp::default()),
            report,
            version: 1,
            version_position: position,
            ..Default::default()
        };
        let incident = stored_report_from_wire(&stored)
            .ok()
            .map(|stored| IncidentSummary::open(&stored, Timestamp(0)));
        let frame = Frame::of(&v1::SubscribeResponse {
            kind: Some(v1::subscribe_response::Kind::Change(v1::IncidentChange {
                position,
                resume_token: format!("floor.{position:016x}"),
                kind: v1::ChangeKind::IncidentOpened as i32,
                incident: incident.as_ref().map(v1::IncidentSummary::from),
                recorded_at: Some(prost_types::Timestamp::default()),
                report_id: stored.report_id.clone(),
                report: Some(stored),
                ..Default::default()
            })),
        });
        Change {
            position,
            frame,
            incident,
        }
    }

    fn matches(&self, filter: &Filter) -> bool {
        filter.expr().is_none() || self.incident.as_ref().is_some_and(|incident| filter.matches(incident))
    }
}

/// A report waiting for the group commit, and where its answer goes.
type Pending = (Option<v1::Report>, oneshot::Sender<u64>);

#[derive(Clone)]
struct Floor {
    next: Arc<AtomicU64>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Set for the durable floor.
    commits: Option<mpsc::UnboundedSender<Pending>>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Floor {
    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<Response<v1::SubmitReportResponse>, Status> {
        let report = request.into_inner().report;
        let position = match &self.commits {
            Some(commits) => {
                let (answer, answered) = oneshot::channel();
                commits
                    .send((report, answer))
                    .map_err(|_| Status::unavailable("the committer stopped"))?;
                answered.await.map_err(|_| Status::unavailable("the commit failed"))?
            }
            None => {
                let position = self.next.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = self.changes.send(Arc::new(Change::new(position, report)));
                position
            }
        };
        Ok(Response::new(v1::SubmitReportResponse {
            position,
            ..Default::default()
        }))
    }

    type SubmitReportsStream = Boxed<v1::SubmitReportsResponse>;

    async fn submit_reports(
        &self,
        _: Request<Streaming<v1::SubmitReportsRequest>>,
    ) -> Result<Response<Self::SubmitReportsStream>, Status> {
        Err(Status::unimplemented("the floor answers SubmitReport only"))
    }

    async fn review_incident(
        &self,
        _: Request<v1::ReviewIncidentRequest>,
    ) -> Result<Response<v1::ReviewIncidentResponse>, Status> {
        Err(Status::unimplemented("the floor answers SubmitReport only"))
    }

    async fn amend_report(
        &self,
        _: Request<v1::AmendReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        Err(Status::unimplemented("the floor answers SubmitReport only"))
    }

    async fn retract_report(
        &self,
        _: Request<v1::RetractReportRequest>,
    ) -> Result<Response<v1::ReviseReportResponse>, Status> {
        Err(Status::unimplemented("the floor answers SubmitReport only"))
    }
}

/// Accepted changes written to the file and waiting for a sync.
type Written = Vec<(Arc<Change>, oneshot::Sender<u64>)>;

/// The durable floor's log file: written in place over space allocated
/// and synced ahead, so that a sync flushes data only, not the file's size
/// and block map (what a database's reused write-ahead log does).
struct Preallocated {
    file: std::fs::File,
    written: u64,
    allocated: u64,
}

impl Preallocated {
    /// Space allocated at a time.
    const SEGMENT: u64 = 64 << 20;

    fn create(path: &std::path::Path) -> std::io::Result<Preallocated> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        let mut log = Preallocated {
            file,
            written: 0,
            allocated: 0,
        };
        log.allocate()?;
        Ok(log)
    }

    /// Writes zeros over the next segment and syncs them, file size
    /// included.
    fn allocate(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let zeros = vec![0u8; 1 << 20];
        for offset in (self.allocated..self.allocated + Self::SEGMENT).step_by(zeros.len()) {
            self.file.write_all_at(&zeros, offset)?;
        }
        self.allocated += Self::SEGMENT;
        self.file.sync_all()
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        while self.written + bytes.len() as u64 > self.allocated {
            self.allocate()?;
        }
        self.file.write_all_at(bytes, self.written)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// The durable floor's writer, on its own thread: takes every report
/// waiting, numbers them, writes their changes to the file, and hands them
/// to the syncer; it writes the next batch while the syncer syncs.
fn write(
    mut log: Preallocated,
    sync: std::fs::File,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    next: Arc<AtomicU64>,
    changes: broadcast::Sender<Arc<Change>>,
) -> std::io::Result<()> {
    let (written_tx, written_rx) = std::sync::mpsc::channel::<Written>();
    let syncer = std::thread::Builder::new()
        .name("floor-sync".into())
        .spawn(move || synced(&sync, &written_rx, &changes))?;
    let mut bytes = Vec::new();
    while let Some(first) = pending.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = pending.try_recv() {
            batch.push(more);
        }
        bytes.clear();
        let written: Written = batch
            .into_iter()
            .map(|(report, answer)| {
                let position = next.fetch_add(1, Ordering::Relaxed) + 1;
                let change = Arc::new(Change::new(position, report));
                let frame = change.frame.bytes();
                bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                bytes.extend_from_slice(frame);
                (change, answer)
            })
            .collect();
        log.append(&bytes)?;
        if written_tx.send(written).is_err() {
            break;
        }
    }
    drop(written_tx);
    syncer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the syncer panicked")))
}

/// The durable floor's syncer: one `fdatasync` covers every batch written
/// before it started; then their changes are broadcast and answered.
fn synced(
    file: &std::fs::File,
    written: &std::sync::mpsc::Receiver<Written>,
    changes: &broadcast::Sender<Arc<Change>>,
) -> std::io::Result<()> {
    while let Ok(first) = written.recv() {
        let mut batches = vec![first];
        while let Ok(more) = written.try_recv() {
            batches.push(more);
        }
        file.sync_data()?;
        for (change, answer) in batches.into_iter().flatten() {
            let position = change.position;
            let _ = changes.send(change);
            let _ = answer.send(position);
        }
    }
    Ok(())
}

/// `Subscribe` of the floor, served from frames; it answers no other query.
#[derive(Clone)]
struct Broadcast(Floor);

impl tonic::server::NamedService for Broadcast {
    const NAME: &'static str = "truce.v1.QueryService";
}

impl<B> Service<http::Request<B>> for Broadcast
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let floor = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != "/truce.v1.QueryService/Subscribe" {
                return Ok(Status::unimplemented("the floor answers Subscribe only").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(FrameCodec::<v1::SubscribeRequest>::default());
            Ok(grpc.server_streaming(floor, request).await)
        })
    }
}

impl tonic::server::ServerStreamingService<v1::SubscribeRequest> for Floor {
    type Response = Frame;
    type ResponseStream = Boxed<Frame>;
    type Future = BoxFuture<Response<Boxed<Frame>>, Status>;

    fn call(&mut self, request: Request<v1::SubscribeRequest>) -> Self::Future {
        let filter = Filter::parse(&request.get_ref().filter);
        let subscribed = Frame::of(&v1::SubscribeResponse {
            kind: Some(v1::subscribe_response::Kind::Subscribed(v1::Subscribed {
                position: self.next.load(Ordering::Relaxed),
                resume_token: String::new(),
            })),
        });
        // A receiver that falls behind loses changes; the bench counts them.
        let changes = BroadcastStream::new(self.changes.subscribe());
        Box::pin(async move {
            let filter = filter.map_err(|e| Status::invalid_argument(format!("filter: {e}")))?;
            let changes = changes.filter_map(move |change| {
                change
                    .ok()
                    .filter(|change| change.matches(&filter))
                    .map(|change| change.frame.clone())
            });
            let stream: Boxed<Frame> = Box::pin(tokio_stream::once(subscribed).chain(changes).map(Ok));
            Ok(Response::new(stream))
        })
    }
}

/// Serves until killed.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let changes = broadcast::channel(4096).0;
    let commits = match &args.durable {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let log = Preallocated::create(&dir.join("floor.log"))?;
            let sync = log.file.try_clone()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let (next, changes) = (Arc::clone(&next), changes.clone());
            std::thread::Builder::new().name("floor-write".into()).spawn(move || {
                if let Err(error) = write(log, sync, rx, next, changes) {
                    eprintln!("the durable floor's log failed: {error}");
                    std::process::exit(1);
                }
            })?;
            Some(tx)
        }
        None => None,
    };
    let floor = Floor { next, changes, commits };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening {}", listener.local_addr()?);
    // The transport truce serves on (nodelay, batched writes), so that the
    // floor is the limit of the same RPC layer.
    tonic::transport::Server::builder()
        .add_service(IngestServiceServer::new(floor.clone()))
        .add_service(Broadcast(floor))
        .serve_with_incoming(truce_serve::incoming(listener))
        .await?;
    Ok(())
}
