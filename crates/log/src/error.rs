use std::path::PathBuf;

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// SQLite failed: disk full, I/O error, corruption.
    #[error("log storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("log file: {0}")]
    Io(#[from] std::io::Error),
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
    /// A replica belongs to another incarnation of the log.
    #[error("the replica is of log incarnation {found}, not {expected}")]
    OtherIncarnation {
        /// What the replica holds.
        found: String,
        /// What the upstream is.
        expected: String,
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
