//! Following the log: replay from a position, then continue live.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::mpsc;
use tokio_stream::Stream;

use crate::{LogEntry, LogError, LogReader, Position};

/// Entries read from storage per query while catching up.
const PAGE: usize = 512;

/// The most payload one page read on behalf of a client holds (at least
/// one entry): a reader that stops reading holds a few pages, so what it
/// costs is bounded in bytes however large the entries are.
pub const CLIENT_PAGE_BYTES: usize = 256 * 1024;

/// A stream of every entry from `from` (inclusive), then of each new entry
/// as it becomes durable. It ends when the writer goes away, and stops
/// reading as soon as the stream is dropped. Entries are read in pages of
/// at most [`CLIENT_PAGE_BYTES`] and handed on one page at a time, so a
/// consumer that stops reading holds at most three pages (the one it is
/// taking, one waiting, one read) however far behind it is.
pub fn follow(reader: LogReader, from: Position) -> Following {
    let (tx, rx) = mpsc::channel::<Result<Vec<LogEntry>, LogError>>(1);
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
            match reader.read_within(next, PAGE, CLIENT_PAGE_BYTES).await {
                Ok(entries) => {
                    let Some(last) = entries.last() else { continue };
                    next = last.position + 1;
                    if tx.send(Ok(entries)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    Following {
        pages: rx,
        page: Vec::new().into_iter(),
    }
}

/// The entries of [`follow`], one at a time from the pages it reads.
#[derive(Debug)]
pub struct Following {
    pages: mpsc::Receiver<Result<Vec<LogEntry>, LogError>>,
    page: std::vec::IntoIter<LogEntry>,
}

impl Stream for Following {
    type Item = Result<LogEntry, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(entry) = self.page.next() {
                return Poll::Ready(Some(Ok(entry)));
            }
            match self.pages.poll_recv(cx) {
                Poll::Ready(Some(Ok(page))) => self.page = page.into_iter(),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A page read ahead, and where the one after it starts.
type Page<T> = (Position, Vec<T>);

/// Pages of the log read one ahead of their reader: while the caller works
/// on one page, the next is read, and turned into `T` by `convert`, on
/// another task. Reading stops after `last` and at the end of the log; a
/// page not yet taken is abandoned when this is dropped.
pub struct ReadAhead<T: Send + 'static> {
    reader: LogReader,
    last: Position,
    page: usize,
    page_bytes: usize,
    convert: fn(Vec<LogEntry>) -> Result<Vec<T>, LogError>,
    pending: Option<tokio::task::JoinHandle<Result<Page<T>, LogError>>>,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Starts reading pages of up to `page` entries and `page_bytes` of
    /// payload (at least one entry) from `from` through `last`.
    pub fn new(
        reader: LogReader,
        from: Position,
        last: Position,
        (page, page_bytes): (usize, usize),
        convert: fn(Vec<LogEntry>) -> Result<Vec<T>, LogError>,
    ) -> ReadAhead<T> {
        let mut pages = ReadAhead {
            reader,
            last,
            page,
            page_bytes,
            convert,
            pending: None,
        };
        pages.start(from.max(1));
        pages
    }

    fn start(&mut self, from: Position) {
        if from > self.last {
            return;
        }
        let (reader, convert, bytes) = (self.reader.clone(), self.convert, self.page_bytes);
        let wanted = usize::try_from(self.last - from + 1).map_or(self.page, |left| left.min(self.page));
        self.pending = Some(tokio::spawn(async move {
            let entries = reader.read_within(from, wanted, bytes).await?;
            let next = entries.last().map_or(Position::MAX, |e| e.position + 1);
            Ok((next, convert(entries)?))
        }));
    }

    /// The next page; empty once everything through `last` (or to the end
    /// of the log) has been read.
    pub async fn next_page(&mut self) -> Result<Vec<T>, LogError> {
        let Some(pending) = self.pending.take() else {
            return Ok(Vec::new());
        };
        let (next, page) = pending.await.map_err(|e| LogError::Io(std::io::Error::other(e)))??;
        self.start(next);
        Ok(page)
    }
}

impl<T: Send + 'static> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        if let Some(pending) = &self.pending {
            pending.abort();
        }
    }
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

    #[tokio::test]
    async fn read_ahead_gives_every_page_in_order_and_stops_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=1000u64)
            .map(|p| NewEntry {
                position: p,
                payload: p.to_le_bytes().to_vec(),
                idempotency_key: None,
            })
            .collect();
        let head = store.append(&entries).unwrap();
        let (_head_tx, head_rx) = watch::channel(head);
        let reader = LogReader::new(store.path(), store.incarnation().clone(), head_rx);
        let positions = |entries: Vec<LogEntry>| Ok(entries.into_iter().map(|e| e.position).collect());

        let mut seen = Vec::new();
        let mut pages = ReadAhead::new(reader.clone(), 3, 900, (64, usize::MAX), positions);
        loop {
            let page = pages.next_page().await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 64);
            seen.extend(page);
        }
        assert_eq!(seen, (3..=900).collect::<Vec<_>>());

        let mut to_the_end = ReadAhead::new(reader.clone(), 990, u64::MAX, (64, usize::MAX), positions);
        assert_eq!(to_the_end.next_page().await.unwrap(), (990..=1000).collect::<Vec<_>>());
        assert!(to_the_end.next_page().await.unwrap().is_empty());
        let mut nothing = ReadAhead::new(reader, 5, 4, (64, usize::MAX), positions);
        assert!(nothing.next_page().await.unwrap().is_empty());
    }
}
