//! Accepting connections: the per-address cap, TCP settings, and a pause
//! instead of a spin when accepting fails.
//!
//! `accept` fails at once, again and again, while the process is out of
//! file descriptors (EMFILE): a loop that retries at once takes a core and
//! starves the connections that are already open. Here a failure waits,
//! from 5 ms doubling to 1 s, and is logged at most every 10 s.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    time::{Instant, Sleep},
};
use tokio_stream::Stream;

use super::{Registry, watch::Watched};
use crate::batched::BatchedWrites;

/// The first pause after a failed accept; it doubles up to [`MAX_PAUSE`].
const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How often the same kind of trouble is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connections handled in one poll before others get a turn (a flood of
/// refused connections must not hold the thread).
const BUDGET: usize = 64;

/// Between TCP keepalive probes, and how many go unanswered before the
/// connection is dropped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// The connections `listener` accepts, counted in `registry`, with
/// Nagle's algorithm off (or every small response would wait out the
/// peer's delayed ACK, ~40 ms), TCP keepalive on, and their writes batched
/// ([`crate::batched`]). Never yields an error: failures are waited out.
pub(crate) fn accept(listener: TcpListener, registry: Arc<Registry>) -> Incoming {
    Incoming {
        listener,
        registry,
        pause: None,
        next_pause: MIN_PAUSE,
        refused: Throttled::default(),
        failed: Throttled::default(),
    }
}

/// The stream of accepted connections.
pub(crate) struct Incoming {
    listener: TcpListener,
    registry: Arc<Registry>,
    /// Set after a failed accept: no accepting until it has passed.
    pause: Option<Pin<Box<Sleep>>>,
    next_pause: Duration,
    refused: Throttled,
    failed: Throttled,
}

impl Incoming {
    /// The connection, ready to serve, or `None` if it is refused.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) -> Option<Watched> {
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(error) => {
                tracing::debug!(%peer, %error, "dropping a connection without a local address");
                return None;
            }
        };
        let Some(admitted) = self.registry.admit(local, peer) else {
            let limit = self.registry.limits().per_address;
            if let Some(more) = self.refused.due() {
                tracing::warn!(
                    address = %peer.ip(),
                    limit,
                    refused_since_last_report = more,
                    "closing connections beyond the limit per address (--max-connections-per-address)"
                );
            }
            return None;
        };
        if let Err(error) = configure(&stream, self.registry.limits().tcp_keepalive) {
            tracing::debug!(%peer, %error, "dropping a connection whose socket could not be set up");
            return None;
        }
        let io = BatchedWrites::new(stream);
        admitted.activity.set_backlog(io.backlog());
        Some(Watched::new(io, admitted, self.registry.limits()))
    }
}

/// Nagle off, keepalive on.
fn configure(stream: &TcpStream, keepalive: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if !keepalive.is_zero() {
        let settings = socket2::TcpKeepalive::new()
            .with_time(keepalive)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES);
        socket2::SockRef::from(stream).set_tcp_keepalive(&settings)?;
    }
    Ok(())
}

/// Failures that belong to one connection (it was reset before it was
/// taken), not to the listener: the next accept may well succeed.
fn of_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl Stream for Incoming {
    type Item = io::Result<Watched>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        for _ in 0..BUDGET {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, peer)) => {
                    this.next_pause = MIN_PAUSE;
                    if let Some(connection) = this.admit(stream, peer) {
                        return Poll::Ready(Some(Ok(connection)));
                    }
                }
                Err(error) if of_one_connection(&error) => {}
                Err(error) => {
                    if let Some(more) = this.failed.due() {
                        tracing::error!(
                            %error,
                            pause_ms = this.next_pause.as_millis(),
                            failed_since_last_report = more,
                            "cannot accept connections; pausing before trying again"
                        );
                    }
                    this.pause = Some(Box::pin(tokio::time::sleep(this.next_pause)));
                    this.next_pause = (this.next_pause * 2).min(MAX_PAUSE);
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Says when a recurring event is due to be logged again, and how many
/// went unlogged since.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    /// `Some(unlogged)` if this one should be logged.
    fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_trouble_is_logged_once_per_period_with_a_count() {
        let start = Instant::now();
        let mut throttled = Throttled::default();
        assert_eq!(throttled.due_at(start), Some(0));
        assert_eq!(throttled.due_at(start), None);
        assert_eq!(throttled.due_at(start + LOG_EVERY / 2), None);
        assert_eq!(throttled.due_at(start + LOG_EVERY), Some(2));
    }
}
