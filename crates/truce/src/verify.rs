//! `truce verify` and `truce checkpoint`: anyone's check of the record.
//!
//! `verify` reads the whole log, from a data directory or through the
//! ingest service's `LogService`, and checks every link of the hash chain,
//! that every entry decodes as an event at its own position, that every
//! revision follows its report's history, that every party signature holds
//! over the act it was given for, and that the log still extends each
//! signed checkpoint it is given. Through the API it reads up to the head
//! the service signs and checks the hash there, and the head's signature
//! against a key known apart from the service (--service-key, or the
//! checkpoints a party holds). It stops at the first broken entry and names
//! its position; on success it prints what it checked and, plainly, what it
//! could not. `checkpoint` fetches the service's signed head for
//! safekeeping: a later rewrite of anything up to it contradicts the copy a
//! party holds.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use truce_domain::{
    event::RecordedEvent,
    report::ReportSignature,
    statement::{ReportVersions, Statement},
};
use truce_log::{Broken, ChainVerifier, Checkpoint, Hash, LogEntry, LogReader};
use truce_proto::{
    convert::{content_only_v1_signature_holds, statement_signature_holds},
    v1::{self, log_service_client::LogServiceClient, read_log_response::Kind},
};

/// Where the log is read from.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct LogSource {
    /// Read the log in this data directory (a running service may keep
    /// writing it).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Read the log through this ingest service's LogService, e.g.
    /// 127.0.0.1:50051 or http://127.0.0.1:50051. (No environment
    /// default: either this or --data-dir is named.)
    #[arg(long, value_parser = truce_serve::grpc_url)]
    pub(crate) log: Option<String>,
}

/// Settings of `truce verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    source: LogSource,
    /// A file holding a bearer token for --log.
    #[arg(long, env = "TRUCE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A signed checkpoint (as printed by `truce checkpoint`) that the log
    /// must still extend. Repeatable. Without --service-key, the key that
    /// signed the checkpoints given is the one the head must be signed
    /// with: give only checkpoints you fetched or trust yourself.
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
    /// The service's public key (hex), known independently of the service
    /// being checked: the signed head and every checkpoint must be signed
    /// with it.
    #[arg(long)]
    service_key: Option<String>,
    /// A principals file whose party signing keys every signature must
    /// have been made with (without it, signatures are checked against the
    /// keys stored with them, which prove nothing about who signed).
    #[arg(long)]
    principals: Option<PathBuf>,
}

/// Settings of `truce checkpoint`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckpointArgs {
    /// The ingest service, e.g. 127.0.0.1:50051 or http://127.0.0.1:50051.
    #[arg(long, env = "TRUCE_INGEST", default_value = "http://127.0.0.1:50051", value_parser = truce_serve::grpc_url)]
    log: String,
    /// A file holding a bearer token.
    #[arg(long, env = "TRUCE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

/// A signed checkpoint as a party keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SignedCheckpoint {
    /// The log incarnation.
    pub(crate) incarnation: String,
    /// The position.
    pub(crate) position: u64,
    /// The entry hash there, hex.
    pub(crate) hash: String,
    /// The service's Ed25519 public key, hex.
    pub(crate) public_key: String,
    /// The signature over the checkpoint, hex.
    pub(crate) signature: String,
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

/// The key signed heads and checkpoints are checked against, and why it is
/// believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKey {
    /// Given with --service-key: known independently of the service.
    Given(String),
    /// The key of the checkpoints given, as trustworthy as those files.
    OfCheckpoints(String),
    /// None known: each signature is checked against the key it carries,
    /// which whoever signed chose.
    Unknown,
}

impl ServiceKey {
    /// The trusted key, if any.
    fn pinned(&self) -> Option<&str> {
        match self {
            ServiceKey::Given(key) | ServiceKey::OfCheckpoints(key) => Some(key),
            ServiceKey::Unknown => None,
        }
    }
}

/// How far the log read reached the head the service signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadCheck {
    /// Read from a data directory: there is no signed head.
    DataDirectory,
    /// Read through the API up to the signed head at `position`, whose hash
    /// matched; its signature held under `key` (hex), which the trusted
    /// service key is when one is known.
    Reached {
        /// The head's position.
        position: u64,
        /// The key that signed it.
        key: String,
    },
}

/// What a successful verification covered.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The log incarnation.
    pub(crate) incarnation: String,
    /// Entries checked, 1 to `entries`.
    pub(crate) entries: u64,
    /// The last entry's hash.
    pub(crate) head_hash: Hash,
    /// How the end of the log was checked.
    pub(crate) head: HeadCheck,
    /// The key the head and checkpoints were checked against.
    pub(crate) service_key: ServiceKey,
    /// Checkpoints the log extends.
    pub(crate) checkpoints: usize,
    /// Signatures bound to their act, party, report and version that hold.
    pub(crate) bound_signatures: u64,
    /// Signatures of the first scheme, over a report's content only, that
    /// hold.
    pub(crate) content_only_signatures: u64,
    /// Whether signing keys were checked against the parties' registered
    /// keys.
    pub(crate) registered_keys: bool,
}

impl Verified {
    /// What was checked and what was not, one statement a line.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "verified {} entries of log {}: every link intact, every event readable, every revision follows its \
             report's history; head hash {}",
            self.entries,
            self.incarnation,
            hex::encode(self.head_hash)
        )];
        lines.push(match (&self.head, &self.service_key) {
            (HeadCheck::DataDirectory, _) => "NOT CHECKED: the end of the log: a data directory has no signed head, \
                                              so entries cut from its end go unnoticed beyond the checkpoints given"
                .to_owned(),
            (HeadCheck::Reached { position, key }, ServiceKey::Given(_)) => format!(
                "the log reaches the head the service signed (position {position}, same hash), signed with the \
                 service key given with --service-key ({key}); a head carries no time, so an older head signed \
                 with that key, served with the log cut to it, would pass: only a checkpoint you hold shows how \
                 far the log had reached"
            ),
            (HeadCheck::Reached { position, key }, ServiceKey::OfCheckpoints(_)) => format!(
                "the log reaches the head the service signed (position {position}, same hash), signed with the key \
                 of the checkpoints given ({key}): as trustworthy as those files; --service-key pins it"
            ),
            (HeadCheck::Reached { position, key }, ServiceKey::Unknown) => format!(
                "NOT CHECKED: who signed the head: the log reaches the signed head (position {position}, same \
                 hash), but its signature was checked only against the key the server itself presented ({key}), \
                 which proves nothing; give --service-key, or a --checkpoint you hold"
            ),
        });
        if self.checkpoints > 0 {
            lines.push(format!(
                "the log extends all {} signed checkpoints given",
                self.checkpoints
            ));
            if !matches!(self.service_key, ServiceKey::Given(_)) {
                lines.push(
                    "NOT CHECKED: who signed the checkpoints: they are taken on trust as files you hold, checked \
                     against the key they carry; give --service-key"
                        .to_owned(),
                );
            }
        } else {
            lines.push("no checkpoints given: nothing shows whether history before the head was rewritten".to_owned());
        }
        lines.push(format!(
            "{} signatures hold, each bound to its act, party, report and replaced version (truce-report-v2)",
            self.bound_signatures
        ));
        if self.content_only_signatures > 0 {
            lines.push(format!(
                "{} signatures of the first scheme (truce-report-v1) hold over a report's content only: they are \
                 NOT bound to an act, report or version, so one replayed as a new report or version, or moved to \
                 another report, would not show",
                self.content_only_signatures
            ));
        }
        lines.push(if self.registered_keys {
            "every signing key is registered for its party in the principals file given (as trustworthy as that \
             file: the operator keeps it)"
                .to_owned()
        } else {
            "NOT CHECKED: whose keys signed: each signature was checked against the key stored with it, which \
             whoever wrote the log chose; give --principals"
                .to_owned()
        });
        lines.push(
            "NOT CHECKED: whether an unsigned entry should have been signed (a party's require_signatures may have \
             changed over time)"
                .to_owned(),
        );
        lines.push(
            "NOT CHECKED: the mediators' rulings and the incident summaries in the events: rulings are not signed, \
             and who counts as a mediator is the operator's configuration; they are recorded in order, linked and \
             readable, not re-decided"
                .to_owned(),
        );
        lines
    }
}

/// Why verification failed.
#[derive(Debug)]
pub(crate) enum Failure {
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

/// Runs `truce verify`, printing what was verified and what was not; an
/// error names the first broken position.
pub(crate) async fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    match verify(&args).await {
        Ok(verified) => {
            for line in verified.lines() {
                println!("{line}");
            }
            Ok(())
        }
        Err(failure) => anyhow::bail!("verification failed: {failure}"),
    }
}

/// Runs `truce checkpoint`: prints the service's signed head as JSON.
pub(crate) async fn run_checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
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

/// The key to trust: --service-key, else the one key of the checkpoints
/// given.
fn service_key(given: Option<&str>, checkpoints: &[SignedCheckpoint]) -> anyhow::Result<ServiceKey> {
    if let Some(key) = given {
        let bytes = hex::decode(key).ok().filter(|b| b.len() == 32);
        anyhow::ensure!(bytes.is_some(), "--service-key: not 32 bytes of hex");
        return Ok(ServiceKey::Given(key.to_ascii_lowercase()));
    }
    let mut keys: Vec<String> = checkpoints.iter().map(|c| c.public_key.to_ascii_lowercase()).collect();
    keys.sort();
    keys.dedup();
    match keys.as_slice() {
        [] => Ok(ServiceKey::Unknown),
        [key] => Ok(ServiceKey::OfCheckpoints(key.clone())),
        _ => anyhow::bail!(
            "the checkpoints given are signed by different keys ({}): give --service-key to say which is the \
             service's",
            keys.join(", ")
        ),
    }
}

/// Verifies the log named by `args`.
pub(crate) async fn verify(args: &VerifyArgs) -> Result<Verified, Failure> {
    let held = args
        .checkpoints
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let signed: SignedCheckpoint =
                serde_json::from_str(&text).with_context(|| format!("{}: not a checkpoint", path.display()))?;
            Ok((path, signed))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let service_key = service_key(
        args.service_key.as_deref(),
        &held.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
    )?;
    let checkpoints = held
        .iter()
        .map(|(path, signed)| {
            signed
                .check(service_key.pinned())
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
    let head = match (&args.source.data_dir, &args.source.log) {
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
            HeadCheck::DataDirectory
        }
        (None, Some(url)) => {
            let token = read_token(args.token_file.as_deref())?;
            let mut client = connect(url).await?;
            let signed = SignedCheckpoint::from(
                client
                    .get_log_head(with_token(v1::GetLogHeadRequest {}, token.as_deref())?)
                    .await
                    .context("GetLogHead")?
                    .into_inner(),
            );
            let head = signed
                .check(service_key.pinned())
                .context("the service's signed head (GetLogHead)")?;
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
            walk.reached(&head)?;
            HeadCheck::Reached {
                position: head.position,
                key: signed.public_key.to_ascii_lowercase(),
            }
        }
        (None, None) => return Err(anyhow::anyhow!("give --data-dir or --log").into()),
    };
    walk.finish(head, service_key)
}

/// The state of one pass over the log.
struct Walk {
    incarnation: String,
    chain: ChainVerifier,
    last_hash: Hash,
    checkpoints: Vec<Checkpoint>,
    principals: Option<truce_auth::Principals>,
    versions: ReportVersions,
    bound_signatures: u64,
    content_only_signatures: u64,
}

impl Walk {
    fn new(checkpoints: Vec<Checkpoint>, principals: Option<truce_auth::Principals>) -> Walk {
        Walk {
            incarnation: String::new(),
            chain: ChainVerifier::default(),
            last_hash: truce_log::GENESIS_HASH,
            checkpoints,
            principals,
            versions: ReportVersions::default(),
            bound_signatures: 0,
            content_only_signatures: 0,
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
        self.versions.apply(&event).map_err(|what| {
            broken(format!(
                "the event {what}: the service records no such revision or submission"
            ))
        })?;
        if let Some((signature, statement)) = event.signed_statement() {
            self.check_signature(&event, signature, statement).map_err(broken)?;
        }
        for checkpoint in self.checkpoints.iter().filter(|c| c.position == entry.position) {
            if checkpoint.hash != entry.hash {
                return Err(broken(format!(
                    "the log no longer extends a signed checkpoint: it had hash {} here, the log has {}",
                    hex::encode(checkpoint.hash),
                    hex::encode(entry.hash)
                )));
            }
        }
        self.last_hash = entry.hash;
        Ok(())
    }

    /// Checks a party's signature on `event`: over the statement of its
    /// act, or, for a report or amendment recorded under the first scheme,
    /// over its content only (counted apart, as weaker); and, with a
    /// principals file, that the key is registered for the party.
    fn check_signature(
        &mut self,
        event: &RecordedEvent,
        signature: &ReportSignature,
        statement: Option<Statement<'_>>,
    ) -> Result<(), String> {
        let party = match (&statement, event.signed_report()) {
            (Some(statement), _) => statement.party(),
            (None, Some((report, _))) => &report.report.reporting_party,
            (None, None) => return Err("a signature without a statement".into()),
        };
        if statement
            .as_ref()
            .is_some_and(|statement| statement_signature_holds(statement, signature))
        {
            self.bound_signatures += 1;
        } else if event
            .signed_report()
            .is_some_and(|(report, _)| content_only_v1_signature_holds(&report.report, signature))
        {
            self.content_only_signatures += 1;
        } else {
            let what = match &statement {
                Some(statement) => format!("its statement to {} {}", statement.action().name(), statement.subject()),
                None => "its report".to_owned(),
            };
            return Err(format!(
                "the signature of party {party} does not hold over {what}: the act, report, version, content or \
                 reason was changed after signing, or the signature was moved here from another"
            ));
        }
        if let Some(principals) = &self.principals
            && !principals
                .party_keys(party)
                .is_some_and(|keys| keys.signing_keys.contains(&signature.public_key))
        {
            return Err(format!(
                "a signature of party {party} is made with key {}, which is not registered for the party",
                hex::encode(signature.public_key)
            ));
        }
        Ok(())
    }

    /// Checks that the log read reached the signed `head`: every entry up
    /// to its position, the last with its hash.
    fn reached(&self, head: &Checkpoint) -> Result<(), Failure> {
        let entries = self.chain.checked();
        if entries < head.position {
            return Err(Failure::Broken(Broken {
                position: entries + 1,
                what: format!(
                    "the log read ends at {entries}, before the head the service signed at {}: entries are missing",
                    head.position
                ),
            }));
        }
        if self.last_hash != head.hash {
            return Err(Failure::Broken(Broken {
                position: head.position,
                what: format!(
                    "the signed head has hash {} here, the log read has {}",
                    hex::encode(head.hash),
                    hex::encode(self.last_hash)
                ),
            }));
        }
        Ok(())
    }

    fn finish(self, head: HeadCheck, service_key: ServiceKey) -> Result<Verified, Failure> {
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
            head,
            service_key,
            checkpoints: self.checkpoints.len(),
            bound_signatures: self.bound_signatures,
            content_only_signatures: self.content_only_signatures,
            registered_keys: self.principals.is_some(),
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
