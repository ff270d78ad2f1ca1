//! Command-line parsing for `truce`.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use truce_ingest::args::IngestArgs;
use truce_query::args::QueryArgs;

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
    /// Runs the ingest service alone (as `truce-ingest` does).
    Ingest(truce_ingest::args::StandaloneArgs),
    /// Runs a query service alone, following an ingest service (as
    /// `truce-query` does).
    Query(truce_query::args::StandaloneArgs),
    /// Loads the incidents of the source article into a running ingest service.
    Demo(DemoArgs),
}

/// Settings of `truce up`.
#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Address of the ingest service.
    #[arg(long, env = "TRUCE_INGEST_LISTEN", default_value = truce_ingest::DEFAULT_LISTEN)]
    ingest_listen: SocketAddr,
    /// Address of the query service.
    #[arg(long, env = "TRUCE_QUERY_LISTEN", default_value = truce_query::DEFAULT_LISTEN)]
    query_listen: SocketAddr,
    #[command(flatten)]
    ingest: IngestArgs,
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    auth: truce_serve::auth::AuthArgs,
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
                let ingest = tokio::net::TcpListener::bind(args.ingest_listen).await?;
                let query = tokio::net::TcpListener::bind(args.query_listen).await?;
                let auth = args.auth.mode(&args.ingest.data_dir);
                crate::up::run(
                    args.ingest.config(),
                    args.query.settings(),
                    auth,
                    ingest,
                    query,
                    truce_serve::termination(),
                )
                .await
            }
            Command::Ingest(args) => args.run().await,
            Command::Query(args) => args.run().await,
            Command::Demo(args) => crate::demo::run(&args.ingest).await,
        }
    })
}
