//! The event log on NATS JetStream, for deployments beyond one machine.
//!
//! One stream holds the log; a stream sequence is a log position, so every
//! query replica names the same change by the same number. Each message
//! carries its chain hash in the `Truce-Hash` header, computed over the
//! previous entry's hash and the message's bytes, as in the embedded log.
//!
//! Several ingest replicas may write at once. Each appends optimistically:
//! every message states the sequence it expects to follow
//! (`Nats-Expected-Last-Sequence`), so an append based on a stale view of
//! the log is refused by the server and nothing forks the chain or the
//! grouping; the writer catches up and decides again. An entry with an
//! idempotency key goes to a subject of its own, named by the key's hash,
//! with `Nats-Expected-Last-Subject-Sequence: 0`: the server itself
//! refuses a second entry for the same key, at any distance in time, with
//! no window to expire. The stream denies delete and purge, so the record
//! is append-only on the server too.
//!
//! What a write waits for, and how long, is [`connection`]'s job.

mod blocking;
mod connection;

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self, ErrorCode,
        consumer::{DeliverPolicy, pull::OrderedConfig},
        context::{PublishError, PublishErrorKind},
        publish::PublishAck,
        stream::{LastRawMessageErrorKind, StorageType},
    },
};
use sha2::{Digest, Sha256};
use tokio_stream::{Stream, StreamExt};
use truce_log::{GENESIS_HASH, Hash, Head, Incarnation, LogEntry, LogError, NewEntry, chain_hash};

pub use blocking::BlockingJetStream;
use connection::Connection;
pub use connection::{ANSWER_WITHIN, REQUEST_TIMEOUT};

/// Reads shorter than this (what other writers appended while a batch was
/// decided) are asked of the stream's servers directly, with no consumer
/// to create (which waits on the cluster's meta leader, itself re-elected
/// when its node dies): in batches of [`DIRECT_BATCH`] where the server
/// serves them, each entry left from the stream's leader otherwise.
/// Longer reads (rebuilding the state at start) go through a consumer.
const SHORT_READ: u64 = 2048;

/// Entries asked for in one direct get (the server's limit is 1,000).
const DIRECT_BATCH: u64 = 512;

/// Single-entry reads and key lookups in flight at once.
const GETS_IN_FLIGHT: usize = 64;

/// How long one append sends entries: past it no further entry is sent,
/// and the caller decides the rest again. Half of [`ANSWER_WITHIN`]: a
/// batch on a log that keeps up completes in time (see there), and one on
/// a slow log stops holding up callers who have gone.
pub const PUBLISH_BUDGET: Duration = Duration::from_millis(500);

/// How long an entry whose acknowledgement did not come is sent again (the
/// same message: same id, same expected last sequence) for the server's
/// own answer: stored (a duplicate's acknowledgement), or refused (the
/// sequence it expects is gone). Past it, the entry is in doubt.
const RESEND_WITHIN: Duration = ANSWER_WITHIN;

/// Pause between two sends of an entry that has no answer.
const RESEND_PAUSE: Duration = Duration::from_millis(50);

/// The header that carries an entry's chain hash, hex.
pub const HASH_HEADER: &str = "Truce-Hash";

/// Where the log lives on NATS.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// The server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for a
    /// cluster).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// The subject prefix; the stream takes `PREFIX.>`.
    pub subject_prefix: String,
    /// Copies of each message in a cluster (1, 3 or 5).
    pub replicas: usize,
}

/// The JetStream flags every truce server takes.
#[derive(Debug, Clone, clap::Args)]
pub struct JetStreamArgs {
    /// The JetStream stream holding the log.
    #[arg(long, env = "TRUCE_NATS_STREAM", default_value = "TRUCE")]
    pub nats_stream: String,
    /// Its subject prefix (the stream takes PREFIX.>).
    #[arg(long, env = "TRUCE_NATS_SUBJECT_PREFIX", default_value = "truce.log")]
    pub nats_subject_prefix: String,
    /// Copies of each message when the stream is created in a cluster.
    #[arg(long, env = "TRUCE_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,
}

impl JetStreamArgs {
    /// The settings for the servers at `url`.
    pub fn settings(&self, url: &str) -> JetStreamSettings {
        JetStreamSettings {
            url: url.to_owned(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            replicas: self.nats_replicas,
        }
    }
}

/// True when `url` names NATS servers rather than a gRPC service or the
/// embedded log.
pub fn is_nats_url(url: &str) -> bool {
    url.starts_with("nats://") || url.starts_with("tls://")
}

impl JetStreamSettings {
    /// The settings for `url` with the default stream, subjects and one
    /// replica.
    pub fn new(url: impl Into<String>) -> JetStreamSettings {
        JetStreamSettings {
            url: url.into(),
            stream: "TRUCE".into(),
            subject_prefix: "truce.log".into(),
            replicas: 1,
        }
    }
}

/// A connection to the log's stream. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    shared: std::sync::Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connection: Connection,
    /// The stream, for readers: creating a consumer waits on the
    /// cluster's meta leader, and is given the client's patience.
    stream: jetstream::stream::Stream,
    /// Publishes, acknowledged within [`REQUEST_TIMEOUT`].
    publisher: jetstream::Context,
    /// The stream's leader, asked for single messages and the stream's
    /// state within [`REQUEST_TIMEOUT`].
    leader: jetstream::stream::Stream<()>,
    settings: JetStreamSettings,
    incarnation: Incarnation,
}

/// How long opening the stream waits out a JetStream that does not answer
/// yet (a server still starting, a cluster still electing its leader, a
/// slow disk) before giving up.
pub(crate) const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// Why the stream could not be opened.
enum Opening {
    /// JetStream timed out, had no responders or was temporarily
    /// unavailable: worth another try.
    Busy(String),
    /// Anything else: trying again would get the same answer.
    Refused(String),
}

/// Gets or creates the stream, and reads its info.
async fn open_stream(
    context: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<(jetstream::stream::Stream, jetstream::stream::Info), Opening> {
    use async_nats::jetstream::context::{CreateStreamErrorKind, RequestErrorKind};
    let mut stream = context.get_or_create_stream(config).await.map_err(|error| {
        let busy = match error.kind() {
            CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => true,
            CreateStreamErrorKind::JetStream(error) => error.code() == 503,
            _ => false,
        };
        if busy {
            Opening::Busy(error.to_string())
        } else {
            Opening::Refused(error.to_string())
        }
    })?;
    let info = stream.info().await.map_err(|error| match error.kind() {
        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders => Opening::Busy(error.to_string()),
        _ => Opening::Refused(error.to_string()),
    })?;
    let info = info.clone();
    Ok((stream, info))
}

fn unavailable(what: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(what.to_string())
}

/// The SHA-256 of an idempotency key, hex: a valid subject token whatever
/// the key holds.
fn key_token(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl JetStreamLog {
    /// Connects, creating the stream on first use (file storage, the
    /// configured replicas, no limits, delete and purge denied) or checking
    /// that the existing one is append-only.
    pub async fn connect(settings: JetStreamSettings) -> Result<JetStreamLog, LogError> {
        let connection = Connection::open(settings.url.split(',').map(str::trim).collect())
            .await
            .map_err(|e| unavailable(format!("connecting to NATS at {}: {e}", settings.url)))?;
        let client = connection.client().clone();
        let context = jetstream::new(client.clone());
        let publisher = jetstream::context::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .ack_timeout(REQUEST_TIMEOUT)
            .build(client);
        let leader = publisher
            .get_stream_no_info(&settings.stream)
            .await
            .map_err(|e| unavailable(format!("naming stream {}: {e}", settings.stream)))?;
        let config = jetstream::stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            storage: StorageType::File,
            num_replicas: settings.replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
        let (stream, info) = loop {
            match open_stream(&context, config.clone()).await {
                Ok(opened) => break opened,
                Err(Opening::Busy(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(stream = %settings.stream, %why, "JetStream is not answering yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(Opening::Busy(why) | Opening::Refused(why)) => {
                    return Err(unavailable(format!("opening stream {}: {why}", settings.stream)));
                }
            }
        };
        if !info.config.deny_delete || !info.config.deny_purge {
            return Err(LogError::Corrupt {
                position: 0,
                what: format!(
                    "stream {} allows deleting or purging messages; truce needs it append-only",
                    settings.stream
                ),
            });
        }
        // A stream deleted and created anew is another log. Hex, like the
        // embedded log's, so tokens look alike whatever the log.
        let identity = format!("{}\n{}", settings.stream, info.created.unix_timestamp_nanos());
        let incarnation = Incarnation::from_text(&hex::encode(&Sha256::digest(identity.as_bytes())[..8]));
        Ok(JetStreamLog {
            shared: std::sync::Arc::new(Shared {
                connection,
                stream,
                publisher,
                leader,
                settings,
                incarnation,
            }),
        })
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.shared.connection.is_connected()
    }

    /// Which incarnation of the log this stream is.
    pub fn incarnation(&self) -> &Incarnation {
        &self.shared.incarnation
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &JetStreamSettings {
        &self.shared.settings
    }

    /// The last position on the server (0 when empty), asked of the
    /// stream's leader within [`REQUEST_TIMEOUT`] (the write path's).
    pub async fn last_position(&self) -> Result<u64, LogError> {
        self.last_position_within(REQUEST_TIMEOUT).await
    }

    /// As [`Self::last_position`], waiting up to `within` (a reader's own
    /// patience: one slow answer is no reason to drop a working consumer).
    pub async fn last_position_within(&self, within: Duration) -> Result<u64, LogError> {
        let what = "reading stream info";
        let info = self
            .shared
            .connection
            .request_within(what, self.shared.leader.get_info(), within)
            .await?
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        Ok(info.state.last_sequence)
    }

    /// The entry at `position`, if there is one.
    pub async fn get(&self, position: u64) -> Result<Option<LogEntry>, LogError> {
        let what = format!("reading position {position}");
        let read = self.shared.leader.get_raw_message(position);
        match self.shared.connection.request(&what, read).await? {
            Ok(message) => entry_of(message.sequence, &message.headers, message.payload.to_vec()).map(Some),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(format!("{what}: {error}"))),
        }
    }

    /// The head: the last position and its hash.
    pub async fn head(&self) -> Result<Head, LogError> {
        let last = self.last_position().await?;
        if last == 0 {
            return Ok(Head::default());
        }
        let entry = self.get(last).await?.ok_or_else(|| LogError::Corrupt {
            position: last,
            what: "the stream's last message is missing".into(),
        })?;
        Ok(Head {
            position: last,
            hash: entry.hash,
        })
    }

    /// The position of the entry recorded with idempotency key `key`.
    pub async fn find_key(&self, key: &str) -> Result<Option<u64>, LogError> {
        let what = "looking up an idempotency key";
        let subject = self.key_subject(key);
        let read = self.shared.leader.get_last_raw_message_by_subject(&subject);
        match self.shared.connection.request(what, read).await? {
            Ok(message) => Ok(Some(message.sequence)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(format!("{what}: {error}"))),
        }
    }

    fn key_subject(&self, key: &str) -> String {
        format!("{}.k.{}", self.shared.settings.subject_prefix, key_token(key))
    }

    /// Appends `entries` after `previous` (which must be the server's
    /// head), returning once the entries it sent are stored on the
    /// stream's replicas, with the head after them: every entry, or the
    /// first few once [`PUBLISH_BUDGET`] is spent (the caller decides the
    /// rest again). Each entry is published only after the one before it
    /// is acknowledged: the server checks an entry's expected last
    /// sequence, not whose entry sits there, so an entry sent while the
    /// one before it could still be refused might land on another writer's
    /// entry and break the chain. If another writer appended first, the
    /// server refuses the first stale entry and nothing after it is sent:
    /// `LogError::Conflict` says how many were stored. An entry whose
    /// acknowledgement does not come within [`REQUEST_TIMEOUT`], or whose
    /// connection is lost first, is sent again until the server says
    /// whether it is stored; if it has not said within [`RESEND_WITHIN`],
    /// `LogError::Uncertain` says how many before it were. No stream
    /// leader to take the first entry: `LogError::Unavailable`, nothing
    /// stored.
    pub async fn append(&self, previous: Head, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.shared.connection.connected().await?;
        let began = tokio::time::Instant::now();
        let mut stored = previous;
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 && began.elapsed() >= PUBLISH_BUDGET {
                break;
            }
            let position = entry.position;
            if position != stored.position + 1 {
                return Err(LogError::OutOfOrder {
                    expected: stored.position + 1,
                    got: position,
                });
            }
            let outgoing = self.outgoing(stored, entry);
            match self.publish(&outgoing).await {
                Heard::Stored => {
                    stored = Head {
                        position,
                        hash: outgoing.hash,
                    }
                }
                Heard::Refused => {
                    tracing::debug!(position, "append refused");
                    return Err(LogError::Conflict {
                        appended: i,
                        head: stored,
                    });
                }
                Heard::NoLeader if i == 0 => {
                    return Err(unavailable(format!(
                        "publishing position {position}: no stream leader answered"
                    )));
                }
                // Not taken, nothing after it sent: the rest is decided
                // again.
                Heard::NoLeader => break,
                Heard::Misplaced(sequence) => {
                    return Err(LogError::Corrupt {
                        position,
                        what: format!("the server stored it at {sequence} (the stream is written by something else?)"),
                    });
                }
                Heard::Unsettled(why) => return Err(LogError::Uncertain { appended: i, why }),
            }
        }
        Ok(stored)
    }

    /// The message that stores `entry` after `previous`.
    fn outgoing(&self, previous: Head, entry: &NewEntry) -> Outgoing {
        let hash = chain_hash(&previous.hash, &entry.payload);
        let mut headers = HeaderMap::new();
        headers.insert(HASH_HEADER, hex::encode(hash).as_str());
        headers.insert("Nats-Expected-Stream", self.shared.settings.stream.as_str());
        headers.insert("Nats-Expected-Last-Sequence", previous.position.to_string().as_str());
        // A message sent again (its acknowledgement lost) is the same
        // message: the server answers it as a duplicate while it holds the
        // first.
        headers.insert("Nats-Msg-Id", hex::encode(hash).as_str());
        let subject = match &entry.idempotency_key {
            Some(key) => {
                headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                self.key_subject(key)
            }
            None => format!("{}.e", self.shared.settings.subject_prefix),
        };
        Outgoing {
            subject,
            headers,
            payload: entry.payload.clone(),
            position: entry.position,
            hash,
        }
    }

    /// Publishes `outgoing` until the server says whether it is stored, or
    /// [`RESEND_WITHIN`] has passed.
    async fn publish(&self, outgoing: &Outgoing) -> Heard {
        let deadline = tokio::time::Instant::now() + RESEND_WITHIN;
        let mut sent = false;
        loop {
            let heard = self.send(outgoing).await;
            let why = match heard {
                // Not taken, and no earlier copy may have been.
                Heard::NoLeader if !sent => return heard,
                Heard::NoLeader => "no stream leader answered a second send".to_owned(),
                Heard::Unsettled(why) => why,
                settled => return settled,
            };
            sent = true;
            if tokio::time::Instant::now() + RESEND_PAUSE >= deadline {
                return Heard::Unsettled(why);
            }
            tracing::debug!(position = outgoing.position, %why, "no answer for an entry; sending it again");
            tokio::time::sleep(RESEND_PAUSE).await;
        }
    }

    /// Publishes `outgoing` once and waits for its acknowledgement.
    async fn send(&self, outgoing: &Outgoing) -> Heard {
        let what = format!("publishing position {}", outgoing.position);
        let publish = async {
            self.shared
                .publisher
                .publish_with_headers(
                    outgoing.subject.clone(),
                    outgoing.headers.clone(),
                    outgoing.payload.clone().into(),
                )
                .await?
                .await
        };
        match self.shared.connection.request(&what, publish).await {
            Ok(Ok(ack)) => heard_of_ack(&ack, outgoing.position, &self.shared.settings.stream),
            Ok(Err(error)) => heard_of_refusal(&error, &what),
            Err(error) => Heard::Unsettled(error.to_string()),
        }
    }

    /// Entries from `from` through `until`, in order, with their hashes as
    /// stored (the caller checks the chain).
    pub async fn read(&self, from: u64, until: u64) -> Result<Vec<LogEntry>, LogError> {
        if until < from {
            return Ok(Vec::new());
        }
        if until - from >= SHORT_READ {
            return self.read_through_consumer(from, until).await;
        }
        let mut entries = if self.shared.connection.serves_batches() {
            self.get_batches(from, until).await
        } else {
            Vec::new()
        };
        let next = entries.last().map_or(from, |e| e.position + 1);
        if next <= until {
            entries.extend(self.get_each(next, until).await?);
        }
        Ok(entries)
    }

    /// Entries from `from` through `until` through an ordered consumer.
    async fn read_through_consumer(&self, from: u64, until: u64) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = Vec::new();
        let mut stream = std::pin::pin!(self.follow(from).await?);
        while let Some(entry) = stream.next().await {
            let entry = entry?;
            let last = entry.position >= until;
            entries.push(entry);
            if last {
                break;
            }
        }
        Ok(entries)
    }

    /// As many of the entries from `from` through `until` as the stream's
    /// servers give in direct gets of [`DIRECT_BATCH`], in order from
    /// `from`: all of them, or fewer (a server behind the leader, one that
    /// does not answer); the caller asks the leader for the rest.
    async fn get_batches(&self, from: u64, until: u64) -> Vec<LogEntry> {
        let mut entries: Vec<LogEntry> = Vec::new();
        let mut next = from;
        while next <= until {
            let count = (until - next + 1).min(DIRECT_BATCH);
            let what = format!("reading positions {next} to {}", next + count - 1);
            let batch = match self.shared.connection.request(&what, self.get_batch(next, count)).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) | Err(error) => {
                    tracing::debug!(%error, "a batched read failed; reading from the leader");
                    break;
                }
            };
            let contiguous = batch
                .iter()
                .zip(next..)
                .take_while(|(entry, position)| entry.position == *position)
                .count();
            let full = contiguous as u64 == count;
            entries.extend(batch.into_iter().take(contiguous));
            next += contiguous as u64;
            if !full {
                break;
            }
        }
        entries
    }

    /// Up to `count` entries from `from`, in one direct get (ADR-31's
    /// batch), until the server's end-of-batch.
    async fn get_batch(&self, from: u64, count: u64) -> Result<Vec<LogEntry>, LogError> {
        let client = self.shared.connection.client();
        let failed = |e: &dyn std::fmt::Display| unavailable(format!("reading from position {from}: {e}"));
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| failed(&e))?;
        let subject = format!("$JS.API.DIRECT.GET.{}", self.shared.settings.stream);
        let request = format!(r#"{{"seq":{from},"batch":{count}}}"#);
        client
            .publish_with_reply(subject, inbox, request.into())
            .await
            .map_err(|e| failed(&e))?;
        let mut entries = Vec::new();
        while let Some(message) = replies.next().await {
            match message.status.map(|status| status.as_u16()) {
                None | Some(200) => {
                    let headers = message.headers.unwrap_or_default();
                    let position = headers
                        .get("Nats-Sequence")
                        .and_then(|sequence| sequence.as_str().parse().ok())
                        .ok_or_else(|| failed(&"a message without its sequence"))?;
                    entries.push(entry_of(position, &headers, message.payload.to_vec())?);
                    if entries.len() as u64 == count {
                        break;
                    }
                }
                // The end of the batch, or nothing from `from` on.
                Some(204 | 404) => break,
                Some(status) => {
                    return Err(failed(&format!(
                        "status {status} {}",
                        message.description.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(entries)
    }

    /// Entries `from` through `until`, asked of the stream's leader one by
    /// one, [`GETS_IN_FLIGHT`] at a time.
    async fn get_each(&self, from: u64, until: u64) -> Result<Vec<LogEntry>, LogError> {
        all_at_once(from..=until, |position| {
            let log = self.clone();
            async move {
                log.get(position).await?.ok_or_else(|| LogError::Corrupt {
                    position,
                    what: "missing from the stream".into(),
                })
            }
        })
        .await
    }

    /// The positions recorded with `keys`, in their order, looked up
    /// [`GETS_IN_FLIGHT`] at a time.
    pub async fn find_keys(&self, keys: &[String]) -> Result<Vec<Option<u64>>, LogError> {
        all_at_once(keys.iter().cloned(), |key| {
            let log = self.clone();
            async move { log.find_key(&key).await }
        })
        .await
    }

    /// Every entry from `from` on, in order, then each new one as it is
    /// appended, through an ordered consumer (recreated by the client on a
    /// gap or a reconnect). Ends with an error when the connection is lost
    /// for good.
    pub async fn follow(&self, from: u64) -> Result<impl Stream<Item = Result<LogEntry, LogError>> + use<>, LogError> {
        let consumer = self
            .shared
            .stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("creating a reader: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(format!("starting a reader: {e}")))?;
        Ok(messages.map(|message| {
            let message = message.map_err(|e| unavailable(format!("reading the stream: {e}")))?;
            let sequence = message
                .info()
                .map_err(|e| unavailable(format!("a message without its stream sequence: {e}")))?
                .stream_sequence;
            let headers = message.headers.clone().unwrap_or_default();
            entry_of(sequence, &headers, message.payload.to_vec())
        }))
    }
}

/// The answers of `ask` for each of `items`, in their order, with
/// [`GETS_IN_FLIGHT`] questions in flight at once; the first error ends it.
async fn all_at_once<I, T, Fut>(items: impl IntoIterator<Item = I>, ask: impl Fn(I) -> Fut) -> Result<Vec<T>, LogError>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = Result<T, LogError>> + Send + 'static,
{
    let mut asking = tokio::task::JoinSet::new();
    let mut answers = Vec::new();
    let mut take = |done: Result<(usize, Result<T, LogError>), tokio::task::JoinError>| {
        let (i, answer) = done.map_err(|e| unavailable(format!("reading the stream: {e}")))?;
        answers.push((i, answer?));
        Ok::<(), LogError>(())
    };
    for (i, item) in items.into_iter().enumerate() {
        if asking.len() >= GETS_IN_FLIGHT
            && let Some(done) = asking.join_next().await
        {
            take(done)?;
        }
        let question = ask(item);
        asking.spawn(async move { (i, question.await) });
    }
    while let Some(done) = asking.join_next().await {
        take(done)?;
    }
    answers.sort_by_key(|(i, _)| *i);
    Ok(answers.into_iter().map(|(_, answer)| answer).collect())
}

/// One entry's message.
struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: Vec<u8>,
    position: u64,
    /// Its chain hash, also its message id.
    hash: Hash,
}

/// What the stream said of one entry sent.
#[derive(Debug, PartialEq)]
enum Heard {
    /// Stored at its position (now, or by an earlier send: a duplicate).
    Stored,
    /// Refused: the stream's last sequence is not the one it expects, so
    /// it is not stored and never will be (a copy already stored would be
    /// answered as a duplicate first).
    Refused,
    /// No server took it: the stream has no leader.
    NoLeader,
    /// Stored at another position.
    Misplaced(u64),
    /// No answer that settles it: none in time, the connection lost, an
    /// earlier copy still in process, an acknowledgement from another
    /// stream (a responder that is not the stream).
    Unsettled(String),
}

/// What an acknowledgement of an entry sent for `position` says, coming
/// from `stream`'s leader or not.
fn heard_of_ack(ack: &PublishAck, position: u64, stream: &str) -> Heard {
    if ack.stream != stream {
        Heard::Unsettled(format!("acknowledged by stream {:?}, not {stream:?}", ack.stream))
    } else if ack.sequence == position {
        Heard::Stored
    } else {
        Heard::Misplaced(ack.sequence)
    }
}

/// What an error answering the publish of `what` says.
fn heard_of_refusal(error: &PublishError, what: &str) -> Heard {
    let code = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    match error.kind() {
        PublishErrorKind::WrongLastSequence => Heard::Refused,
        PublishErrorKind::StreamNotFound => Heard::NoLeader,
        // Another entry for the same subject in process (an idempotency
        // key being stored by another writer).
        _ if code == Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT) => Heard::Refused,
        _ => Heard::Unsettled(format!("{what}: {error}")),
    }
}

/// An entry from a stored message, with the hash its header claims.
fn entry_of(position: u64, headers: &HeaderMap, payload: Vec<u8>) -> Result<LogEntry, LogError> {
    let hash: Hash = headers
        .get(HASH_HEADER)
        .and_then(|value| hex::decode(value.as_str()).ok())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| LogError::Corrupt {
            position,
            what: format!("no {HASH_HEADER} header of 32 hex bytes"),
        })?;
    Ok(LogEntry {
        position,
        hash,
        payload,
    })
}

/// Checks that `entries` continue the chain after `previous`.
pub fn check_chain(previous: &Head, entries: &[LogEntry]) -> Result<Head, LogError> {
    let mut head = *previous;
    for entry in entries {
        if entry.position != head.position + 1 {
            return Err(LogError::Corrupt {
                position: head.position + 1,
                what: format!("missing; the next entry is at {}", entry.position),
            });
        }
        if chain_hash(&head.hash, &entry.payload) != entry.hash {
            return Err(LogError::Corrupt {
                position: entry.position,
                what: "the hash does not continue the chain".into(),
            });
        }
        head = Head {
            position: entry.position,
            hash: entry.hash,
        };
    }
    Ok(head)
}

/// The head before any entry.
pub const EMPTY: Head = Head {
    position: 0,
    hash: GENESIS_HASH,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(stream: &str, sequence: u64, duplicate: bool) -> PublishAck {
        PublishAck {
            stream: stream.to_owned(),
            sequence,
            duplicate,
            ..PublishAck::default()
        }
    }

    #[test]
    fn an_acknowledgement_settles_an_entry_only_from_its_stream_and_at_its_position() {
        assert_eq!(heard_of_ack(&ack("TRUCE", 7, false), 7, "TRUCE"), Heard::Stored);
        // A second send of a stored entry is answered as a duplicate of it.
        assert_eq!(heard_of_ack(&ack("TRUCE", 7, true), 7, "TRUCE"), Heard::Stored);
        assert_eq!(heard_of_ack(&ack("TRUCE", 9, false), 7, "TRUCE"), Heard::Misplaced(9));
        // Anyone may answer on the reply subject: only the stream settles.
        assert!(matches!(
            heard_of_ack(&ack("OTHER", 7, false), 7, "TRUCE"),
            Heard::Unsettled(_)
        ));
    }

    #[test]
    fn a_refusal_is_told_from_an_answer_that_settles_nothing() {
        let what = "publishing position 7";
        let refused = PublishError::new(PublishErrorKind::WrongLastSequence);
        assert_eq!(heard_of_refusal(&refused, what), Heard::Refused);
        let no_leader = PublishError::new(PublishErrorKind::StreamNotFound);
        assert_eq!(heard_of_refusal(&no_leader, what), Heard::NoLeader);
        let late = PublishError::new(PublishErrorKind::TimedOut);
        assert!(matches!(heard_of_refusal(&late, what), Heard::Unsettled(_)));
    }
}
