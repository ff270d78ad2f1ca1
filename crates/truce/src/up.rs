//! Both services in one process.

use std::future::Future;

use tokio::net::TcpListener;
use truce_ingest::{Folded, IngestConfig, IngestNode, LogLocation};
use truce_query::QuerySettings;
use truce_serve::{
    Port, Stopping,
    auth::{Access, Authenticator},
};

/// Serves ingest on `ingest` and query on `query` over one embedded log
/// until `shutdown`.
pub async fn run(
    config: IngestConfig,
    settings: QuerySettings,
    auth: impl Into<Access>,
    ingest: TcpListener,
    query: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (opened, local) = IngestNode::open_log(&config, true).await?;
    let auth = Authenticator::start(auth)?;
    auth.watch(truce_serve::auth::RELOAD_POLL);
    let (stopping_tx, stopping) = Stopping::new();
    let (node, state) = match (local, &config.log) {
        (Some(local), _) => {
            // The view is built first, decoding every incident summary;
            // the sequencer then takes its grouping state from those
            // summaries instead of folding the log a second time.
            let state = truce_query::follower::follow_local(local.reader, local.committed, stopping.clone()).await?;
            let folded = {
                let view = state.read_view();
                Folded {
                    position: view.position().0,
                    summaries: view.summaries().cloned().collect(),
                }
            };
            (opened.start_from(Some(folded)).await?, state)
        }
        // On JetStream the query side follows the stream, like any
        // replica, while the sequencer folds the stream itself: both at
        // once, on the two halves of the machine.
        (None, LogLocation::JetStream(settings)) => {
            let upstream = truce_query::Upstream {
                source: truce_query::Source::JetStream(settings.clone()),
                replica_dir: config.data_dir.join("query-replica"),
            };
            let following = truce_query::follower::follow_remote(upstream, stopping.clone());
            tokio::try_join!(opened.start(), following)?
        }
        (None, LogLocation::Embedded) => anyhow::bail!("the embedded log has no reader"),
    };

    // Each port reports the health of the services it serves.
    // Each port reflects its own services and points callers of the other
    // port's services there.
    let (ingest_health, mut ingest_routes) = truce_serve::base_routes(Port::Ingest, query.local_addr().ok())?;
    node.add_services(&mut ingest_routes, &ingest_health, &auth, stopping.clone())
        .await;
    let (query_health, mut query_routes) = truce_serve::base_routes(Port::Query, ingest.local_addr().ok())?;
    truce_query::add_services(&mut query_routes, state, &settings, &query_health, &auth, stopping).await;

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
        &auth,
    );
    let query_server = truce_serve::serve(
        "query",
        query_routes,
        query,
        async move {
            let _ = query_stop.recv().await;
        },
        query_stopping_tx,
        &auth,
    );
    let (ingest_result, query_result) = tokio::join!(ingest_server, query_server);
    ingest_result?;
    query_result?;
    node.close().await;
    Ok(())
}
