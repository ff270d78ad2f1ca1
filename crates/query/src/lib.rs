//! The query service: answers queries over incidents and streams live
//! changes.
//!
//! Flow: [`follower`] builds a [`view::View`] from the log (the ingest
//! service's own log in one process, or a verified local replica fed over
//! `LogService.ReadLog`) and broadcasts each applied event; [`service`]
//! answers `Get`, `List` and `Summarize` from the view; [`subscribe`] runs
//! each subscription as a catch-up subscription over the log and the
//! broadcast.

pub mod follower;
pub mod service;
pub mod subscribe;
pub mod token;
pub mod view;

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use truce_proto::v1::query_service_server::QueryServiceServer;
use truce_serve::{MAX_MESSAGE_BYTES, Stopping};

pub use follower::{QueryState, Upstream};

/// Default address of the query service.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
/// Default ingest service to follow.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:50051";
/// Default data directory of a standalone query service.
pub const DEFAULT_DATA_DIR: &str = "truce-query-data";

/// Adds the query service over `state` to `routes`; the returned future
/// marks it serving in `health`.
pub fn add_services(
    routes: &mut RoutesBuilder,
    state: Arc<QueryState>,
    health: &tonic_health::server::HealthReporter,
    stopping: Stopping,
) -> impl Future<Output = ()> + use<> {
    routes.add_service(
        QueryServiceServer::new(service::Queries::new(state, stopping)).max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    let health = health.clone();
    async move {
        health.set_serving::<QueryServiceServer<service::Queries>>().await;
    }
}

/// Serves a standalone query service following `upstream` until
/// `shutdown`.
pub async fn run(
    upstream: Upstream,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stopping_tx, stopping) = Stopping::new();
    let state = follower::follow_remote(upstream, stopping.clone()).await?;
    let (health, mut routes) = truce_serve::base_routes()?;
    add_services(&mut routes, state, &health, stopping).await;
    truce_serve::serve("query", routes, listener, shutdown, stopping_tx).await?;
    Ok(())
}
