//! Command-line parsing for `truce`.

use std::net::SocketAddr;

use anyhow::Context;
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
    /// Manages the parties' report-signing keys.
    #[command(subcommand)]
    Party(PartyCommand),
    /// Asks a server's gRPC health service whether it is serving; exits 0
    /// if so (for container health checks).
    Health(HealthArgs),
}

/// Settings of `truce health`.
#[derive(Debug, clap::Args)]
struct HealthArgs {
    /// The server, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    address: String,
    /// The service to ask about; empty: the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
}

async fn check_health(args: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(args.address.clone())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.address))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    anyhow::ensure!(status == ServingStatus::Serving, "{} is not serving", args.address);
    Ok(())
}

#[derive(Debug, Subcommand)]
enum PartyCommand {
    /// Registers an Ed25519 public key with which a party signs its
    /// reports. Without --public-key, generates a key pair, writes the
    /// secret key (hex) to --key-out, readable only by its owner, and
    /// registers its public key.
    AddKey(PartyAddKeyArgs),
}

/// Settings of `truce party add-key`.
#[derive(Debug, clap::Args)]
struct PartyAddKeyArgs {
    /// The party, e.g. "idf".
    #[arg(long)]
    party: String,
    /// The public key to register, 64 hex digits.
    #[arg(long, conflicts_with = "key_out")]
    public_key: Option<String>,
    /// Where to write a generated secret key. Default: PARTY.signing-key in
    /// the current directory.
    #[arg(long)]
    key_out: Option<std::path::PathBuf>,
    /// The principals file. Default: principals.json in the data directory.
    #[arg(long, env = "TRUCE_PRINCIPALS")]
    principals: Option<std::path::PathBuf>,
    /// The data directory.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = truce_ingest::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
}

fn add_party_key(args: PartyAddKeyArgs) -> anyhow::Result<()> {
    let party: truce_domain::PartyId = args
        .party
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--party: {e}"))?;
    let public_key = match args.public_key {
        Some(key) => key,
        None => {
            let out = args
                .key_out
                .unwrap_or_else(|| std::path::PathBuf::from(format!("{party}.signing-key")));
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
            std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(secret)).as_bytes())?;
            eprintln!("wrote the secret signing key of {party} to {}", out.display());
            hex::encode(
                ed25519_dalek::SigningKey::from_bytes(&secret)
                    .verifying_key()
                    .to_bytes(),
            )
        }
    };
    let path = args.principals.unwrap_or_else(|| args.data_dir.join("principals.json"));
    truce_auth::PrincipalsFile::new(&path).add_party_key(&party, &public_key)?;
    eprintln!("registered the signing key of {party} in {}:", path.display());
    println!("{public_key}");
    Ok(())
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
    /// Authenticate it by TLS client certificate with this subject (e.g.
    /// "CN=egypt-monitor") instead of a token.
    #[arg(long)]
    certificate_subject: Option<String>,
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
    if let Some(subject) = &args.certificate_subject {
        truce_auth::PrincipalsFile::new(&path).add_certificate(&args.name, &party, &roles, subject)?;
        eprintln!(
            "added {} to {}, authenticated by client certificates with subject {subject:?}",
            args.name,
            path.display()
        );
        return Ok(());
    }
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
                let auth = args.auth.access(&args.ingest.data_dir);
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
            Command::Party(PartyCommand::AddKey(args)) => add_party_key(args),
            Command::Health(args) => check_health(args).await,
        }
    })
}
