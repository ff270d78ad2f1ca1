//! Command-line parsing for `truce`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use truce_domain::grouping::GroupingPolicy;
use truce_ingest::IngestConfig;

/// truce: a ceasefire incident record that no party can quietly rewrite.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the ingest and query services in one process on the embedded log.
    Up(UpArgs),
    /// Loads the incidents of the source article into a running ingest service.
    Demo(DemoArgs),
}

/// Settings of `truce up`.
#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Directory of the event log.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = truce_ingest::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Address of the ingest service.
    #[arg(long, env = "TRUCE_INGEST_LISTEN", default_value = truce_ingest::DEFAULT_LISTEN)]
    ingest_listen: SocketAddr,
    /// Address of the query service.
    #[arg(long, env = "TRUCE_QUERY_LISTEN", default_value = truce_query::DEFAULT_LISTEN)]
    query_listen: SocketAddr,
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

/// Settings of `truce demo`.
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// The ingest service to submit to.
    #[arg(long, env = "TRUCE_INGEST", default_value = "http://127.0.0.1:50051")]
    ingest: String,
}

/// Runs the command line.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    truce_serve::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => {
                let config = IngestConfig {
                    data_dir: args.data_dir,
                    grouping: GroupingPolicy {
                        max_distance_m: args.group_distance_m,
                        max_time_gap: Duration::from_secs(args.group_minutes * 60),
                    },
                    demarcation: args.demarcation,
                };
                let ingest = tokio::net::TcpListener::bind(args.ingest_listen).await?;
                let query = tokio::net::TcpListener::bind(args.query_listen).await?;
                crate::up::run(config, ingest, query, truce_serve::termination()).await
            }
            Command::Demo(args) => crate::demo::run(&args.ingest).await,
        }
    })
}
