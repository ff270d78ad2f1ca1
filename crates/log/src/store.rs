//! The single writer.

use std::{
    collections::HashMap,
    fs::{self, File},
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{GENESIS_HASH, Hash, Head, Incarnation, LogError, Position, chain_hash, keys::Keys};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS entries (
    position INTEGER PRIMARY KEY,
    hash     BLOB NOT NULL,
    payload  BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS entry_keys (
    position INTEGER PRIMARY KEY,
    key      TEXT NOT NULL
) STRICT;
";

/// Logs written before `entry_keys` kept their keys in a table ordered by
/// key; opening one moves them over.
const MIGRATE_KEYS: &str = "
INSERT INTO entry_keys (position, key) SELECT position, key FROM idempotency_keys;
DROP TABLE idempotency_keys;
";

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Must be the next free position.
    pub position: Position,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// An idempotency key to remember for the entry, if any.
    pub idempotency_key: Option<String>,
}

/// Makes committed appends durable, from a thread of its own: see
/// [`LogStore::detach_sync`].
#[derive(Debug)]
pub struct WalSync {
    wal: File,
}

impl WalSync {
    /// Syncs `file` in place of a store's write-ahead log, so that tests
    /// can make a sync fail for real (a character device or a pipe refuses
    /// `fdatasync`).
    #[cfg(feature = "test-support")]
    pub fn of_file(file: File) -> WalSync {
        WalSync { wal: file }
    }

    /// Flushes the write-ahead log to disk: every append committed before
    /// the call is durable when it returns.
    pub fn sync(&self) -> Result<(), LogError> {
        Ok(self.wal.sync_data()?)
    }
}

/// The log's single writer. Holding it holds an exclusive lock on the data
/// directory, so a second process cannot append to the same log.
#[derive(Debug)]
pub struct LogStore {
    conn: Connection,
    path: PathBuf,
    incarnation: Incarnation,
    head: Head,
    /// Every idempotency key and the position it was first stored at. The
    /// keys are stored in position order, beside their entries, so an
    /// append adds to the end of one more table instead of a random place
    /// in a key-ordered index; lookups are served from memory, once read
    /// (on a thread of their own, see [`Keys`]).
    keys: Keys,
    _lock: File,
}

/// Creates `dir` and its missing parents readable only by their owner (the
/// log is the record, and its directory holds the signing key): an
/// existing directory keeps the permissions it has.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file at `path` readable only by its owner, if it
/// does not exist: SQLite gives its WAL and shared-memory files the
/// database file's permissions.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Opens a connection with the settings every connection shares.
pub(crate) fn connect(path: &Path) -> Result<Connection, LogError> {
    let conn = Connection::open(path)?;
    // Events are ~700 bytes, and a page holds whole rows: a 4 KiB page
    // leaves ~13% of itself unused, a 16 KiB page ~3%. Only a new, empty
    // database takes the size (before WAL mode); an existing log keeps its.
    conn.pragma_update(None, "page_size", 16384)?;
    // WAL lets readers run beside the writer; FULL makes every commit fsync
    // the WAL, so an acknowledged append survives power loss and kill -9.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, checks its last link and takes
    /// the directory's lock.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        Self::open_as(dir, None)
    }

    /// Opens (or creates) a replica of the log `incarnation` in `dir`. A
    /// replica of another incarnation is refused, so a follower never mixes
    /// two logs' positions.
    pub fn open_replica(dir: &Path, incarnation: &Incarnation) -> Result<LogStore, LogError> {
        let store = Self::open_as(dir, Some(incarnation))?;
        if store.incarnation != *incarnation {
            return Err(LogError::OtherIncarnation {
                found: store.incarnation.to_string(),
                expected: incarnation.to_string(),
            });
        }
        Ok(store)
    }

    fn open_as(dir: &Path, adopt: Option<&Incarnation>) -> Result<LogStore, LogError> {
        create_private_dir(dir)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked(dir.to_owned()));
        }
        let path = dir.join("log.sqlite3");
        create_private_file(&path)?;
        let conn = connect(&path)?;
        conn.execute_batch(SCHEMA)?;
        let incarnation = match conn
            .query_row("SELECT value FROM meta WHERE key = 'incarnation'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        {
            Some(existing) => Incarnation(existing),
            None => {
                let fresh = match adopt {
                    Some(upstream) => upstream.clone(),
                    None => Incarnation::generate()?,
                };
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('incarnation', ?1)",
                    [fresh.as_str()],
                )?;
                fresh
            }
        };
        let head = read_head(&conn)?;
        migrate_keys(&conn)?;
        let keys = Keys::read(&path)?;
        tracing::info!(path = %path.display(), %incarnation, head = head.position, "log opened");
        Ok(LogStore {
            conn,
            path,
            incarnation,
            head,
            keys,
            _lock: lock,
        })
    }

    /// The SQLite file, for readers to open their own connections.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which incarnation this log is.
    pub fn incarnation(&self) -> &Incarnation {
        &self.incarnation
    }

    /// The last durable entry.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The position the next entry must have.
    pub fn next_position(&self) -> Position {
        self.head.position + 1
    }

    /// Moves the fsync out of [`Self::append`]: from now on an append returns
    /// once its transaction is committed, and what it appended is durable
    /// only after a later [`WalSync::sync`] on the returned handle. One
    /// thread can then decide and commit the next batch while another waits
    /// for the disk to take the last. Until that sync, entries are visible
    /// to this connection only; readers go no further than the head they
    /// are told of, which must move only after the sync.
    ///
    /// SQLite's `synchronous=NORMAL` in WAL mode is what makes this safe: a
    /// commit writes its frames to the WAL without syncing them, a
    /// checkpoint still syncs the WAL before copying it and the database
    /// after, and recovery keeps every commit whose frames are on disk. The
    /// handle syncs the WAL file itself, which SQLite keeps (and reuses from
    /// its start after a checkpoint) while this connection is open.
    pub fn detach_sync(&mut self) -> Result<WalSync, LogError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = File::open(wal)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(WalSync { wal })
    }

    /// The position recorded for an idempotency key, if any.
    pub fn find_key(&self, key: &str) -> Result<Option<Position>, LogError> {
        self.keys.get(key)
    }

    /// The payload at `position`, if it exists.
    pub fn payload(&self, position: Position) -> Result<Option<Vec<u8>>, LogError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT payload FROM entries WHERE position = ?1")?;
        Ok(stmt.query_row([position as i64], |r| r.get(0)).optional()?)
    }

    /// Up to `max` entries from `from` (inclusive), in order, on the
    /// writer's own connection: for rebuilding the writer's state at start.
    pub fn read(&self, from: Position, max: usize) -> Result<Vec<crate::LogEntry>, LogError> {
        crate::reader::read_range(&self.conn, from.max(1), Position::MAX, max, usize::MAX)
    }

    /// Appends `entries` in one transaction and returns once it is durable
    /// (one fsync for the whole batch), or only committed after
    /// [`Self::detach_sync`]. On error nothing of the batch is stored.
    pub fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.append_with(
            entries
                .iter()
                .map(|e| (e.position, &e.payload[..], None, e.idempotency_key.as_deref())),
        )
    }

    /// Appends entries copied from the upstream log, checking that each
    /// continues the chain with the hash the upstream gave it.
    pub fn append_replicated(&mut self, entries: &[crate::LogEntry]) -> Result<Head, LogError> {
        self.append_with(
            entries
                .iter()
                .map(|e| (e.position, &e.payload[..], Some(&e.hash), None)),
        )
    }

    fn append_with<'a>(
        &mut self,
        entries: impl Iterator<Item = (Position, &'a [u8], Option<&'a Hash>, Option<&'a str>)>,
    ) -> Result<Head, LogError> {
        let mut head = self.head;
        let mut new_keys: HashMap<&str, Position> = HashMap::new();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO entries (position, hash, payload) VALUES (?1, ?2, ?3)")?;
            let mut remember = tx.prepare_cached("INSERT INTO entry_keys (position, key) VALUES (?1, ?2)")?;
            for (position, payload, claimed_hash, key) in entries {
                if position != head.position + 1 {
                    return Err(LogError::OutOfOrder {
                        expected: head.position + 1,
                        got: position,
                    });
                }
                let hash = chain_hash(&head.hash, payload);
                if claimed_hash.is_some_and(|claimed| *claimed != hash) {
                    return Err(LogError::Corrupt {
                        position,
                        what: "the upstream hash does not continue the chain".to_owned(),
                    });
                }
                insert.execute(params![position as i64, &hash[..], payload])?;
                if let Some(key) = key {
                    if self.keys.contains(key)? || new_keys.insert(key, position).is_some() {
                        return Err(LogError::DuplicateKey(key.to_owned()));
                    }
                    remember.execute(params![position as i64, key])?;
                }
                head = Head { position, hash };
            }
        }
        tx.commit()?;
        self.head = head;
        self.keys.extend(new_keys)?;
        Ok(head)
    }
}

/// Moves the keys of an older log's key-ordered table over.
fn migrate_keys(conn: &Connection) -> Result<(), LogError> {
    let old: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'idempotency_keys'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if old.is_some() {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(MIGRATE_KEYS)?;
        tx.commit()?;
    }
    Ok(())
}

fn read_head(conn: &Connection) -> Result<Head, LogError> {
    let last: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT position, hash, payload FROM entries ORDER BY position DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((position, hash, payload)) = last else {
        return Ok(Head::default());
    };
    let position = position as u64;
    let count: i64 = conn.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?;
    if count as u64 != position {
        return Err(LogError::Corrupt {
            position,
            what: format!("{count} entries end at position {position}: the log has a gap"),
        });
    }
    let previous: Hash = if position == 1 {
        GENESIS_HASH
    } else {
        let bytes: Vec<u8> = conn.query_row(
            "SELECT hash FROM entries WHERE position = ?1",
            [position as i64 - 1],
            |r| r.get(0),
        )?;
        to_hash(position - 1, &bytes)?
    };
    let hash = to_hash(position, &hash)?;
    if chain_hash(&previous, &payload) != hash {
        return Err(LogError::Corrupt {
            position,
            what: "hash does not cover the previous hash and the payload".to_owned(),
        });
    }
    Ok(Head { position, hash })
}

pub(crate) fn to_hash(position: Position, bytes: &[u8]) -> Result<Hash, LogError> {
    bytes.try_into().map_err(|_| LogError::Corrupt {
        position,
        what: format!("hash has {} bytes, not 32", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(position: Position, key: Option<&str>) -> NewEntry {
        NewEntry {
            position,
            payload: format!("event {position}").into_bytes(),
            idempotency_key: key.map(str::to_owned),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_log_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let mut store = LogStore::open(&dir).unwrap();
        store.append(&[entry(1, None)]).unwrap();
        let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700, "the data directory");
        for file in ["log.sqlite3", "log.sqlite3-wal", "log.sqlite3-shm"] {
            assert_eq!(mode(file), 0o600, "{file}");
        }
    }

    #[test]
    fn appends_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (incarnation, head) = {
            let mut store = LogStore::open(dir.path()).unwrap();
            store.append(&[entry(1, Some("k1")), entry(2, None)]).unwrap();
            let head = store.append(&[entry(3, None)]).unwrap();
            (store.incarnation().clone(), head)
        };
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.head(), head);
        assert_eq!(store.incarnation(), &incarnation);
        assert_eq!(store.find_key("k1").unwrap(), Some(1));
        assert_eq!(store.find_key("k2").unwrap(), None);
        let h1 = chain_hash(&GENESIS_HASH, b"event 1");
        let h2 = chain_hash(&h1, b"event 2");
        assert_eq!(head.hash, chain_hash(&h2, b"event 3"));
    }

    #[test]
    fn a_failed_batch_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.append(&[entry(1, Some("k"))]).unwrap();
        // Third entry reuses a key: the whole batch is rolled back, and
        // the new key of the second is not remembered.
        assert!(matches!(
            store.append(&[entry(2, Some("fresh")), entry(3, Some("k"))]),
            Err(LogError::DuplicateKey(key)) if key == "k"
        ));
        assert_eq!(store.head().position, 1);
        assert_eq!(store.find_key("fresh").unwrap(), None);
        assert!(store.payload(2).unwrap().is_none());
        assert!(matches!(
            store.append(&[entry(5, None)]),
            Err(LogError::OutOfOrder { expected: 2, got: 5 })
        ));
    }

    #[test]
    fn keys_of_a_log_in_the_older_layout_are_moved_over() {
        let dir = tempfile::tempdir().unwrap();
        LogStore::open(dir.path())
            .unwrap()
            .append(&[entry(1, Some("new"))])
            .unwrap();
        {
            let conn = connect(&dir.path().join("log.sqlite3")).unwrap();
            conn.execute_batch(
                "CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT, WITHOUT ROWID;
                 INSERT INTO idempotency_keys VALUES ('old', 2);",
            )
            .unwrap();
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(
            (store.find_key("new").unwrap(), store.find_key("old").unwrap()),
            (Some(1), Some(2))
        );
        assert!(matches!(
            store.append(&[entry(2, Some("old"))]),
            Err(LogError::DuplicateKey(_))
        ));
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.find_key("old").unwrap(), Some(2));
    }

    #[tokio::test]
    async fn with_the_sync_detached_readers_see_only_what_the_head_says_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.append(&[entry(1, Some("k1"))]).unwrap();
        let sync = store.detach_sync().unwrap();
        let (head_tx, head_rx) = tokio::sync::watch::channel(store.head());
        let reader = crate::LogReader::new(store.path(), store.incarnation().clone(), head_rx);
        let head = store.append(&[entry(2, Some("k2")), entry(3, None)]).unwrap();
        // Committed: the writer knows the entries and their keys ...
        assert_eq!(
            (store.find_key("k2").unwrap(), store.payload(3).unwrap().is_some()),
            (Some(2), true)
        );
        // ... readers do not, until the head moves past the sync.
        let positions = |entries: Vec<crate::LogEntry>| entries.iter().map(|e| e.position).collect::<Vec<_>>();
        assert_eq!(positions(reader.read(1, 10).await.unwrap()), vec![1]);
        sync.sync().unwrap();
        head_tx.send(head).unwrap();
        assert_eq!(positions(reader.read(1, 10).await.unwrap()), vec![1, 2, 3]);
        // A byte budget stops a page after the entry that reaches it, and
        // still reads one entry however large.
        let each = store.payload(1).unwrap().unwrap().len();
        assert_eq!(
            positions(reader.read_within(1, 10, 2 * each).await.unwrap()),
            vec![1, 2]
        );
        assert_eq!(positions(reader.read_within(2, 10, 1).await.unwrap()), vec![2]);
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!((store.head(), store.find_key("k2").unwrap()), (head, Some(2)));
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = LogStore::open(dir.path()).unwrap();
        assert!(matches!(LogStore::open(dir.path()), Err(LogError::Locked(_))));
    }
}
