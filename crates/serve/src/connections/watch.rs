//! Closing connections that hold a place without using it.
//!
//! Neither tonic nor hyper bounds how long an HTTP/2 server connection may
//! wait for the client's preface, or stay open with no stream: a client
//! could hold descriptors for ever by connecting and saying nothing. A
//! [`Watched`] connection keeps a timer beside its socket and fails its
//! next read, which ends the connection, once
//!
//! - it has not received the preface and a first frame header (33 bytes)
//!   within the handshake timeout from accept; with TLS these bytes are
//!   the TLS handshake's, whose own timeout (the same) tonic enforces, and
//!   a TLS client that then sends no preface is closed as idle; or
//! - no stream has been open for the idle timeout. A connection that has
//!   just received bytes is given a second more, so a call already on its
//!   way is served rather than cut.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{Admitted, ConnectionLimits};
use crate::batched::BatchedWrites;

/// The HTTP/2 client preface (24 bytes) and the header of the SETTINGS
/// frame that must follow it (9).
const HANDSHAKE_BYTES: usize = 24 + 9;

/// How long after its last received bytes an idle connection is kept.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// A connection closed when it idles too long.
#[derive(Debug)]
pub(crate) struct Watched {
    io: BatchedWrites,
    admitted: Admitted,
    accepted_at: Instant,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// Bytes received, counted up to [`HANDSHAKE_BYTES`].
    received: usize,
    last_received: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Watched {
    pub(crate) fn new(io: BatchedWrites, admitted: Admitted, limits: &ConnectionLimits) -> Watched {
        let now = Instant::now();
        Watched {
            io,
            admitted,
            accepted_at: now,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            received: 0,
            last_received: now,
            timer: Box::pin(tokio::time::sleep_until(now + limits.handshake_timeout)),
        }
    }

    /// Why the connection should close now, if it should; otherwise arms
    /// the timer to look again.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        loop {
            let now = Instant::now();
            let due = if self.received < HANDSHAKE_BYTES {
                let due = self.accepted_at + self.handshake_timeout;
                if due <= now {
                    return Some("no HTTP/2 preface within the handshake timeout");
                }
                due
            } else {
                match self.admitted.activity.idle_since() {
                    Some(since) => {
                        let due = (since + self.idle_timeout).max(self.last_received + IN_FLIGHT_GRACE);
                        if due <= now {
                            return Some("no open stream for the idle timeout");
                        }
                        due
                    }
                    // Busy: look again no sooner than an idle timeout from
                    // now (a stream ending does not need to wake us).
                    None if self.timer.deadline() > now => self.timer.deadline(),
                    None => now + self.idle_timeout,
                }
            };
            if self.timer.deadline() != due {
                self.timer.as_mut().reset(due);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            let received = buf.filled().len() - before;
            if received > 0 {
                this.received = (this.received + received).min(HANDSHAKE_BYTES);
                this.last_received = Instant::now();
            }
            return Poll::Ready(read);
        }
        match this.expired(cx) {
            Some(why) => {
                tracing::debug!(peer = ?this.io.connect_info().remote_addr(), why, "closing the connection");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Watched {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}
