//! The event log: every change to truce's record, in order.
//!
//! Entries are opaque bytes (the wire crate defines their encoding) at
//! gapless positions from 1, each chained to the one before by SHA-256, so a
//! rewrite of history is detectable. The store is SQLite in WAL mode with
//! `synchronous=FULL`: a batch is one transaction and one fsync, which is
//! how the ingest service shares one sync among many submitters (group
//! commit). The writer may hand the fsync to another thread
//! ([`LogStore::detach_sync`]), so that the next batch is decided and
//! committed while the disk takes the last. [`LogStore`] is the single
//! writer; [`LogReader`] serves any number of readers and followers from
//! their own connections, never past the durable head, and [`follow`] turns
//! it into a stream that replays from a position and then continues live.

mod checkpoint;
mod committed;
mod error;
mod follow;
mod keys;
mod reader;
mod store;

pub use checkpoint::{Broken, ChainVerifier, Checkpoint, CheckpointSigner};
pub use committed::Committed;
pub use error::LogError;
pub use follow::{CLIENT_PAGE_BYTES, Following, ReadAhead, follow};
pub use reader::LogReader;
pub use store::{LogStore, NewEntry, WalSync, create_private_dir};

use std::fmt;

/// A position in the log: gapless, from 1; 0 is "before the first entry".
pub type Position = u64;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash before the first entry.
pub const GENESIS_HASH: Hash = [0; 32];

/// One durable entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Where it is.
    pub position: Position,
    /// SHA-256 over the previous entry's hash and `payload`.
    pub hash: Hash,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// The last durable entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Its position; 0 when the log is empty.
    pub position: Position,
    /// Its hash; [`GENESIS_HASH`] when empty.
    pub hash: Hash,
}

/// One incarnation of a log: a log deleted and created anew gets another,
/// so positions remembered from the old one are never mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Incarnation(String);

impl Incarnation {
    fn generate() -> Result<Incarnation, LogError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
        Ok(Incarnation(hex::encode(bytes)))
    }

    /// From its text form, as another service reported it.
    pub fn from_text(text: &str) -> Incarnation {
        Incarnation(text.to_owned())
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The log as the sequencer, its one writer in a process, uses it: the
/// embedded store, or a log shared with other writers (JetStream).
pub trait SequencedLog: Send + 'static {
    /// The last entry this writer knows of.
    fn head(&self) -> Head;
    /// The position recorded for an idempotency key.
    fn find_key(&self, key: &str) -> Result<Option<Position>, LogError>;
    /// The positions recorded for `keys`, in their order. A log over the
    /// network asks for all of them at once: a batch decided quickly is
    /// less likely to be overtaken by another writer.
    fn find_keys(&self, keys: &[String]) -> Result<Vec<Option<Position>>, LogError> {
        keys.iter().map(|key| self.find_key(key)).collect()
    }
    /// The bytes stored at `position`.
    fn payload(&self, position: Position) -> Result<Option<Vec<u8>>, LogError>;
    /// Up to `max` entries from `from`, no further than [`Self::head`].
    fn read(&self, from: Position, max: usize) -> Result<Vec<LogEntry>, LogError>;
    /// Appends entries at the positions after the head, returning the head
    /// after them. A shared log may store only the first few (its time for
    /// one append spent: the head says how many; the caller decides the
    /// rest again), and may answer [`LogError::Conflict`],
    /// [`LogError::Uncertain`], or [`LogError::Unavailable`] when nothing
    /// was sent.
    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError>;
    /// Reads what other writers appended after the head, checks that it
    /// continues the chain, and moves the head to the end.
    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError>;
    /// Moves the fsync out of [`Self::append`] to the returned handle, for
    /// another thread to call; `None` for a log whose appends stay durable
    /// when they return.
    fn detach_sync(&mut self) -> Result<Option<WalSync>, LogError> {
        Ok(None)
    }
    /// True when other writers may append too, so an append can conflict.
    fn is_shared(&self) -> bool {
        false
    }
    /// How long a caller waits for its write with no batch completing in
    /// time (the log failing or slow, or other writers always first): past
    /// it, it is told the log is unavailable (the write may or may not be
    /// recorded). `None`: until the log answers, as a local disk does.
    fn answer_within(&self) -> Option<std::time::Duration> {
        None
    }
}

impl SequencedLog for LogStore {
    fn head(&self) -> Head {
        LogStore::head(self)
    }

    fn find_key(&self, key: &str) -> Result<Option<Position>, LogError> {
        LogStore::find_key(self, key)
    }

    fn payload(&self, position: Position) -> Result<Option<Vec<u8>>, LogError> {
        LogStore::payload(self, position)
    }

    fn read(&self, from: Position, max: usize) -> Result<Vec<LogEntry>, LogError> {
        LogStore::read(self, from, max)
    }

    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        LogStore::append(self, entries)
    }

    fn detach_sync(&mut self) -> Result<Option<WalSync>, LogError> {
        LogStore::detach_sync(self).map(Some)
    }

    /// The embedded log has no other writer.
    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError> {
        Ok(Vec::new())
    }
}

/// The chain link: SHA-256 over the previous hash and the payload.
pub fn chain_hash(previous: &Hash, payload: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(payload);
    hasher.finalize().into()
}
