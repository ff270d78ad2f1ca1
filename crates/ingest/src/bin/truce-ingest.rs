//! `truce-ingest`: the ingest service alone.

use clap::Parser;
use truce_ingest::args::StandaloneArgs;

/// Accepts ceasefire incident reports over gRPC and acknowledges each once
/// it is durable.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: StandaloneArgs,
}

#[global_allocator]
static ALLOCATOR: truce_serve::Allocator = truce_serve::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    truce_serve::init_tracing();
    Args::parse().service.run().await
}
