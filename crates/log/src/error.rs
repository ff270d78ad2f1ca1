use std::path::PathBuf;

/// What can go wrong with the log. Each message includes its cause, so
/// none is also given as a `source` (it would be printed twice).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// SQLite failed: disk full, I/O error, corruption.
    #[error("log storage: {0}")]
    Storage(rusqlite::Error),
    /// A file operation failed.
    #[error("log file: {0}")]
    Io(std::io::Error),
    /// Another process holds the log open for writing.
    #[error("the log at {0} is in use by another process")]
    Locked(PathBuf),
    /// What is stored contradicts itself (a gap or a broken hash link).
    #[error("log corrupt at position {position}: {what}")]
    Corrupt {
        /// Where.
        position: u64,
        /// What is wrong.
        what: String,
    },
    /// An idempotency key was given for a second entry: the writer must look
    /// keys up before appending.
    #[error("the idempotency key {0:?} is already stored")]
    DuplicateKey(String),
    /// A replica belongs to another incarnation of the log.
    #[error("the replica is of log incarnation {found}, not {expected}")]
    OtherIncarnation {
        /// What the replica holds.
        found: String,
        /// What the upstream is.
        expected: String,
    },
    /// The shared log cannot be reached: retry later.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// Another writer appended first: only the first `appended` entries of
    /// the call were stored, and the log's head had moved on. Catch up and
    /// decide again.
    #[error("another writer appended first ({appended} entries stored)")]
    Conflict {
        /// Entries of the call that were stored.
        appended: usize,
        /// The head after them.
        head: crate::Head,
    },
    /// Appending failed part way: at least the first `appended` entries were
    /// stored; whether later ones were is unknown until the log is read.
    #[error("append interrupted after {appended} entries: {why}")]
    Uncertain {
        /// Entries known to be stored.
        appended: usize,
        /// Why.
        why: String,
    },
    /// A writer bug: entries must be appended at the next position.
    #[error("append at position {got}, expected {expected}")]
    OutOfOrder {
        /// The next free position.
        expected: u64,
        /// The position given.
        got: u64,
    },
}

impl From<rusqlite::Error> for LogError {
    fn from(error: rusqlite::Error) -> Self {
        LogError::Storage(error)
    }
}

impl From<std::io::Error> for LogError {
    fn from(error: std::io::Error) -> Self {
        LogError::Io(error)
    }
}
