//! `truce-ingest`: the ingest service alone.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use truce_domain::grouping::GroupingPolicy;
use truce_ingest::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, IngestConfig};

/// Accepts ceasefire incident reports over gRPC and acknowledges each once
/// it is durable.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TRUCE_INGEST_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory of the event log.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// GeoJSON with the demarcation line, its sides and the corridors.
    #[arg(long, env = "TRUCE_DEMARCATION")]
    demarcation: Option<PathBuf>,
    /// Greatest distance in metres for a report to join an incident.
    #[arg(long, env = "TRUCE_GROUP_DISTANCE_M", default_value_t = GroupingPolicy::DEFAULT_MAX_DISTANCE_M)]
    group_distance_m: f64,
    /// Greatest gap in minutes between a report and an incident's time.
    #[arg(long, env = "TRUCE_GROUP_MINUTES", default_value_t = GroupingPolicy::DEFAULT_MAX_TIME_GAP.as_secs() / 60)]
    group_minutes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    truce_serve::init_tracing();
    let args = Args::parse();
    let config = IngestConfig {
        data_dir: args.data_dir,
        grouping: GroupingPolicy {
            max_distance_m: args.group_distance_m,
            max_time_gap: std::time::Duration::from_secs(args.group_minutes * 60),
        },
        demarcation: args.demarcation,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    truce_ingest::run(config, listener, truce_serve::termination()).await
}
