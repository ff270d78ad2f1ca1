//! Following the log: replay from a position, then continue live.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{LogEntry, LogError, LogReader, Position};

/// Entries read from storage per query while catching up.
const PAGE: usize = 512;

/// A stream of every entry from `from` (inclusive), then of each new entry
/// as it becomes durable. It ends when the writer goes away, and stops
/// reading as soon as the stream is dropped. Entries are read in pages and
/// handed on through a small bounded channel, so a slow consumer holds at
/// most two pages in memory however far behind it is.
pub fn follow(reader: LogReader, from: Position) -> ReceiverStream<Result<LogEntry, LogError>> {
    let (tx, rx) = mpsc::channel(PAGE);
    tokio::spawn(async move {
        let mut head = reader.watch_head();
        let mut next = from.max(1);
        loop {
            if head.borrow_and_update().position < next {
                tokio::select! {
                    changed = head.changed() => {
                        if changed.is_err() {
                            return; // the writer is gone
                        }
                        continue;
                    }
                    () = tx.closed() => return,
                }
            }
            match reader.read(next, PAGE).await {
                Ok(entries) => {
                    for entry in entries {
                        next = entry.position + 1;
                        if tx.send(Ok(entry)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::{LogStore, NewEntry};

    #[tokio::test]
    async fn replays_then_continues_live_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        let append = |store: &mut LogStore, n: u64| {
            let position = store.next_position();
            let entries: Vec<_> = (position..position + n)
                .map(|p| NewEntry {
                    position: p,
                    payload: p.to_le_bytes().to_vec(),
                    idempotency_key: None,
                })
                .collect();
            store.append(&entries).unwrap()
        };
        append(&mut store, 1000);
        let (head_tx, head_rx) = watch::channel(store.head());
        let reader = LogReader::new(store.path(), store.incarnation().clone(), head_rx);
        let mut stream = follow(reader, 3);
        for _ in 0..5 {
            head_tx.send(append(&mut store, 7)).unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 1033 {
            let entry = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("follow stalled")
                .unwrap()
                .unwrap();
            seen.push(entry.position);
        }
        assert_eq!(seen, (3..=1035).collect::<Vec<_>>());
        drop(head_tx);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .is_none()
        );
    }
}
