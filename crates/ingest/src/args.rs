//! The ingest settings on the command line, shared by `truce-ingest` and
//! `truce up`.

use std::{path::PathBuf, time::Duration};

use truce_domain::grouping::GroupingPolicy;

use crate::{DEFAULT_DATA_DIR, IngestConfig};

/// Flags (and environment variables) that configure the ingest side.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Directory of the event log.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// GeoJSON with the demarcation line, its sides and the corridors.
    #[arg(long, env = "TRUCE_DEMARCATION")]
    pub demarcation: Option<PathBuf>,
    /// Greatest distance in metres for a report to join an incident.
    #[arg(long, env = "TRUCE_GROUP_DISTANCE_M", default_value_t = GroupingPolicy::DEFAULT_MAX_DISTANCE_M)]
    pub group_distance_m: f64,
    /// Greatest gap in minutes between a report and an incident's time.
    #[arg(long, env = "TRUCE_GROUP_MINUTES", default_value_t = GroupingPolicy::DEFAULT_MAX_TIME_GAP.as_secs() / 60)]
    pub group_minutes: u64,
    /// Mediator parties that must agree before a breach is confirmed.
    #[arg(long, env = "TRUCE_REVIEW_QUORUM", default_value_t = truce_domain::review::DEFAULT_QUORUM)]
    pub review_quorum: usize,
    /// Where the event log lives: "embedded" (SQLite in the data
    /// directory, one ingest process) or NATS servers whose JetStream
    /// holds it, shared by any number of ingest replicas (nats://...).
    #[arg(long, env = "TRUCE_LOG", default_value = "embedded", value_parser = log_location)]
    pub log: String,
    /// The stream, when the log is on JetStream.
    #[command(flatten)]
    pub nats: truce_jetstream::JetStreamArgs,
    /// The key that signs log heads (32 raw bytes; created if missing).
    /// Default: checkpoint.key in the data directory. Ingest replicas of
    /// one log should share one key.
    #[arg(long, env = "TRUCE_CHECKPOINT_KEY")]
    pub checkpoint_key: Option<PathBuf>,
}

fn log_location(text: &str) -> Result<String, String> {
    if text == "embedded" || truce_jetstream::is_nats_url(text) {
        Ok(text.to_owned())
    } else {
        Err("must be \"embedded\" or a nats:// URL".to_owned())
    }
}

impl IngestArgs {
    /// The configuration these flags describe.
    pub fn config(self) -> IngestConfig {
        let log = if truce_jetstream::is_nats_url(&self.log) {
            crate::LogLocation::JetStream(self.nats.settings(&self.log))
        } else {
            crate::LogLocation::Embedded
        };
        IngestConfig {
            log,
            checkpoint_key: self.checkpoint_key,
            data_dir: self.data_dir,
            grouping: GroupingPolicy {
                max_distance_m: self.group_distance_m,
                max_time_gap: Duration::from_secs(self.group_minutes.saturating_mul(60)),
            },
            demarcation: self.demarcation,
            review_quorum: self.review_quorum,
            // The stream flags belong to the command (`truce-ingest`,
            // `truce up`), which sets them.
            streams: truce_serve::admission::StreamLimits::default(),
        }
    }
}

/// Everything a standalone ingest service is told: `truce-ingest` and
/// `truce ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// Address to listen on.
    #[arg(long, env = "TRUCE_INGEST_LISTEN", default_value = crate::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    /// The ingest settings.
    pub ingest: IngestArgs,
    /// Caps on log readers and their stall timeout.
    #[command(flatten)]
    pub streams: truce_serve::admission::StreamArgs,
    /// Who may call.
    #[command(flatten)]
    pub auth: truce_serve::auth::AuthArgs,
}

impl StandaloneArgs {
    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let listener = truce_serve::listen(self.listen, "--listen").await?;
        let auth = self.auth.access(&self.ingest.data_dir);
        let config = IngestConfig {
            streams: self.streams.limits(),
            ..self.ingest.config()
        };
        crate::run(config, auth, listener, truce_serve::termination()).await
    }
}
