//! `truce-ingest`: the ingest service alone.

use std::net::SocketAddr;

use clap::Parser;
use truce_ingest::{DEFAULT_LISTEN, args::IngestArgs};

/// Accepts ceasefire incident reports over gRPC and acknowledges each once
/// it is durable.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TRUCE_INGEST_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    ingest: IngestArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    truce_serve::init_tracing();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    truce_ingest::run(args.ingest.config(), listener, truce_serve::termination()).await
}
