//! Both services in one process.

use std::future::Future;

use tokio::net::TcpListener;
use truce_ingest::{Folded, IngestConfig, IngestNode, LogLocation};
use truce_query::QuerySettings;
use truce_serve::{Listening, Port, Servers, auth::Access};

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
    let servers = Servers::start(auth)?;
    let (node, state) = match (local, &config.log) {
        (Some(local), _) => {
            // The view is built first, decoding every incident summary;
            // the sequencer then takes its grouping state from those
            // summaries instead of folding the log a second time.
            let state = truce_query::follow_local(local.reader, local.committed, servers.stopping()).await?;
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
            let following = truce_query::follow_remote(upstream, servers.stopping());
            tokio::try_join!(opened.start(), following)?
        }
        (None, LogLocation::Embedded) => anyhow::bail!("the embedded log has no reader"),
    };

    let ports = vec![
        Listening::new(Port::Ingest, ingest, |routes, health, auth, stopping| {
            node.add_services(routes, health, auth, stopping)
        }),
        Listening::new(Port::Query, query, move |routes, health, auth, stopping| {
            truce_query::add_services(routes, state, &settings, health, auth, stopping)
        }),
    ];
    servers.serve(ports, shutdown).await?;
    node.close().await;
    Ok(())
}
