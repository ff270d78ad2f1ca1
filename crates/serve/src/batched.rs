//! A connection whose writes are gathered into as few system calls as
//! possible.
//!
//! h2 writes every DATA frame larger than 256 bytes with a system call of
//! its own (it chains the payload instead of copying it, and holds one such
//! frame at a time), so a change sent to 36 subscriptions on one connection
//! cost 36 `writev`s, each of which also wakes the reader at the other end.
//! Here the connection hands its bytes to a writer task instead: the writer
//! first lets every task that is ready run (one yield, as gRPC's Go
//! transport does before it flushes), so the frames they produce gather,
//! then writes them all at once. Reads go straight to the socket.
//!
//! What waits for the socket is bounded: at most [`HIGH_WATER`] bytes,
//! counting those being written, and a [`Backlog`] lets the producers of
//! those bytes (response bodies) wait for room instead of piling data up
//! in HTTP/2's per-stream send buffers (up to 400 KiB a stream) while a
//! client does not read.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::Notify,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes gathered at most, counting those being written: past this a
/// write waits for the writer, so a client that stops reading holds the
/// server back as the socket would.
pub(crate) const HIGH_WATER: usize = 256 * 1024;

/// Buffer kept between batches; a larger one, left by a burst, is freed.
const RETAINED: usize = 16 * 1024;

/// How long the writer still tries to send what a dropped connection left,
/// to a peer that does not read.
const DROPPED_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A TCP connection whose writes a writer task makes in batches.
#[derive(Debug)]
pub struct BatchedWrites {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    info: TcpConnectInfo,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Raised when there are bytes to write or the connection is closing.
    work: Notify,
    /// Raised when the connection is dropped.
    gone: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes the connection wrote that the writer has not taken yet.
    pending: Vec<u8>,
    /// Bytes the writer has taken and not yet written.
    in_flight: usize,
    /// Producers waiting for room ([`Backlog::poll_room`]).
    producers: Vec<Waker>,
    /// The connection, waiting for room or for its shutdown.
    waiting: Option<Waker>,
    /// Why the socket failed; every later write fails the same way.
    failed: Option<(io::ErrorKind, String)>,
    /// Set on shutdown or drop: write what is pending, then close the
    /// write side.
    closing: bool,
    /// The writer has finished.
    finished: bool,
}

impl State {
    fn full(&self) -> bool {
        self.pending.len() + self.in_flight >= HIGH_WATER
    }

    fn failure(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BatchedWrites {
    /// A handle that says whether this connection has room for more.
    pub(crate) fn backlog(&self) -> Backlog {
        Backlog(Arc::clone(&self.shared))
    }

    /// Wraps `stream`, starting its writer task (call within the runtime).
    pub(crate) fn new(stream: TcpStream) -> BatchedWrites {
        let info = stream.connect_info();
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared::default());
        tokio::spawn(write_batches(write, Arc::clone(&shared)));
        BatchedWrites { read, shared, info }
    }

    /// Queues `bufs` for the writer, or says to wait if enough already is.
    fn queue(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        if let Some(error) = state.failure() {
            return Poll::Ready(Err(error));
        }
        if state.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if state.full() {
            state.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let was_empty = state.pending.is_empty();
        // Take what fits under the mark; the caller writes the rest later.
        let room = HIGH_WATER - state.pending.len() - state.in_flight;
        let mut written = 0;
        for buf in bufs {
            let take = buf.len().min(room - written);
            state.pending.extend_from_slice(&buf[..take]);
            written += take;
            if written == room {
                break;
            }
        }
        drop(state);
        if was_empty && written > 0 {
            self.shared.work.notify_one();
        }
        Poll::Ready(Ok(written))
    }
}

/// Takes what the connection wrote, a batch at a time, and writes it; on
/// shutdown, or once the connection is dropped, writes what is left and
/// closes the write side.
async fn write_batches(mut socket: OwnedWriteHalf, shared: Arc<Shared>) {
    let mut batch = Vec::new();
    loop {
        shared.work.notified().await;
        // Let the tasks that are ready run first: what they write joins
        // this batch instead of making one of its own.
        tokio::task::yield_now().await;
        let closing = {
            let mut state = shared.lock();
            std::mem::swap(&mut batch, &mut state.pending);
            state.in_flight = batch.len();
            state.closing
        };
        if !batch.is_empty() {
            let written = {
                let write = socket.write_all(&batch);
                tokio::pin!(write);
                tokio::select! {
                    written = &mut write => written,
                    // The connection is gone while the peer does not read:
                    // give the rest a moment, no more.
                    () = shared.gone.notified() => match tokio::time::timeout(DROPPED_GRACE, &mut write).await {
                        Ok(written) => written,
                        Err(_) => break,
                    },
                }
            };
            batch.clear();
            if batch.capacity() > RETAINED {
                batch = Vec::new();
            }
            // Room again (or the failure), for the connection and the
            // producers that waited.
            let (waiting, producers) = {
                let mut state = shared.lock();
                state.in_flight = 0;
                if let Err(error) = &written {
                    state.failed = Some((error.kind(), error.to_string()));
                }
                (state.waiting.take(), std::mem::take(&mut state.producers))
            };
            waiting.into_iter().chain(producers).for_each(Waker::wake);
            if written.is_err() {
                break;
            }
        }
        if closing && shared.lock().pending.is_empty() {
            if let Err(error) = socket.shutdown().await {
                shared.lock().failed = Some((error.kind(), error.to_string()));
            }
            break;
        }
    }
    let (waiting, producers) = {
        let mut state = shared.lock();
        state.finished = true;
        state.in_flight = 0;
        (state.waiting.take(), std::mem::take(&mut state.producers))
    };
    waiting.into_iter().chain(producers).for_each(Waker::wake);
}

/// Whether a connection has room for more bytes: what produces them
/// (a response body) waits while it has none, so a client that does not
/// read costs the server at most [`HIGH_WATER`] bytes here and a frame per
/// stream in HTTP/2's buffers.
#[derive(Debug, Clone)]
pub(crate) struct Backlog(Arc<Shared>);

impl Backlog {
    /// Ready while the connection has room (or has failed or closed, so
    /// that the producer learns it from its next write); otherwise wakes
    /// `cx` once the writer has written.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock();
        if !state.full() || state.finished || state.failed.is_some() {
            return Poll::Ready(());
        }
        if !state.producers.iter().any(|w| w.will_wake(cx.waker())) {
            state.producers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl AsyncRead for BatchedWrites {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for BatchedWrites {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.queue(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.queue(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// The bytes are the writer's from here: it writes them without
    /// being asked again, so there is nothing to wait for.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.lock().failure() {
            Some(error) => Poll::Ready(Err(error)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Waits until everything written has been sent and the write side
    /// is closed.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        if state.finished {
            return Poll::Ready(state.failure().map_or(Ok(()), Err));
        }
        state.waiting = Some(cx.waker().clone());
        if !state.closing {
            state.closing = true;
            drop(state);
            self.shared.work.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for BatchedWrites {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        self.shared.gone.notify_one();
    }
}

impl Connected for BatchedWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A batched server end and a plain client end of one loopback
    /// connection.
    async fn connected() -> (BatchedWrites, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (server, _) = accepted.expect("accepted");
        (BatchedWrites::new(server), client.expect("connected"))
    }

    #[tokio::test]
    async fn a_burst_of_writes_arrives_whole_and_in_order_then_the_end() {
        let (mut server, mut client) = connected().await;
        let mut expected = Vec::new();
        for i in 0..20_000u32 {
            let chunk = i.to_be_bytes().repeat(1 + (i % 7) as usize);
            server.write_all(&chunk).await.expect("written");
            expected.extend_from_slice(&chunk);
        }
        server.flush().await.expect("flushed");
        server.shutdown().await.expect("shut down");
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_holds_the_writer_back_until_it_does() {
        let (mut server, mut client) = connected().await;
        let size = 64 * 1024 * 1024;
        let data = vec![7u8; size];
        let taken = server.write(&data).await.expect("written");
        assert_eq!(taken, HIGH_WATER, "one write takes what fits under the mark");
        let writing = tokio::spawn(async move {
            server.write_all(&data[taken..]).await.expect("written");
            server.shutdown().await.expect("shut down");
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!writing.is_finished(), "64 MiB were taken by a peer that reads nothing");
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        assert_eq!(received.len(), size);
        assert!(received.iter().all(|&b| b == 7));
        writing.await.expect("the writer finished");
    }

    #[tokio::test]
    async fn producers_wait_for_room_while_the_peer_does_not_read_and_go_on_when_it_does() {
        let (mut server, mut client) = connected().await;
        let backlog = server.backlog();
        let room = || std::future::poll_fn(|cx| backlog.poll_room(cx));
        room().await;
        // Far more than the socket buffers hold: the writer stalls, and
        // what waits for it stays under the mark.
        let writing = tokio::spawn(async move {
            server.write_all(&vec![1u8; 64 * 1024 * 1024]).await.expect("written");
            server.shutdown().await.expect("shut down");
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waited = tokio::time::timeout(Duration::from_millis(300), room()).await;
        assert!(waited.is_err(), "room while the peer reads nothing");
        // Reading makes room.
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.expect("read");
            received.len()
        });
        tokio::time::timeout(Duration::from_secs(20), room())
            .await
            .expect("room once the peer reads");
        assert_eq!(reader.await.expect("reader"), 64 * 1024 * 1024);
        writing.await.expect("the writer finished");
    }

    #[tokio::test]
    async fn what_a_dropped_connection_wrote_is_still_sent_then_the_end() {
        let (mut server, mut client) = connected().await;
        server.write_all(b"the last frames").await.expect("written");
        drop(server);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        assert_eq!(received, b"the last frames");
    }

    #[tokio::test]
    async fn writes_fail_once_the_peer_is_gone() {
        let (mut server, client) = connected().await;
        drop(client);
        // The first writes are taken before the reset comes back.
        let mut failure = None;
        for _ in 0..2000 {
            if let Err(error) = server.write_all(&[0u8; 4096]).await {
                failure = Some(error);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let failure = failure.expect("a write failed");
        assert!(
            matches!(
                failure.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{failure:?}"
        );
    }
}
