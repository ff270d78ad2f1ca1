//! The floor: the same gRPC services with nothing behind them. A unary
//! `SubmitReport` that answers at once, and a `Subscribe` that is a bare
//! broadcast of every submitted report to every stream, unfiltered. What it
//! reaches on this machine is the limit of the RPC layer itself. Each change
//! is encoded once and its bytes shared by every stream, as truce does.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{
    Request, Response, Status, Streaming,
    codegen::{BoxFuture, Service, StdError, http},
};
use truce_proto::{
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
}

#[derive(Clone)]
struct Floor {
    next: Arc<AtomicU64>,
    changes: broadcast::Sender<Frame>,
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
            let _ = self.changes.send(Frame::of(&v1::SubscribeResponse {
                kind: Some(v1::subscribe_response::Kind::Change(change)),
            }));
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

    fn call(&mut self, _: Request<v1::SubscribeRequest>) -> Self::Future {
        let subscribed = Frame::of(&v1::SubscribeResponse {
            kind: Some(v1::subscribe_response::Kind::Subscribed(v1::Subscribed {
                position: self.next.load(Ordering::Relaxed),
                resume_token: String::new(),
            })),
        });
        // A receiver that falls behind loses changes; the bench counts them.
        let changes = BroadcastStream::new(self.changes.subscribe()).filter_map(Result::ok);
        let stream: Boxed<Frame> = Box::pin(tokio_stream::once(subscribed).chain(changes).map(Ok));
        Box::pin(async move { Ok(Response::new(stream)) })
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
    // The transport truce serves on (nodelay, batched writes), so that the
    // floor is the limit of the same RPC layer.
    tonic::transport::Server::builder()
        .add_service(IngestServiceServer::new(floor.clone()))
        .add_service(Broadcast(floor))
        .serve_with_incoming(truce_serve::incoming(listener))
        .await?;
    Ok(())
}
