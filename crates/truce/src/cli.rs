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
    /// Checks the whole log: every hash link, every event, and that it still
    /// extends the signed checkpoints given. Names the first broken position.
    Verify(crate::verify::VerifyArgs),
    /// Prints the service's signed log head (a checkpoint to keep).
    Checkpoint(crate::verify::CheckpointArgs),
    /// Manages principals.
    #[command(subcommand)]
    Principal(PrincipalCommand),
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Adds a principal and prints its new bearer token (only its hash is
    /// stored). Running services pick it up within seconds.
    Add(PrincipalAddArgs),
}

/// Settings of `truce principal add`.
#[derive(Debug, clap::Args)]
struct PrincipalAddArgs {
    /// A unique name, e.g. "idf-ops-desk".
    name: String,
    /// The party it speaks for, e.g. "idf", "hamas", "egypt".
    #[arg(long)]
    party: String,
    /// Its roles: reporter, monitor, observer, admin (repeat or separate
    /// with commas).
    #[arg(long = "role", required = true, value_delimiter = ',')]
    roles: Vec<String>,
    /// The principals file. Default: principals.json in the data directory.
    #[arg(long, env = "TRUCE_PRINCIPALS")]
    principals: Option<std::path::PathBuf>,
    /// The data directory.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = truce_ingest::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
}

fn add_principal(args: PrincipalAddArgs) -> anyhow::Result<()> {
    let party = args
        .party
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--party: {e}"))?;
    let roles = args
        .roles
        .iter()
        .map(|r| truce_auth::Role::from_name(r).ok_or_else(|| anyhow::anyhow!("--role: unknown role {r:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = args.principals.unwrap_or_else(|| args.data_dir.join("principals.json"));
    let added = truce_auth::PrincipalsFile::new(&path).add(&args.name, &party, &roles)?;
    eprintln!(
        "added {} to {}; its token (shown only now):",
        added.name,
        path.display()
    );
    println!("{}", added.token);
    Ok(())
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
    /// The principals file of the running services (default:
    /// principals.json in the data directory). The demo adds a reporter
    /// principal for each party it reports for (keeping their tokens in
    /// demo-tokens.json beside it), so each report carries its own party's
    /// identity.
    #[arg(long, env = "TRUCE_PRINCIPALS")]
    principals: Option<std::path::PathBuf>,
    /// The data directory of `truce up`.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = truce_ingest::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    /// Submit anonymously, to services started with --insecure-loopback.
    #[arg(long)]
    insecure_loopback: bool,
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
            Command::Demo(args) => {
                let credentials = if args.insecure_loopback {
                    crate::demo::Credentials::default()
                } else {
                    let path = args.principals.unwrap_or_else(|| args.data_dir.join("principals.json"));
                    crate::demo::Credentials::reporters(&path).await?
                };
                crate::demo::run(&args.ingest, &credentials).await
            }
            Command::Verify(args) => crate::verify::run_verify(args).await,
            Command::Checkpoint(args) => crate::verify::run_checkpoint(args).await,
            Command::Principal(PrincipalCommand::Add(args)) => add_principal(args),
        }
    })
}
