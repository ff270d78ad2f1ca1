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

/// What a [`SharedLog`] does to the first entry of the next append; the
/// entries after it are not sent (as JetStream's writer sends each entry
/// only once the one before it is confirmed).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trouble {
    /// Sent, not confirmed, and never stored.
    Lost,
    /// Sent and stored, and not confirmed.
    Unconfirmed,
    /// As [`Trouble::Unconfirmed`], and the log goes down until the test
    /// brings it back: what was stored cannot be read back yet.
    UnconfirmedThenDown,
    /// Sent, not confirmed, and stored later: just before the next append
    /// to the log, by any writer, if it still follows the log's last
    /// entry (refused otherwise, as an expected last sequence is).
    Late,
}

/// What is in store for a [`SharedLog`], set by the test.
#[derive(Debug, Default)]
pub(crate) struct Script {
    /// Troubles of the next appends, one each.
    pub(crate) next: std::collections::VecDeque<Trouble>,
    /// Every append and read fails, after [`DOWN_DELAY`].
    pub(crate) down: bool,
    /// How many of the next reads of single entries fail at once (a
    /// leader read timing out).
    pub(crate) failing_reads: usize,
    /// How long each entry takes to be confirmed; when set, an append
    /// stops sending after half its writer's bound, as JetStream's does.
    pub(crate) ack_delay: std::time::Duration,
    /// How long each append takes, however many entries it has (a busy
    /// log that keeps up).
    pub(crate) append_delay: std::time::Duration,
    /// Appends refused because another writer appended first.
    pub(crate) conflicts: usize,
    /// An entry sent and not yet stored ([`Trouble::Late`]).
    late: Option<NewEntry>,
}

/// How long a [`SharedLog`] that is down takes to fail.
pub(crate) const DOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a caller waits while a [`SharedLog`] fails.
pub(crate) const SHARED_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(200);

type Locked<T> = std::sync::Arc<std::sync::Mutex<T>>;

/// An embedded log acting as a shared one does (JetStream), for one of its
/// writers: an append that is not confirmed leaves the writer's head where
/// it was, and what it stored is found by catching up; an append after a
/// stale head is refused as a conflict; appends and reads fail as
/// scripted.
pub(crate) struct SharedLog {
    inner: Locked<Box<dyn SequencedLog>>,
    known: Head,
    script: Locked<Script>,
    answer_within: std::time::Duration,
}

impl SharedLog {
    /// `inner` shared, and the script the test sets.
    pub(crate) fn new(inner: Box<dyn SequencedLog>) -> (SharedLog, Locked<Script>) {
        let known = inner.head();
        let log = SharedLog {
            inner: std::sync::Arc::new(std::sync::Mutex::new(inner)),
            known,
            script: Locked::default(),
            answer_within: SHARED_ANSWER_WITHIN,
        };
        let script = std::sync::Arc::clone(&log.script);
        (log, script)
    }

    /// Another writer of the same log, at its head now, under the same
    /// script.
    pub(crate) fn writer(&self) -> SharedLog {
        SharedLog {
            inner: std::sync::Arc::clone(&self.inner),
            known: self.inner.lock().unwrap().head(),
            script: std::sync::Arc::clone(&self.script),
            answer_within: self.answer_within,
        }
    }

    /// This writer, its callers bound by `within`.
    pub(crate) fn bound_by(self, within: std::time::Duration) -> SharedLog {
        SharedLog {
            answer_within: within,
            ..self
        }
    }

    /// The bytes at `position`, read past any writer's head (for a test's
    /// own checks).
    pub(crate) fn stored(&self, position: u64) -> Option<Vec<u8>> {
        self.inner.lock().unwrap().payload(position).unwrap()
    }

    fn down(&self) -> Result<(), LogError> {
        if self.script.lock().unwrap().down {
            std::thread::sleep(DOWN_DELAY);
            return Err(LogError::Unavailable("down".into()));
        }
        Ok(())
    }

    /// Stores the entry sent earlier and not yet stored, if it still
    /// follows the log's last entry.
    fn land_late(&self, inner: &mut Box<dyn SequencedLog>) {
        if let Some(entry) = self.script.lock().unwrap().late.take()
            && entry.position == inner.head().position + 1
        {
            inner.append(&[entry]).expect("the late entry lands");
        }
    }

    /// Sends `entries` one by one, each confirmed after `delay`, until half
    /// the bound is up.
    fn append_slowly(
        &mut self,
        inner: &mut Box<dyn SequencedLog>,
        entries: &[NewEntry],
        delay: std::time::Duration,
    ) -> Result<Head, LogError> {
        let began = std::time::Instant::now();
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 && began.elapsed() >= self.answer_within / 2 {
                break;
            }
            std::thread::sleep(delay);
            self.known = inner.append(std::slice::from_ref(entry))?;
        }
        Ok(self.known)
    }
}

impl SequencedLog for SharedLog {
    fn head(&self) -> Head {
        self.known
    }

    fn find_key(&self, key: &str) -> Result<Option<u64>, LogError> {
        self.down()?;
        self.inner.lock().unwrap().find_key(key)
    }

    fn payload(&self, position: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.down()?;
        {
            let mut script = self.script.lock().unwrap();
            if script.failing_reads > 0 {
                script.failing_reads -= 1;
                return Err(LogError::Unavailable("the read timed out".into()));
            }
        }
        self.inner.lock().unwrap().payload(position)
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = self.inner.lock().unwrap().read(from, max)?;
        entries.retain(|e| e.position <= self.known.position);
        Ok(entries)
    }

    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        self.down()?;
        let inner = std::sync::Arc::clone(&self.inner);
        let mut inner = inner.lock().unwrap();
        self.land_late(&mut inner);
        if entries
            .first()
            .is_some_and(|first| first.position != inner.head().position + 1)
        {
            self.script.lock().unwrap().conflicts += 1;
            return Err(LogError::Conflict {
                appended: 0,
                head: self.known,
            });
        }
        let (trouble, delay, busy) = {
            let mut script = self.script.lock().unwrap();
            (script.next.pop_front(), script.ack_delay, script.append_delay)
        };
        std::thread::sleep(busy);
        let first = &entries[..entries.len().min(1)];
        match trouble {
            None if delay.is_zero() => {
                self.known = inner.append(entries)?;
                Ok(self.known)
            }
            None => self.append_slowly(&mut inner, entries, delay),
            Some(Trouble::Lost) => Err(LogError::Uncertain {
                appended: 0,
                why: "lost".into(),
            }),
            Some(trouble @ (Trouble::Unconfirmed | Trouble::UnconfirmedThenDown)) => {
                inner.append(first)?;
                if matches!(trouble, Trouble::UnconfirmedThenDown) {
                    self.script.lock().unwrap().down = true;
                }
                Err(LogError::Uncertain {
                    appended: 0,
                    why: "not confirmed".into(),
                })
            }
            Some(Trouble::Late) => {
                self.script.lock().unwrap().late = first.first().cloned();
                Err(LogError::Uncertain {
                    appended: 0,
                    why: "not confirmed yet".into(),
                })
            }
        }
    }

    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError> {
        self.down()?;
        let entries = self.inner.lock().unwrap().read(self.known.position + 1, usize::MAX)?;
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
        Some(self.answer_within)
    }
}
