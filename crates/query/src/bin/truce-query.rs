//! `truce-query`: the query service alone, following an ingest service.

use clap::Parser;
use truce_query::args::StandaloneArgs;

/// Answers queries over ceasefire incidents and streams live changes,
/// following an ingest service's log.
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
