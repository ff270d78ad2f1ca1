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
    /// The server, e.g. 127.0.0.1:50051 or http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051", value_parser = truce_serve::grpc_url)]
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
    /// Adds a principal with a new bearer token (only its hash is stored),
    /// written to --token-out or printed. Running services accept it at
    /// once.
    Add(PrincipalAddArgs),
    /// Lists the principals: name, party, roles and how each authenticates
    /// (never a token or its hash).
    List(PrincipalListArgs),
    /// Removes a principal. Running services refuse its credentials, and end
    /// the subscriptions it opened, within half a second.
    Revoke(PrincipalRevokeArgs),
    /// Gives a principal a new bearer token, written to --token-out or
    /// printed. The new token works at once; running services refuse the
    /// old one, and end the subscriptions it opened, within half a second.
    Rotate(PrincipalRotateArgs),
}

/// Where the principals file is.
#[derive(Debug, clap::Args)]
struct PrincipalsFileArgs {
    /// The principals file. Default: principals.json in the data directory.
    #[arg(long, env = "TRUCE_PRINCIPALS")]
    principals: Option<std::path::PathBuf>,
    /// The data directory.
    #[arg(long, env = "TRUCE_DATA_DIR", default_value = truce_ingest::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
}

impl PrincipalsFileArgs {
    fn file(&self) -> truce_auth::PrincipalsFile {
        let path = self
            .principals
            .clone()
            .unwrap_or_else(|| self.data_dir.join("principals.json"));
        truce_auth::PrincipalsFile::new(path)
    }
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
    #[arg(long, conflicts_with = "token_out")]
    certificate_subject: Option<String>,
    /// Write the token to this new file, readable only by its owner,
    /// instead of printing it (an existing file is not replaced).
    #[arg(long)]
    token_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    file: PrincipalsFileArgs,
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
    let file = args.file.file();
    if let Some(subject) = &args.certificate_subject {
        file.add_certificate(&args.name, &party, &roles, subject)?;
        eprintln!(
            "added {} to {}, authenticated by client certificates with subject {subject:?}; running services accept it at once",
            args.name,
            file.path().display()
        );
        return Ok(());
    }
    let out = args.token_out.as_deref().map(TokenFile::create).transpose()?;
    let added = TokenFile::unless_failed(out.as_ref(), file.add(&args.name, &party, &roles))?;
    let done = format!("added {} to {}", added.name, file.path().display());
    hand_over(&added.token, out, &done, "running services accept it at once")
}

/// Settings of `truce principal list`.
#[derive(Debug, clap::Args)]
struct PrincipalListArgs {
    /// How to print them.
    #[arg(long, value_enum, default_value_t = ListOutput::Table)]
    output: ListOutput,
    #[command(flatten)]
    file: PrincipalsFileArgs,
}

/// The forms of `truce principal list`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListOutput {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
}

fn list_principals(args: PrincipalListArgs) -> anyhow::Result<()> {
    let principals = args.file.file().list()?;
    if let ListOutput::Json = args.output {
        println!("{}", serde_json::to_string_pretty(&principals)?);
        return Ok(());
    }
    let rows: Vec<[String; 4]> = principals
        .iter()
        .map(|p| {
            let roles: Vec<&str> = p.roles.iter().map(|r| r.name()).collect();
            let mut by: Vec<String> = Vec::new();
            if p.token {
                by.push("token".into());
            }
            if let Some(subject) = &p.certificate_subject {
                by.push(format!("certificate {subject}"));
            }
            [p.name.clone(), p.party.clone(), roles.join(","), by.join(", ")]
        })
        .collect();
    let header = ["NAME", "PARTY", "ROLES", "AUTHENTICATES BY"].map(String::from);
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        println!("{}", line.trim_end());
    }
    Ok(())
}

/// Settings of `truce principal revoke`.
#[derive(Debug, clap::Args)]
struct PrincipalRevokeArgs {
    /// The principal's name.
    name: String,
    #[command(flatten)]
    file: PrincipalsFileArgs,
}

fn revoke_principal(args: PrincipalRevokeArgs) -> anyhow::Result<()> {
    let file = args.file.file();
    file.revoke(&args.name)?;
    eprintln!(
        "revoked {} in {}; running services refuse its credentials, and end its subscriptions, within {:?}",
        args.name,
        file.path().display(),
        truce_serve::auth::RELOAD_POLL
    );
    Ok(())
}

/// Settings of `truce principal rotate`.
#[derive(Debug, clap::Args)]
struct PrincipalRotateArgs {
    /// The principal's name.
    name: String,
    /// Write the new token to this new file, readable only by its owner,
    /// instead of printing it (an existing file is not replaced).
    #[arg(long)]
    token_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    file: PrincipalsFileArgs,
}

fn rotate_principal(args: PrincipalRotateArgs) -> anyhow::Result<()> {
    let file = args.file.file();
    let out = args.token_out.as_deref().map(TokenFile::create).transpose()?;
    let rotated = TokenFile::unless_failed(out.as_ref(), file.rotate(&args.name))?;
    let done = format!("gave {} a new token in {}", rotated.name, file.path().display());
    let effect = format!(
        "running services accept it at once, and refuse the old one, and end the subscriptions it opened, within {:?}",
        truce_serve::auth::RELOAD_POLL
    );
    hand_over(&rotated.token, out, &done, &effect)
}

/// A new file for a token, readable only by its owner, created before the
/// principals file changes: a path that is taken fails the command before
/// anything has changed.
struct TokenFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl TokenFile {
    fn create(path: &std::path::Path) -> anyhow::Result<TokenFile> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(file) => Ok(TokenFile {
                path: path.to_owned(),
                file,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(anyhow::anyhow!(
                "--token-out {}: the file exists; it is not replaced (it may hold another token)",
                path.display()
            )),
            Err(e) => Err(anyhow::anyhow!("--token-out {}: {e}", path.display())),
        }
    }

    /// `result`, removing the (still empty) file `out` if it failed.
    fn unless_failed<T>(out: Option<&TokenFile>, result: Result<T, truce_auth::AuthError>) -> anyhow::Result<T> {
        if result.is_err()
            && let Some(out) = out
        {
            let _ = std::fs::remove_file(&out.path);
        }
        Ok(result?)
    }
}

/// Hands `token` over: into `out`, or on stdout (the only thing printed
/// there), with `done` and `effect` on stderr.
fn hand_over(token: &str, out: Option<TokenFile>, done: &str, effect: &str) -> anyhow::Result<()> {
    let Some(TokenFile { path, mut file }) = out else {
        eprintln!("{done}; {effect}; its token (shown only now):");
        println!("{token}");
        return Ok(());
    };
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            anyhow::anyhow!(
                "{done}, but writing its token to {} failed ({e}); rotate it to get another",
                path.display()
            )
        })?;
    eprintln!(
        "{done}; {effect}; its token is in {}, readable only by its owner",
        path.display()
    );
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
    /// The ingest service to submit to (host:port or a URL).
    #[arg(long, env = "TRUCE_INGEST", default_value = "http://127.0.0.1:50051", value_parser = truce_serve::grpc_url)]
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
                let ingest = truce_serve::listen(args.ingest_listen, "--ingest-listen").await?;
                let query = truce_serve::listen(args.query_listen, "--query-listen").await?;
                let auth = args.auth.access(&args.ingest.data_dir);
                // One set of stream flags: subscriptions and log readers.
                let config = truce_ingest::IngestConfig {
                    streams: args.query.streams.limits(),
                    ..args.ingest.config()
                };
                crate::up::run(
                    config,
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
            Command::Principal(PrincipalCommand::List(args)) => list_principals(args),
            Command::Principal(PrincipalCommand::Revoke(args)) => revoke_principal(args),
            Command::Principal(PrincipalCommand::Rotate(args)) => rotate_principal(args),
            Command::Party(PartyCommand::AddKey(args)) => add_party_key(args),
            Command::Health(args) => check_health(args).await,
        }
    })
}
