//! A subscriber's outgoing queue, and the stream tonic sends from it.
//!
//! Messages are queued encoded ([`Frame`]s), so a slot costs a shared
//! pointer, not a whole message, and a change many subscribers receive is
//! encoded once. The subscriber's task and the live dispatcher share the
//! queue: the dispatcher fills it up to [`LIVE_QUEUE`] without waiting, the
//! task's own messages wait while [`QUEUE`] are queued. The final status
//! travels apart from the messages, so it can always be delivered, even
//! when the queue is full because the reader stopped reading.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;
use truce_proto::frame::Frame;

/// Messages the subscriber's own task may have queued beyond what HTTP/2
/// flow control holds: history and control messages are encoded for one
/// subscriber, so few are let wait.
pub(crate) const QUEUE: usize = 16;

/// Messages queued at most, live changes included: live changes are
/// shared by every subscriber they go to and cost a pointer each here, so
/// a subscriber may fall this far behind live before it is sent back to
/// read history.
pub(crate) const LIVE_QUEUE: usize = 1024;

/// Why delivery stopped: the same reasons as any server stream's.
pub(crate) use truce_serve::outbound::Stop;

/// The sending side.
#[derive(Debug)]
pub(crate) struct Outbox {
    messages: mpsc::Sender<Frame>,
    end: oneshot::Sender<Status>,
}

/// A second sending side, for the live dispatcher, which never waits.
#[derive(Debug, Clone)]
pub(crate) struct LiveSender(mpsc::Sender<Frame>);

impl LiveSender {
    /// Queues `frame` if there is room now.
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), mpsc::error::TrySendError<Frame>> {
        self.0.try_send(frame)
    }
}

/// The stream tonic sends: the queued messages, then the final status if
/// there is one.
#[derive(Debug)]
pub(crate) struct Outgoing {
    messages: mpsc::Receiver<Frame>,
    end: Option<oneshot::Receiver<Status>>,
}

/// A connected outbox and stream.
pub(crate) fn outbox() -> (Outbox, Outgoing) {
    let (messages_tx, messages_rx) = mpsc::channel(LIVE_QUEUE);
    let (end_tx, end_rx) = oneshot::channel();
    (
        Outbox {
            messages: messages_tx,
            end: end_tx,
        },
        Outgoing {
            messages: messages_rx,
            end: Some(end_rx),
        },
    )
}

impl Outbox {
    /// Queues `frame` once fewer than [`QUEUE`] messages wait, waiting at
    /// most `stall` for that.
    pub(crate) async fn send(&self, frame: Frame, stall: Duration) -> Result<(), Stop> {
        let wanted = LIVE_QUEUE - QUEUE + 1;
        // Room now needs no timer: the common case of a reader that keeps
        // up, and of catch-up from memory, costs no timer per message.
        match self.messages.try_reserve_many(wanted) {
            Ok(mut permits) => {
                if let Some(permit) = permits.next() {
                    permit.send(frame);
                }
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Stop::Gone),
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
        let room = self.messages.reserve_many(wanted);
        match tokio::time::timeout(stall, room).await {
            Ok(Ok(mut permits)) => {
                if let Some(permit) = permits.next() {
                    permit.send(frame);
                }
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Stalled),
        }
    }

    /// A sending side for the live dispatcher.
    pub(crate) fn live_sender(&self) -> LiveSender {
        LiveSender(self.messages.clone())
    }

    /// Resolves when the client has gone away.
    pub(crate) async fn closed(&self) {
        self.messages.closed().await;
    }

    /// Ends the stream with `status` once the queued messages are sent.
    pub(crate) fn finish(self, status: Status) {
        let _ = self.end.send(status);
    }
}

impl Stream for Outgoing {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        truce_serve::outbound::poll_queue_then_end(&mut this.messages, &mut this.end, cx)
    }
}
