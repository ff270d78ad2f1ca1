//! The idempotency keys: every key and the position it was first stored
//! at, looked up in memory. A log of a million reports has a million keys,
//! a third of a second to read; they are read on a thread of their own,
//! from a connection of its own, while the process goes on starting, and
//! the first lookup waits for them.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Mutex, OnceLock},
    thread::{self, JoinHandle},
};

use rusqlite::Connection;

use crate::{LogError, Position, store::connect};

type Table = HashMap<Box<str>, Position>;

/// The keys, being read or read.
#[derive(Debug)]
pub(crate) struct Keys {
    read: OnceLock<Table>,
    reading: Mutex<Option<JoinHandle<Result<Table, LogError>>>>,
}

impl Keys {
    /// Starts reading the keys of the log at `path`.
    pub(crate) fn read(path: &Path) -> Result<Keys, LogError> {
        let path = path.to_owned();
        let reading = thread::Builder::new()
            .name("truce-keys".into())
            .spawn(move || read_all(&connect(&path)?))?;
        Ok(Keys {
            read: OnceLock::new(),
            reading: Mutex::new(Some(reading)),
        })
    }

    /// Every key, once read.
    fn table(&self) -> Result<&Table, LogError> {
        if let Some(table) = self.read.get() {
            return Ok(table);
        }
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(table) = self.read.get() {
            return Ok(table);
        }
        let outcome = match reading.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(unreadable("the thread reading them panicked"))),
            None => Err(unreadable("reading them failed before")),
        };
        let table = outcome?;
        Ok(self.read.get_or_init(|| table))
    }

    /// The position stored for `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Position>, LogError> {
        Ok(self.table()?.get(key).copied())
    }

    /// True when `key` is stored.
    pub(crate) fn contains(&self, key: &str) -> Result<bool, LogError> {
        Ok(self.table()?.contains_key(key))
    }

    /// Adds keys just stored.
    pub(crate) fn extend<'a>(&mut self, added: impl IntoIterator<Item = (&'a str, Position)>) -> Result<(), LogError> {
        self.table()?;
        if let Some(table) = self.read.get_mut() {
            table.extend(added.into_iter().map(|(key, position)| (Box::from(key), position)));
        }
        Ok(())
    }
}

fn unreadable(why: &str) -> LogError {
    LogError::Io(std::io::Error::other(format!(
        "the idempotency keys cannot be read: {why}"
    )))
}

/// Reads every key stored.
fn read_all(conn: &Connection) -> Result<Table, LogError> {
    let count: i64 = conn.query_row("SELECT count(*) FROM entry_keys", [], |r| r.get(0))?;
    let mut keys = HashMap::with_capacity(usize::try_from(count).unwrap_or_default());
    let mut stmt = conn.prepare("SELECT key, position FROM entry_keys")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let position: i64 = row.get(1)?;
        keys.insert(key.into_boxed_str(), position as Position);
    }
    Ok(keys)
}
