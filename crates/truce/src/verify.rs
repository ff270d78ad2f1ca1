//! `truce verify` and `truce checkpoint`: anyone's check of the record.
//!
//! `verify` reads the whole log, from a data directory or through the
//! ingest service's `LogService`, and checks every link of the hash chain,
//! that every entry decodes as an event at its own position, and that the
//! log still extends each signed checkpoint it is given. It stops at the
//! first broken entry and names its position. `checkpoint` fetches the
//! service's signed head for safekeeping: a later rewrite of anything up to
//! it contradicts the copy a party holds.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use truce_log::{Broken, ChainVerifier, Checkpoint, Hash, LogEntry, LogReader};
use truce_proto::v1::{self, log_service_client::LogServiceClient, read_log_response::Kind};

/// Where the log is read from.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct LogSource {
    /// Read the log in this data directory (a running service may keep
    /// writing it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Read the log through this ingest service's LogService, e.g.
    /// 127.0.0.1:50051 or http://127.0.0.1:50051. (No environment
    /// default: either this or --data-dir is named.)
    #[arg(long, value_parser = truce_serve::grpc_url)]
    pub log: Option<String>,
}

/// Settings of `truce verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: LogSource,
    /// A file holding a bearer token for --log.
    #[arg(long, env = "TRUCE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A signed checkpoint (as printed by `truce checkpoint`) that the log
    /// must still extend. Repeatable.
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
    /// The service's public key (hex), when known independently: checkpoints
    /// signed by any other key are refused.
    #[arg(long)]
    service_key: Option<String>,
    /// A principals file whose party signing keys every signed report must
    /// have been signed with (without it, signatures are checked against
    /// the keys stored with them).
    #[arg(long)]
    principals: Option<PathBuf>,
}

/// Settings of `truce checkpoint`.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The ingest service, e.g. 127.0.0.1:50051 or http://127.0.0.1:50051.
    #[arg(long, env = "TRUCE_INGEST", default_value = "http://127.0.0.1:50051", value_parser = truce_serve::grpc_url)]
    log: String,
    /// A file holding a bearer token.
    #[arg(long, env = "TRUCE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

/// A signed checkpoint as a party keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The log incarnation.
    pub incarnation: String,
    /// The position.
    pub position: u64,
    /// The entry hash there, hex.
    pub hash: String,
    /// The service's Ed25519 public key, hex.
    pub public_key: String,
    /// The signature over the checkpoint, hex.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Checks the signature (and the key, when pinned) and returns what the
    /// checkpoint asserts.
    fn check(&self, pinned_key: Option<&str>) -> anyhow::Result<Checkpoint> {
        if let Some(pinned) = pinned_key
            && !pinned.eq_ignore_ascii_case(&self.public_key)
        {
            anyhow::bail!("signed by {}, not by the service key {pinned}", self.public_key);
        }
        let hash: Hash = hex::decode(&self.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .context("hash: not 32 bytes of hex")?;
        let checkpoint = Checkpoint {
            incarnation: self.incarnation.clone(),
            position: self.position,
            hash,
        };
        let key = hex::decode(&self.public_key).context("public_key: not hex")?;
        let signature = hex::decode(&self.signature).context("signature: not hex")?;
        checkpoint.verify(&key, &signature).map_err(anyhow::Error::msg)?;
        Ok(checkpoint)
    }
}

impl From<v1::GetLogHeadResponse> for SignedCheckpoint {
    fn from(head: v1::GetLogHeadResponse) -> Self {
        SignedCheckpoint {
            incarnation: head.incarnation,
            position: head.position,
            hash: head.hash,
            public_key: head.public_key,
            signature: head.signature,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug)]
pub struct Verified {
    /// The log incarnation.
    pub incarnation: String,
    /// Entries checked, 1 to `entries`.
    pub entries: u64,
    /// The last entry's hash.
    pub head_hash: Hash,
    /// Checkpoints the log extends.
    pub checkpoints: usize,
    /// Signed reports whose signatures hold.
    pub signed_reports: u64,
}

/// Why verification failed.
#[derive(Debug)]
pub enum Failure {
    /// The record is damaged or rewritten at a position.
    Broken(Broken),
    /// The log could not be read, or a checkpoint is unusable.
    Unreadable(anyhow::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Broken(broken) => write!(f, "the log is broken at position {}: {}", broken.position, broken.what),
            Failure::Unreadable(error) => f.write_str(&crate::errors::one_line(error)),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Unreadable(error)
    }
}

/// Runs `truce verify`, printing what was verified; an error names the
/// first broken position.
pub async fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    match verify(&args).await {
        Ok(verified) => {
            println!(
                "verified {} entries of log {}: every link intact, every event readable; head hash {}",
                verified.entries,
                verified.incarnation,
                hex::encode(verified.head_hash)
            );
            println!("{} signed reports: every signature holds", verified.signed_reports);
            if verified.checkpoints > 0 {
                println!("the log extends all {} signed checkpoints given", verified.checkpoints);
            }
            Ok(())
        }
        Err(failure) => anyhow::bail!("verification failed: {failure}"),
    }
}

/// Runs `truce checkpoint`: prints the service's signed head as JSON.
pub async fn run_checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let token = read_token(args.token_file.as_deref())?;
    let mut client = connect(&args.log).await?;
    let head = client
        .get_log_head(with_token(v1::GetLogHeadRequest {}, token.as_deref())?)
        .await?
        .into_inner();
    let checkpoint = SignedCheckpoint::from(head);
    checkpoint
        .check(None)
        .context("the service's own checkpoint does not verify")?;
    println!("{}", serde_json::to_string_pretty(&checkpoint)?);
    Ok(())
}

/// Verifies the log named by `args`.
pub async fn verify(args: &VerifyArgs) -> Result<Verified, Failure> {
    let checkpoints = args
        .checkpoints
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let signed: SignedCheckpoint =
                serde_json::from_str(&text).with_context(|| format!("{}: not a checkpoint", path.display()))?;
            signed
                .check(args.service_key.as_deref())
                .with_context(|| format!("checkpoint {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let principals = args
        .principals
        .as_ref()
        .map(|path| truce_auth::PrincipalsFile::new(path).load())
        .transpose()
        .context("reading the parties' signing keys")?;
    let mut walk = Walk::new(checkpoints, principals);
    match (&args.source.data_dir, &args.source.log) {
        (Some(dir), _) => {
            let reader =
                LogReader::open_existing(dir).with_context(|| format!("opening the log in {}", dir.display()))?;
            walk.begin(reader.incarnation().as_str())?;
            let head = reader.head().position;
            let mut from = 1;
            while from <= head {
                let entries = match reader.read(from, 1024).await {
                    Ok(entries) => entries,
                    Err(truce_log::LogError::Corrupt { position, what }) => {
                        return Err(Failure::Broken(Broken { position, what }));
                    }
                    Err(error) => return Err(Failure::Unreadable(error.into())),
                };
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    walk.check(entry)?;
                }
                from += entries.len() as u64;
            }
        }
        (None, Some(url)) => {
            let token = read_token(args.token_file.as_deref())?;
            let mut client = connect(url).await?;
            let head = client
                .get_log_head(with_token(v1::GetLogHeadRequest {}, token.as_deref())?)
                .await
                .context("GetLogHead")?
                .into_inner();
            walk.begin(&head.incarnation)?;
            if head.position > 0 {
                let request = v1::ReadLogRequest {
                    from_position: 1,
                    incarnation: head.incarnation.clone(),
                    until_position: head.position,
                };
                let mut stream = client
                    .read_log(with_token(request, token.as_deref())?)
                    .await
                    .context("ReadLog")?
                    .into_inner();
                while let Some(message) = stream.next().await {
                    let message = message.context("ReadLog")?;
                    let Some(Kind::Entry(entry)) = message.kind else {
                        continue;
                    };
                    let hash = entry.hash.as_slice().try_into().map_err(|_| {
                        Failure::Broken(Broken {
                            position: entry.position,
                            what: "the hash is not 32 bytes".into(),
                        })
                    })?;
                    walk.check(&LogEntry {
                        position: entry.position,
                        hash,
                        payload: entry.event,
                    })?;
                    if entry.position >= head.position {
                        break;
                    }
                }
            }
        }
        (None, None) => return Err(anyhow::anyhow!("give --data-dir or --log").into()),
    }
    walk.finish()
}

/// The state of one pass over the log.
struct Walk {
    incarnation: String,
    chain: ChainVerifier,
    last_hash: Hash,
    checkpoints: Vec<Checkpoint>,
    principals: Option<truce_auth::Principals>,
    signed_reports: u64,
}

impl Walk {
    fn new(checkpoints: Vec<Checkpoint>, principals: Option<truce_auth::Principals>) -> Walk {
        Walk {
            incarnation: String::new(),
            chain: ChainVerifier::default(),
            last_hash: truce_log::GENESIS_HASH,
            checkpoints,
            principals,
            signed_reports: 0,
        }
    }

    /// Starts on log `incarnation`, which every checkpoint must be of.
    fn begin(&mut self, incarnation: &str) -> Result<(), Failure> {
        self.incarnation = incarnation.to_owned();
        if let Some(other) = self.checkpoints.iter().find(|c| c.incarnation != incarnation) {
            return Err(anyhow::anyhow!(
                "a checkpoint is of log {}, not of this log {incarnation}: the log was replaced",
                other.incarnation
            )
            .into());
        }
        Ok(())
    }

    fn check(&mut self, entry: &LogEntry) -> Result<(), Failure> {
        self.chain.check(entry).map_err(Failure::Broken)?;
        let broken = |what: String| {
            Failure::Broken(Broken {
                position: entry.position,
                what,
            })
        };
        let event = truce_proto::convert::event_from_wire(entry.position, &entry.payload)
            .map_err(|what| broken(format!("not a readable event: {what}")))?;
        if let Some((report, signature)) = event.signed_report() {
            let party = &report.report.reporting_party;
            if !truce_proto::convert::report_signature_holds(&report.report, signature) {
                return Err(broken(format!(
                    "the signature of party {party} does not hold over {}: the report was altered after signing",
                    report.report_id
                )));
            }
            if let Some(principals) = &self.principals
                && !principals
                    .party_keys(party)
                    .is_some_and(|keys| keys.signing_keys.contains(&signature.public_key))
            {
                return Err(broken(format!(
                    "{} is signed with key {}, which is not registered for party {party}",
                    report.report_id,
                    hex::encode(signature.public_key)
                )));
            }
            self.signed_reports += 1;
        }
        for checkpoint in self.checkpoints.iter().filter(|c| c.position == entry.position) {
            if checkpoint.hash != entry.hash {
                return Err(Failure::Broken(Broken {
                    position: entry.position,
                    what: format!(
                        "the log no longer extends a signed checkpoint: it had hash {} here, the log has {}",
                        hex::encode(checkpoint.hash),
                        hex::encode(entry.hash)
                    ),
                }));
            }
        }
        self.last_hash = entry.hash;
        Ok(())
    }

    fn finish(self) -> Result<Verified, Failure> {
        let entries = self.chain.checked();
        for checkpoint in &self.checkpoints {
            if checkpoint.position > entries {
                return Err(Failure::Broken(Broken {
                    position: entries + 1,
                    what: format!(
                        "the log ends at {entries}, but a signed checkpoint holds an entry at {}: history was cut",
                        checkpoint.position
                    ),
                }));
            }
        }
        Ok(Verified {
            incarnation: self.incarnation,
            entries,
            head_hash: self.last_hash,
            checkpoints: self.checkpoints.len(),
            signed_reports: self.signed_reports,
        })
    }
}

fn read_token(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("reading the token in {}", path.display()))
    })
    .transpose()
}

fn with_token<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

async fn connect(url: &str) -> anyhow::Result<LogServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(LogServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}
