//! The ingest service: accepts reports and acknowledges each only once it
//! is durable.
//!
//! Flow: [`service`] validates each request at the border into domain
//! types; [`sequencer`] (one thread) groups reports into incidents, assigns
//! positions and appends whole batches with one fsync; [`log_service`]
//! streams the log to followers such as the query service. [`IngestNode`]
//! wires them together; [`run`] serves them.

pub mod args;
mod folded;
mod log_service;
mod release;
pub mod sequencer;
mod service;
#[cfg(test)]
mod testing;

use std::{
    future::Future,
    path::{Path, PathBuf},
    thread,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tonic::service::RoutesBuilder;
use truce_domain::{geo::Demarcation, grouping::GroupingPolicy};
use truce_log::{LogReader, LogStore, SequencedLog};
use truce_proto::v1::{ingest_service_server::IngestServiceServer, log_service_server::LogServiceServer};
use truce_serve::{
    Listening, MAX_MESSAGE_BYTES, Port, Servers, Stopping,
    admission::StreamLimits,
    auth::{Access, Authenticator},
};

pub use folded::Folded;
pub use sequencer::Submitter;

/// Default address of the ingest service.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "truce-data";

/// What the ingest service needs to start.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Where the log lives.
    pub data_dir: PathBuf,
    /// When reports group into one incident.
    pub grouping: GroupingPolicy,
    /// A GeoJSON file with the demarcation line, sides and corridors.
    pub demarcation: Option<PathBuf>,
    /// Mediator parties that must agree on a confirmed breach.
    pub review_quorum: usize,
    /// Where the log is.
    pub log: LogLocation,
    /// The Ed25519 key that signs log heads; default `checkpoint.key` in
    /// the data directory (created on first start). Replicas sharing a log
    /// should share it.
    pub checkpoint_key: Option<PathBuf>,
    /// Caps on concurrent `ReadLog` streams, and the stall timeout of
    /// their readers.
    pub streams: StreamLimits,
}

/// Where the event log lives.
#[derive(Debug, Clone, Default)]
pub enum LogLocation {
    /// In the data directory (SQLite): one ingest process.
    #[default]
    Embedded,
    /// In a JetStream stream, shared by any number of ingest replicas.
    JetStream(truce_jetstream::JetStreamSettings),
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            log: LogLocation::Embedded,
            checkpoint_key: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            grouping: GroupingPolicy::default(),
            demarcation: None,
            review_quorum: truce_domain::review::DEFAULT_QUORUM,
            streams: StreamLimits::default(),
        }
    }
}

impl IngestConfig {
    /// Checks the settings before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.grouping.max_distance_m.is_finite() && self.grouping.max_distance_m >= 0.0,
            "grouping distance must be a non-negative number of metres"
        );
        anyhow::ensure!(self.review_quorum >= 1, "the review quorum must be at least 1");
        Ok(())
    }
}

fn load_demarcation(path: &Path) -> anyhow::Result<Demarcation> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let demarcation = Demarcation::from_geojson(&text)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("demarcation geometry {}", path.display()))?;
    tracing::info!(path = %path.display(), geometry = %demarcation.summary(), "demarcation loaded");
    Ok(demarcation)
}

/// A running ingest node: the sequencer and its log.
#[derive(Debug)]
pub struct IngestNode {
    submitter: Submitter,
    feed: log_service::FeedLog,
    streams: StreamLimits,
    signer: std::sync::Arc<truce_log::CheckpointSigner>,
    sequencer: Option<thread::JoinHandle<()>>,
}

/// The embedded log as an in-process follower reads it: the log itself,
/// and each durable batch's events as the sequencer commits them.
#[derive(Debug)]
pub struct LocalLog {
    /// The log.
    pub reader: LogReader,
    /// The events of each durable batch.
    pub committed: sequencer::CommittedEvents,
}

/// A node whose log is open and whose sequencer is yet to start: starting
/// rebuilds the grouping state from the whole log, or takes it from the
/// summaries an in-process follower folded into its view.
pub struct OpenedNode {
    store: Box<dyn SequencedLog>,
    streams: StreamLimits,
    committed: Option<tokio::sync::mpsc::Sender<truce_log::Committed<Vec<truce_domain::event::RecordedEvent>>>>,
    feed: log_service::FeedLog,
    head: watch::Sender<truce_log::Head>,
    rules: sequencer::Rules,
    signer: truce_log::CheckpointSigner,
}

impl std::fmt::Debug for OpenedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedNode").finish_non_exhaustive()
    }
}

impl OpenedNode {
    /// Rebuilds the grouping state and starts the sequencer.
    pub async fn start(self) -> anyhow::Result<IngestNode> {
        self.start_from(None).await
    }

    /// Starts the sequencer with the grouping state taken from `folded`
    /// when it is as of the log's head, rebuilt from the log otherwise.
    pub async fn start_from(self, folded: Option<Folded>) -> anyhow::Result<IngestNode> {
        let OpenedNode {
            store,
            streams,
            committed,
            feed,
            head,
            rules,
            signer,
        } = self;
        // Rebuilding reads the whole log; on JetStream that waits on the
        // network, off the runtime's threads.
        let (submitter, thread) =
            tokio::task::spawn_blocking(move || sequencer::start_from(store, rules, head, committed, folded))
                .await?
                .context("starting the sequencer")?;
        Ok(IngestNode {
            submitter,
            feed,
            streams,
            signer: std::sync::Arc::new(signer),
            sequencer: Some(thread),
        })
    }
}

impl IngestNode {
    /// Opens the log (in `config.data_dir`, or on JetStream), rebuilds the
    /// grouping state from it and starts the sequencer.
    pub async fn open(config: &IngestConfig) -> anyhow::Result<IngestNode> {
        Self::open_log(config, false).await?.0.start().await
    }

    /// Opens the log without starting the sequencer yet; with `followed`,
    /// the embedded log is also handed to an in-process follower (`None`
    /// on JetStream, which followers read directly).
    pub async fn open_log(config: &IngestConfig, followed: bool) -> anyhow::Result<(OpenedNode, Option<LocalLog>)> {
        config.validate()?;
        let demarcation = config.demarcation.as_deref().map(load_demarcation).transpose()?;
        let (store, local, committed, feed, head): (Box<dyn SequencedLog>, _, _, _, _) = match &config.log {
            LogLocation::Embedded => {
                let store = LogStore::open(&config.data_dir)
                    .with_context(|| format!("opening the log in {}", config.data_dir.display()))?;
                let (head_tx, head_rx) = watch::channel(store.head());
                let reader = LogReader::new(store.path(), store.incarnation().clone(), head_rx);
                let feed = log_service::FeedLog::Embedded(reader.clone());
                let (committed_tx, local) = if followed {
                    let (tx, committed) = tokio::sync::mpsc::channel(sequencer::COMMITTED_QUEUE);
                    (Some(tx), Some(LocalLog { reader, committed }))
                } else {
                    (None, None)
                };
                (Box::new(store), local, committed_tx, feed, head_tx)
            }
            LogLocation::JetStream(settings) => {
                let log = truce_jetstream::JetStreamLog::connect(settings.clone())
                    .await
                    .with_context(|| format!("opening the log on JetStream at {}", settings.url))?;
                tracing::info!(url = %settings.url, stream = %settings.stream, incarnation = %log.incarnation(), "log on JetStream");
                let feed = log_service::FeedLog::JetStream(log.clone());
                let store = truce_jetstream::BlockingJetStream::open(log).await?;
                let (head_tx, _) = watch::channel(truce_log::SequencedLog::head(&store));
                (Box::new(store), None, None, feed, head_tx)
            }
        };
        truce_log::create_private_dir(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let rules = sequencer::Rules {
            grouping: config.grouping,
            demarcation,
            quorum: config.review_quorum,
        };
        let key = config
            .checkpoint_key
            .clone()
            .unwrap_or_else(|| config.data_dir.join("checkpoint.key"));
        let signer = truce_log::CheckpointSigner::load_or_create(&key).context("loading the checkpoint signing key")?;
        let opened = OpenedNode {
            store,
            streams: config.streams,
            committed,
            feed,
            head,
            rules,
            signer,
        };
        Ok((opened, local))
    }

    /// Adds the ingest and log services to `routes`.
    pub fn add_services(
        &self,
        routes: &mut RoutesBuilder,
        health: &tonic_health::server::HealthReporter,
        auth: &Authenticator,
        stopping: Stopping,
    ) -> impl Future<Output = ()> + use<> {
        let ingest = IngestServiceServer::new(service::Ingest::new(
            self.submitter.clone(),
            auth.clone(),
            self.streams.caps,
            stopping.clone(),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        routes.add_service(auth.guard(ingest));
        let log = LogServiceServer::new(log_service::LogFeed::new(
            self.feed.clone(),
            auth.clone(),
            std::sync::Arc::clone(&self.signer),
            self.streams,
            stopping,
        ));
        routes.add_service(auth.guard(log));
        let health = health.clone();
        let out_of_service = self.submitter.out_of_service();
        async move {
            use tonic::server::NamedService;
            for name in [
                <IngestServiceServer<service::Ingest> as NamedService>::NAME,
                <LogServiceServer<log_service::LogFeed> as NamedService>::NAME,
            ] {
                health
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
            }
            tokio::spawn(report_out_of_service(out_of_service, health));
        }
    }

    /// Stops the sequencer and waits for it, so the last batch is durable
    /// before the process exits. Calls still in flight after the drain hold
    /// submitters and keep it running; it is not waited for longer than
    /// the drain timeout.
    pub async fn close(self) {
        let IngestNode {
            submitter,
            feed: _,
            streams: _,
            signer: _,
            sequencer,
        } = self;
        drop(submitter);
        let Some(thread) = sequencer else { return };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(truce_serve::DRAIN_TIMEOUT, joined).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::error!("the sequencer panicked"),
            Err(_) => tracing::warn!("sequencer still busy after the drain timeout; exiting"),
        }
    }
}

/// Once storage has failed, says so in `health`: the ingest service and
/// the server as a whole are NOT_SERVING, so a readiness probe takes the
/// replica out and a liveness probe restarts it (only a restart recovers).
async fn report_out_of_service(
    mut out_of_service: watch::Receiver<Option<String>>,
    health: tonic_health::server::HealthReporter,
) {
    use tonic::server::NamedService;
    let reason = match out_of_service.wait_for(Option::is_some).await {
        Ok(reason) => reason.clone().unwrap_or_default(),
        // The sequencer stopped: nothing to report.
        Err(_) => return,
    };
    tracing::error!(%reason, "refusing writes until restarted; health says NOT_SERVING");
    for name in [<IngestServiceServer<service::Ingest> as NamedService>::NAME, ""] {
        health
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
}

/// Serves the ingest service on `listener` until `shutdown`.
pub async fn run(
    config: IngestConfig,
    auth: impl Into<Access>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = IngestNode::open(&config).await?;
    serve_node(node, auth, listener, shutdown).await
}

/// Serves an opened node on `listener` until `shutdown`, then closes it.
async fn serve_node(
    node: IngestNode,
    auth: impl Into<Access>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let servers = Servers::start(auth)?;
    let ingest = Listening::new(Port::Ingest, listener, |routes, health, auth, stopping| {
        node.add_services(routes, health, auth, stopping)
    });
    servers.serve(vec![ingest], shutdown).await?;
    node.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use truce_proto::v1;
    use truce_serve::auth::AuthMode;

    use super::*;
    use crate::testing::{FailingDisk, wire_report};

    async fn status(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        health
            .check(request)
            .await
            .expect("health answers")
            .into_inner()
            .status()
    }

    #[tokio::test]
    async fn health_says_not_serving_once_storage_failed() {
        let dir = tempfile::tempdir().unwrap();
        let config = IngestConfig {
            data_dir: dir.path().to_owned(),
            ..IngestConfig::default()
        };
        let (mut opened, _) = IngestNode::open_log(&config, false).await.unwrap();
        opened.store = Box::new(FailingDisk(opened.store));
        let node = opened.start().await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_node(node, AuthMode::InsecureLoopback, listener, async move {
            let _ = stopped.await;
        }));
        let channel = loop {
            match tonic::transport::Endpoint::from_shared(address.clone())
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        let mut health = HealthClient::new(channel.clone());
        let ingest = "truce.v1.IngestService";
        while status(&mut health, ingest).await != ServingStatus::Serving {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        let refused = v1::ingest_service_client::IngestServiceClient::new(channel)
            .submit_report(v1::SubmitReportRequest {
                report: Some(wire_report("shots at the line")),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while status(&mut health, ingest).await != ServingStatus::NotServing {
            assert!(tokio::time::Instant::now() < deadline, "health still says serving");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            status(&mut health, "").await,
            ServingStatus::NotServing,
            "the server as a whole"
        );
        assert_eq!(
            status(&mut health, "truce.v1.LogService").await,
            ServingStatus::Serving,
            "what is durable can still be read"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
