//! Both services in one process.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use truce_ingest::{IngestConfig, IngestNode};
use truce_serve::Stopping;

/// Serves ingest on `ingest` and query on `query` over one embedded log
/// until `shutdown`.
pub async fn run(
    config: IngestConfig,
    ingest: TcpListener,
    query: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = IngestNode::open(&config)?;
    let (stopping_tx, stopping) = Stopping::new();
    let state = truce_query::follower::follow_local(node.reader(), stopping.clone()).await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let mut ingest_routes = RoutesBuilder::default();
    ingest_routes.add_service(health_service.clone());
    truce_serve::add_reflection(&mut ingest_routes)?;
    node.add_services(&mut ingest_routes, &health, stopping.clone()).await;

    let mut query_routes = RoutesBuilder::default();
    query_routes.add_service(health_service);
    truce_serve::add_reflection(&mut query_routes)?;
    truce_query::add_services(&mut query_routes, state, &health, stopping).await;

    // One signal stops both servers.
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut ingest_stop = stop_tx.subscribe();
    let mut query_stop = stop_tx.subscribe();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    let (query_stopping_tx, _) = Stopping::new();
    let ingest_server = truce_serve::serve(
        "ingest",
        ingest_routes,
        ingest,
        async move {
            let _ = ingest_stop.recv().await;
        },
        stopping_tx,
    );
    let query_server = truce_serve::serve(
        "query",
        query_routes,
        query,
        async move {
            let _ = query_stop.recv().await;
        },
        query_stopping_tx,
    );
    let (ingest_result, query_result) = tokio::join!(ingest_server, query_server);
    ingest_result?;
    query_result?;
    let closing = tokio::task::spawn_blocking(move || node.close());
    if tokio::time::timeout(truce_serve::DRAIN_TIMEOUT, closing).await.is_err() {
        tracing::warn!("sequencer still busy after the drain timeout; exiting");
    }
    Ok(())
}
