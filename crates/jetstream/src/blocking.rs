//! The JetStream log for the ingest sequencer, which runs on a thread of
//! its own and waits for each call.

use tokio::runtime::Handle;
use truce_log::{Head, LogEntry, LogError, NewEntry, Position, SequencedLog, chain_hash};

use crate::{JetStreamLog, OPEN_PATIENCE, check_chain};

/// [`JetStreamLog`] behind the sequencer's blocking interface. Its calls
/// run on the runtime it was opened on, so it must be used from a thread
/// outside that runtime (the sequencer's own).
#[derive(Debug)]
pub struct BlockingJetStream {
    log: JetStreamLog,
    runtime: Handle,
    head: Head,
}

impl BlockingJetStream {
    /// Wraps `log`, starting at the server's current head (waiting out a
    /// stream still electing its leader, as opening it does).
    pub async fn open(log: JetStreamLog) -> Result<BlockingJetStream, LogError> {
        let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
        let head = loop {
            match log.head().await {
                Err(LogError::Unavailable(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(%why, "JetStream is not answering yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                head => break head?,
            }
        };
        Ok(BlockingJetStream {
            log,
            runtime: Handle::current(),
            head,
        })
    }
}

impl SequencedLog for BlockingJetStream {
    fn is_shared(&self) -> bool {
        true
    }

    fn answer_within(&self) -> Option<std::time::Duration> {
        Some(crate::ANSWER_WITHIN)
    }

    fn head(&self) -> Head {
        self.head
    }

    fn find_key(&self, key: &str) -> Result<Option<Position>, LogError> {
        self.runtime.block_on(self.log.find_key(key))
    }

    fn find_keys(&self, keys: &[String]) -> Result<Vec<Option<Position>>, LogError> {
        self.runtime.block_on(self.log.find_keys(keys))
    }

    fn payload(&self, position: Position) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.runtime.block_on(self.log.get(position))?.map(|e| e.payload))
    }

    fn read(&self, from: Position, max: usize) -> Result<Vec<LogEntry>, LogError> {
        let until = self
            .head
            .position
            .min(from.saturating_add(max as u64).saturating_sub(1));
        self.runtime.block_on(self.log.read(from.max(1), until))
    }

    fn append(&mut self, entries: &[NewEntry]) -> Result<Head, LogError> {
        match self.runtime.block_on(self.log.append(self.head, entries)) {
            Ok(head) => {
                self.head = head;
                Ok(head)
            }
            Err(LogError::Conflict { appended, head }) => {
                self.head = head;
                Err(LogError::Conflict { appended, head })
            }
            Err(LogError::Uncertain { appended, why }) => {
                // What is known stored moves the head; catching up reads
                // whatever else made it.
                for entry in &entries[..appended.min(entries.len())] {
                    self.head = Head {
                        position: entry.position,
                        hash: chain_hash(&self.head.hash, &entry.payload),
                    };
                }
                Err(LogError::Uncertain { appended, why })
            }
            Err(other) => Err(other),
        }
    }

    fn catch_up(&mut self) -> Result<Vec<LogEntry>, LogError> {
        let last = self.runtime.block_on(self.log.last_position())?;
        if last <= self.head.position {
            return Ok(Vec::new());
        }
        let entries = self.runtime.block_on(self.log.read(self.head.position + 1, last))?;
        self.head = check_chain(&self.head, &entries)?;
        Ok(entries)
    }
}
