//! The floor: the same gRPC services with nothing behind them. A unary
//! `SubmitReport` that answers at once, and a `Subscribe` that is a bare
//! broadcast of every submitted report to every stream, unfiltered. What it
//! reaches on this machine is the limit of the RPC layer itself.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status, Streaming};
use truce_proto::v1::{
    self,
    ingest_service_server::{IngestService, IngestServiceServer},
    query_service_server::{QueryService, QueryServiceServer},
};

/// Settings of `floor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen; the address is printed as `listening ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Clone)]
struct Floor {
    next: Arc<AtomicU64>,
    changes: broadcast::Sender<v1::SubscribeResponse>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Floor {
    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<Response<v1::SubmitReportResponse>, Status> {
        let position = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let report = request.into_inner().report;
        if self.changes.receiver_count() > 0 {
            let change = v1::IncidentChange {
                position,
                kind: v1::ChangeKind::IncidentOpened as i32,
                report: Some(v1::StoredReport {
                    position,
                    report,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let _ = self.changes.send(v1::SubscribeResponse {
                kind: Some(v1::subscribe_response::Kind::Change(change)),
            });
        }
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

#[tonic::async_trait]
impl QueryService for Floor {
    async fn get_incident(
        &self,
        _: Request<v1::GetIncidentRequest>,
    ) -> Result<Response<v1::GetIncidentResponse>, Status> {
        Err(Status::unimplemented("the floor answers Subscribe only"))
    }

    async fn get_report(&self, _: Request<v1::GetReportRequest>) -> Result<Response<v1::GetReportResponse>, Status> {
        Err(Status::unimplemented("the floor answers Subscribe only"))
    }

    async fn list_incidents(
        &self,
        _: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        Err(Status::unimplemented("the floor answers Subscribe only"))
    }

    type SubscribeStream = Boxed<v1::SubscribeResponse>;

    async fn subscribe(&self, _: Request<v1::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let subscribed = v1::SubscribeResponse {
            kind: Some(v1::subscribe_response::Kind::Subscribed(v1::Subscribed {
                position: self.next.load(Ordering::Relaxed),
                resume_token: String::new(),
            })),
        };
        // A receiver that falls behind loses changes; the bench counts them.
        let changes = BroadcastStream::new(self.changes.subscribe()).filter_map(Result::ok);
        let stream = tokio_stream::once(subscribed).chain(changes).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn summarize(&self, _: Request<v1::SummarizeRequest>) -> Result<Response<v1::SummarizeResponse>, Status> {
        Err(Status::unimplemented("the floor answers Subscribe only"))
    }
}

/// Serves until killed.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let floor = Floor {
        next: Arc::new(AtomicU64::new(0)),
        changes: broadcast::channel(4096).0,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening {}", listener.local_addr()?);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(IngestServiceServer::new(floor.clone()))
        .add_service(QueryServiceServer::new(floor))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
