//! A server stream's outgoing queue, with a stall rule: a message waits at
//! most the stall timeout for room, so a reader that stops reading holds
//! a bounded queue and its task for that long, never forever. The final
//! status travels apart from the messages, so it is delivered even when
//! the queue is full because the reader stopped.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;

/// Why a stream's delivery stopped.
#[derive(Debug)]
pub enum Stop {
    /// The client went away: nothing more to say.
    Gone,
    /// The client took nothing for the stall timeout.
    Stalled,
    /// End the stream with this status.
    End(Status),
}

/// The sending side.
#[derive(Debug)]
pub struct Outbound<T> {
    messages: mpsc::Sender<T>,
    end: oneshot::Sender<Status>,
    taken: Arc<Mutex<tokio::time::Instant>>,
}

/// The stream tonic sends: the queued messages, then the final status if
/// there is one.
#[derive(Debug)]
pub struct Outgoing<T> {
    messages: mpsc::Receiver<T>,
    end: Option<oneshot::Receiver<Status>>,
    /// When the reader last took a message (or the stream began).
    taken: Arc<Mutex<tokio::time::Instant>>,
}

/// A connected queue of `depth` messages and its stream.
pub fn outbound<T>(depth: usize) -> (Outbound<T>, Outgoing<T>) {
    let (messages_tx, messages_rx) = mpsc::channel(depth);
    let (end_tx, end_rx) = oneshot::channel();
    let taken = Arc::new(Mutex::new(tokio::time::Instant::now()));
    (
        Outbound {
            messages: messages_tx,
            end: end_tx,
            taken: Arc::clone(&taken),
        },
        Outgoing {
            messages: messages_rx,
            end: Some(end_rx),
            taken,
        },
    )
}

impl<T> Outbound<T> {
    /// Queues `message`, waiting at most `stall` for room.
    pub async fn send(&self, message: T, stall: Duration) -> Result<(), Stop> {
        match tokio::time::timeout(stall, self.messages.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(message);
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Stalled),
        }
    }

    /// How long messages have waited for the reader, which has taken
    /// nothing since: `None` while the queue is empty. A stream with
    /// nothing new to send asks this before sending a heartbeat, so a
    /// reader that stopped is found out by its queue, not by the queue
    /// filling with heartbeats.
    pub fn waiting(&self) -> Option<Duration> {
        if self.messages.capacity() == self.messages.max_capacity() {
            return None;
        }
        Some(self.taken.lock().unwrap_or_else(|p| p.into_inner()).elapsed())
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.messages.closed().await;
    }

    /// Ends the stream with `status` once the queued messages are sent.
    pub fn finish(self, status: Status) {
        let _ = self.end.send(status);
    }
}

impl<T> Stream for Outgoing<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = poll_queue_then_end(&mut this.messages, &mut this.end, cx);
        if let Poll::Ready(Some(Ok(_))) = next {
            *this.taken.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        }
        next
    }
}

/// The next queued message; once every sender is gone, the final status
/// (if one was given), then the end. Any server stream whose status
/// travels apart from its messages reads its queue this way.
pub fn poll_queue_then_end<T>(
    messages: &mut mpsc::Receiver<T>,
    end: &mut Option<oneshot::Receiver<Status>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<T, Status>>> {
    match messages.poll_recv(cx) {
        Poll::Ready(Some(message)) => return Poll::Ready(Some(Ok(message))),
        Poll::Pending => return Poll::Pending,
        Poll::Ready(None) => {}
    }
    // Every sender is gone: the stream is over.
    let Some(pending) = end.as_mut() else {
        return Poll::Ready(None);
    };
    match Pin::new(pending).poll(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(outcome) => {
            *end = None;
            Poll::Ready(outcome.ok().map(Err))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_stalls_and_the_final_status_still_arrives_after_the_messages() {
        let (out, mut stream) = outbound::<u32>(2);
        out.send(1, Duration::from_millis(10)).await.expect("room");
        out.send(2, Duration::from_millis(10)).await.expect("room");
        assert!(matches!(
            out.send(3, Duration::from_millis(10)).await,
            Err(Stop::Stalled)
        ));
        out.finish(Status::resource_exhausted("stalled"));
        assert_eq!(stream.next().await.map(|m| m.ok()), Some(Some(1)));
        assert_eq!(stream.next().await.map(|m| m.ok()), Some(Some(2)));
        let end = stream.next().await.expect("a final status").expect_err("an error");
        assert_eq!(end.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }
}
