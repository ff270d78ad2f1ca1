//! `truce-query`: the query service alone, following an ingest service.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use truce_query::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_UPSTREAM, Upstream, args::QueryArgs};

/// Answers queries over ceasefire incidents and streams live changes,
/// following an ingest service's log.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TRUCE_QUERY_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The ingest service whose log to follow.
    #[arg(long, env = "TRUCE_UPSTREAM", default_value = DEFAULT_UPSTREAM)]
    upstream: String,
    /// Directory of the local replica of the log.
    #[arg(long, env = "TRUCE_QUERY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    query: QueryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    truce_serve::init_tracing();
    let args = Args::parse();
    let upstream = Upstream {
        endpoint: args.upstream,
        replica_dir: args.data_dir,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    truce_query::run(upstream, args.query.settings(), listener, truce_serve::termination()).await
}
