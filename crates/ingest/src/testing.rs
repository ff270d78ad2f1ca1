//! What the crate's tests share: a report, and a log on a disk that takes
//! writes but refuses every sync, as a failing one does.

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
