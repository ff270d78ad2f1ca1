//! A log on a disk that takes writes but refuses every sync, as a failing
//! one does, for the tests of what the service does then.

use truce_log::{Head, LogEntry, LogError, NewEntry, SequencedLog, WalSync};

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
