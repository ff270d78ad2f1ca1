//! What the crate's tests share: a report, a log on a disk that takes
//! writes but refuses every sync, as a failing one does, and a log shared
//! with other writers whose appends fail as a test says.

use truce_log::{Head, LogEntry, LogError, NewEntry, SequencedLog, WalSync};
use truce_proto::v1;

/// A valid report of a line crossing at Rafah, with `summary`.
pub(crate) fn wire_report(summary: &str) -> v1::Report {
    v1::Report {
        reporting_party: "idf".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_763_807_400,
            nanos: 0,
        }),
        occurred_precision: v1::TimePrecision::Hour as i32,
        location: Some(v1::Location {
            area: "Rafah".into(),
            zone: v1::Zone::AtLine as i32,
            precision: v1::LocationPrecision::Area as i32,
            point: None,
        }),
        category: v1::Category::LineCrossing as i32,
        summary: summary.into(),
        ..Default::default()
    }
}

/// `0`, with every sync of its write-ahead log failing for real: the syncs
/// go to a character device, where `fdatasync` fails (EINVAL).
pub(crate) struct FailingDisk(pub(crate) Box<dyn SequencedLog>);

impl SequencedLog for FailingDisk {
    fn head(&self) -> Head {
        self.0.head()
    }

    fn find_key(&self, key: &str) -> Result<Option<u64>, LogError> {
        self.0.find_key(key)
    }

    fn payload(&self, position: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.0.payload(position)
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<LogEntry>, LogError> {
        self.0.read(from, max)
    }

    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.0.append(entries)
    }

    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError> {
        self.0.catch_up()
    }

    fn detach_sync(&mut self) -> Result<Option<WalSync>, LogError> {
        // Appends stop syncing, as they do on a working disk.
        self.0.detach_sync()?;
        Ok(Some(WalSync::of_file(std::fs::File::open("/dev/null")?)))
    }
}

/// What a [`SharedLog`] does to the next append.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trouble {
    /// The entries are sent, not confirmed, and not stored.
    Lost,
    /// The entries are sent and stored, and not confirmed.
    Unconfirmed,
}

/// What is in store for a [`SharedLog`], set by the test.
#[derive(Debug, Default)]
pub(crate) struct Script {
    /// Troubles of the next appends, one each.
    pub(crate) next: std::collections::VecDeque<Trouble>,
    /// Every append and read fails, after [`DOWN_DELAY`].
    pub(crate) down: bool,
}

/// How long a [`SharedLog`] that is down takes to fail.
pub(crate) const DOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a caller waits while a [`SharedLog`] fails.
pub(crate) const SHARED_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(200);

/// An embedded log acting as a shared one does (JetStream): an append
/// that is not confirmed leaves the writer's head where it was, and what
/// it stored is found by catching up; appends fail as scripted.
pub(crate) struct SharedLog {
    inner: Box<dyn SequencedLog>,
    known: Head,
    script: std::sync::Arc<std::sync::Mutex<Script>>,
}

impl SharedLog {
    /// `inner` shared, and the script the test sets.
    pub(crate) fn new(inner: Box<dyn SequencedLog>) -> (SharedLog, std::sync::Arc<std::sync::Mutex<Script>>) {
        let script = std::sync::Arc::default();
        let known = inner.head();
        let log = SharedLog {
            inner,
            known,
            script: std::sync::Arc::clone(&script),
        };
        (log, script)
    }

    fn down(&self) -> Result<(), LogError> {
        if self.script.lock().unwrap().down {
            std::thread::sleep(DOWN_DELAY);
            return Err(LogError::Unavailable("down".into()));
        }
        Ok(())
    }
}

impl SequencedLog for SharedLog {
    fn head(&self) -> Head {
        self.known
    }

    fn find_key(&self, key: &str) -> Result<Option<u64>, LogError> {
        self.down()?;
        self.inner.find_key(key)
    }

    fn payload(&self, position: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.inner.payload(position)
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = self.inner.read(from, max)?;
        entries.retain(|e| e.position <= self.known.position);
        Ok(entries)
    }

    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.down()?;
        let trouble = self.script.lock().unwrap().next.pop_front();
        match trouble {
            None => {
                self.known = self.inner.append(entries)?;
                Ok(self.known)
            }
            Some(Trouble::Lost) => Err(LogError::Uncertain {
                appended: 0,
                why: "lost".into(),
            }),
            Some(Trouble::Unconfirmed) => {
                self.inner.append(entries)?;
                Err(LogError::Uncertain {
                    appended: 0,
                    why: "not confirmed".into(),
                })
            }
        }
    }

    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError> {
        self.down()?;
        let entries = self.inner.read(self.known.position + 1, usize::MAX)?;
        if let Some(last) = entries.last() {
            self.known = Head {
                position: last.position,
                hash: last.hash,
            };
        }
        Ok(entries)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn answer_within(&self) -> Option<std::time::Duration> {
        Some(SHARED_ANSWER_WITHIN)
    }
}
