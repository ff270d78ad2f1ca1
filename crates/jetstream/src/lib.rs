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
        self,
        consumer::{DeliverPolicy, pull::OrderedConfig},
        context::PublishErrorKind,
        stream::{LastRawMessageErrorKind, StorageType},
    },
};
use sha2::{Digest, Sha256};
use tokio_stream::{Stream, StreamExt};
use truce_log::{GENESIS_HASH, Hash, Head, Incarnation, LogEntry, LogError, NewEntry, chain_hash};

pub use blocking::BlockingJetStream;
use connection::Connection;
pub use connection::{ANSWER_WITHIN, REQUEST_TIMEOUT};

/// Reads shorter than this ask the stream's leader for each entry,
/// [`GETS_IN_FLIGHT`] at a time: what other writers appended meanwhile is
/// read back within a few [`REQUEST_TIMEOUT`]s, with no consumer to create
/// (which waits on the cluster's meta leader, itself re-elected when its
/// node dies). Longer reads (rebuilding the state at start) go through a
/// consumer.
const SHORT_READ: u64 = 2048;

/// Single-entry reads and key lookups in flight at once.
const GETS_IN_FLIGHT: usize = 64;

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

    /// The last position on the server (0 when empty).
    pub async fn last_position(&self) -> Result<u64, LogError> {
        let what = "reading stream info";
        let info = self
            .shared
            .connection
            .request(what, self.shared.leader.get_info())
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
    /// head), returning once every entry is stored on the stream's
    /// replicas. Each entry is published only after the one before it is
    /// acknowledged: the server checks an entry's expected last sequence,
    /// not whose entry sits there, so an entry sent while the one before
    /// it could still be refused might land on another writer's entry and
    /// break the chain. If another writer appended first, the server
    /// refuses the first stale entry and nothing after it is sent:
    /// `LogError::Conflict` says how many were stored. An entry whose
    /// acknowledgement does not come within [`REQUEST_TIMEOUT`], or whose
    /// connection is lost first, may or may not be stored:
    /// `LogError::Uncertain` says how many before it were.
    pub async fn append(&self, previous: Head, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.shared.connection.connected().await?;
        let mut stored = previous;
        for (i, entry) in entries.iter().enumerate() {
            let position = entry.position;
            if position != stored.position + 1 {
                return Err(LogError::OutOfOrder {
                    expected: stored.position + 1,
                    got: position,
                });
            }
            let hash = chain_hash(&stored.hash, &entry.payload);
            let mut headers = HeaderMap::new();
            headers.insert(HASH_HEADER, hex::encode(hash).as_str());
            headers.insert("Nats-Expected-Last-Sequence", stored.position.to_string().as_str());
            // A republished entry (after a lost acknowledgement) is the same
            // message: the server answers it as a duplicate.
            headers.insert("Nats-Msg-Id", hex::encode(hash).as_str());
            let subject = match &entry.idempotency_key {
                Some(key) => {
                    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                    self.key_subject(key)
                }
                None => format!("{}.e", self.shared.settings.subject_prefix),
            };
            let publish = async {
                self.shared
                    .publisher
                    .publish_with_headers(subject, headers, entry.payload.clone().into())
                    .await?
                    .await
            };
            let what = format!("publishing position {position}");
            let ack = match self.shared.connection.request(&what, publish).await {
                Ok(ack) => ack,
                Err(error) => {
                    return Err(LogError::Uncertain {
                        appended: i,
                        why: error.to_string(),
                    });
                }
            };
            match ack {
                Ok(ack) if ack.sequence == position => stored = Head { position, hash },
                Ok(ack) => {
                    return Err(LogError::Corrupt {
                        position,
                        what: format!(
                            "the server stored it at {} (the stream is written by something else?)",
                            ack.sequence
                        ),
                    });
                }
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    tracing::debug!(%error, position, "append refused");
                    return Err(LogError::Conflict {
                        appended: i,
                        head: stored,
                    });
                }
                // No server took it: the stream has no leader (an election).
                Err(error) if error.kind() == PublishErrorKind::StreamNotFound && i == 0 => {
                    return Err(unavailable(format!("{what}: no stream leader answered ({error})")));
                }
                Err(error) => {
                    return Err(LogError::Uncertain {
                        appended: i,
                        why: format!("{what}: {error}"),
                    });
                }
            }
        }
        Ok(stored)
    }

    /// Entries from `from` through `until`, in order, with their hashes as
    /// stored (the caller checks the chain).
    pub async fn read(&self, from: u64, until: u64) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = Vec::new();
        if until < from {
            return Ok(entries);
        }
        if until - from < SHORT_READ {
            return self.get_each(from, until).await;
        }
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
