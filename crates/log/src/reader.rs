//! Readers: any number, each query on a pooled connection of its own, so
//! reading never waits for the writer's fsync.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::watch;

use crate::{Head, Incarnation, LogEntry, LogError, Position, store::connect, store::to_hash};

/// Most connections kept idle in the pool.
const POOL_SIZE: usize = 8;

/// Reads the log and learns of new entries.
#[derive(Debug, Clone)]
pub struct LogReader {
    inner: Arc<Inner>,
    head: watch::Receiver<Head>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    incarnation: Incarnation,
    // A std Mutex is right here: it is held only to take or return a
    // connection, never across an await or a query.
    idle: Mutex<Vec<Connection>>,
}

impl LogReader {
    /// A reader of the SQLite log at `path`, told of new durable entries
    /// through `head`.
    pub fn new(path: &Path, incarnation: Incarnation, head: watch::Receiver<Head>) -> LogReader {
        LogReader {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                incarnation,
                idle: Mutex::new(Vec::new()),
            }),
            head,
        }
    }

    /// A reader of the log in the data directory `dir`, which another
    /// process may be writing, or none. It takes no lock and checks nothing
    /// on opening, so that a damaged log can still be read and examined; its
    /// head is the last entry stored when opened.
    pub fn open_existing(dir: &Path) -> Result<LogReader, LogError> {
        let path = dir.join("log.sqlite3");
        if !path.is_file() {
            return Err(LogError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} holds no log", dir.display()),
            )));
        }
        let conn = connect(&path)?;
        let incarnation: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'incarnation'", [], |r| r.get(0))?;
        let last: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT position, hash FROM entries ORDER BY position DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let head = match last {
            None => Head::default(),
            Some((position, hash)) => Head {
                position: position as u64,
                hash: to_hash(position as u64, &hash)?,
            },
        };
        // The sender is dropped: this head never moves.
        let (_, head) = watch::channel(head);
        Ok(LogReader::new(&path, Incarnation(incarnation), head))
    }

    /// Which incarnation the log is.
    pub fn incarnation(&self) -> &Incarnation {
        &self.inner.incarnation
    }

    /// The last durable entry.
    pub fn head(&self) -> Head {
        *self.head.borrow()
    }

    /// A receiver that changes whenever entries become durable.
    pub fn watch_head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    /// Up to `max` entries from `from` (inclusive), in order, none past
    /// [`Self::head`]: the writer may have committed entries it has not yet
    /// made durable, and those are not read.
    pub async fn read(&self, from: Position, max: usize) -> Result<Vec<LogEntry>, LogError> {
        self.read_within(from, max, usize::MAX).await
    }

    /// As [`Self::read`], stopping once the entries read hold `max_bytes`
    /// of payload (at least one entry is read when there is one): what a
    /// reader on behalf of a client holds in memory is bounded in bytes,
    /// whatever the size of the entries.
    pub async fn read_within(&self, from: Position, max: usize, max_bytes: usize) -> Result<Vec<LogEntry>, LogError> {
        let until = self.head().position;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.read(from.max(1), until, max, max_bytes))
            .await
            .map_err(|e| LogError::Io(std::io::Error::other(e)))?
    }
}

impl Inner {
    fn read(&self, from: Position, until: Position, max: usize, max_bytes: usize) -> Result<Vec<LogEntry>, LogError> {
        let conn = match self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let entries = read_range(&conn, from, until, max, max_bytes);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
        entries
    }
}

/// Up to `max` entries from `from` to `until`, both inclusive, stopping
/// after the entry that brings the payloads read to `max_bytes`.
pub(crate) fn read_range(
    conn: &Connection,
    from: Position,
    until: Position,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<LogEntry>, LogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT position, hash, payload FROM entries WHERE position >= ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
    )?;
    let until = i64::try_from(until).unwrap_or(i64::MAX);
    let rows = stmt.query_map([from as i64, until, max as i64], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut entries = Vec::with_capacity(max.min(1024));
    let mut bytes = 0usize;
    for (expected, row) in (from..).zip(rows) {
        if bytes >= max_bytes {
            break;
        }
        let (position, hash, payload) = row?;
        if position != expected {
            return Err(LogError::Corrupt {
                position: expected,
                what: format!("missing; the next stored entry is at {position}"),
            });
        }
        bytes += payload.len();
        entries.push(LogEntry {
            position,
            hash: to_hash(position, &hash)?,
            payload,
        });
    }
    Ok(entries)
}
