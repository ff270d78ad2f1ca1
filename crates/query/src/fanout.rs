//! Live delivery: a few dispatcher tasks hand each applied change to the
//! subscribers it concerns.
//!
//! A subscriber that has read history up to the live edge attaches to one
//! dispatcher. From then on the dispatcher judges each change against the
//! subscriber's filter and queues the frame it should get straight into
//! its outbox, so a change wakes only the connections it is sent on, not
//! every subscriber's task. The subscriber's own task sleeps until it is
//! due a heartbeat or is detached: by a change it would miss (a gap, when
//! the dispatcher itself fell behind the broadcast), by an outbox that is
//! full because its client reads slower than changes come, or by a client
//! that went away. A detached subscriber reads history from exactly where
//! it was, so nothing is lost and nothing repeated.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    sync::{Notify, broadcast},
    time::Instant,
};
use truce_domain::{Position, filter::Filter};
use truce_log::Incarnation;
use truce_proto::frame::Frame;

use crate::{
    live::{LiveChange, LiveChanges},
    outbox::LiveSender,
};

/// Hands changes to attached subscribers, spread over a few dispatchers.
#[derive(Debug)]
pub(crate) struct Fanout {
    shards: Vec<Arc<Shard>>,
    next_id: AtomicU64,
}

/// One dispatcher's subscribers.
#[derive(Debug, Default)]
struct Shard {
    members: Mutex<Members>,
}

#[derive(Debug, Default)]
struct Members {
    /// The last change this dispatcher handed out.
    dispatched: Position,
    attached: HashMap<u64, Arc<LiveSubscriber>>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Members> {
        // Nothing panics while holding it; the map is whole either way.
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Fanout {
    /// Starts one dispatcher per core, each taking every change `live`
    /// broadcasts. Tokens in the frames name `incarnation`.
    pub(crate) fn start(live: &LiveChanges, incarnation: &Incarnation) -> Fanout {
        let count = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let shards: Vec<Arc<Shard>> = (0..count).map(|_| Arc::default()).collect();
        for shard in &shards {
            tokio::spawn(dispatch(Arc::clone(shard), live.subscribe(), incarnation.clone()));
        }
        Fanout {
            shards,
            next_id: AtomicU64::new(0),
        }
    }

    /// Attaches `subscriber`, unless changes after the position it has
    /// delivered were already handed out: it must read those from history
    /// first and try again.
    pub(crate) fn attach(&self, subscriber: &Arc<LiveSubscriber>) -> Option<Membership> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shard = &self.shards[(id % self.shards.len() as u64) as usize];
        let mut members = shard.lock();
        if subscriber.progress().delivered < members.dispatched {
            return None;
        }
        members.attached.insert(id, Arc::clone(subscriber));
        Some(Membership {
            shard: Arc::clone(shard),
            id,
        })
    }
}

/// An attachment, ended when dropped.
#[derive(Debug)]
pub(crate) struct Membership {
    shard: Arc<Shard>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shard.lock().attached.remove(&self.id);
    }
}

/// Why a subscriber was detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    /// It would miss changes: it must read history from where it was.
    Behind,
    /// Its client went away.
    Gone,
}

/// How far live delivery has got for one subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Everything up to here has been considered and, if it matched, sent.
    pub(crate) delivered: Position,
    /// When the last message was queued; heartbeats fill silences.
    pub(crate) quiet_since: Instant,
    /// Set once the dispatcher stops serving it.
    pub(crate) detached: Option<Detached>,
}

/// A subscriber as its dispatcher sees it.
#[derive(Debug)]
pub(crate) struct LiveSubscriber {
    filter: Filter,
    outbox: LiveSender,
    progress: Mutex<Progress>,
    /// Raised when it is detached.
    detached: Notify,
}

impl LiveSubscriber {
    /// A subscriber with `filter` that has delivered through `delivered`.
    pub(crate) fn new(filter: Filter, outbox: LiveSender, delivered: Position, quiet_since: Instant) -> LiveSubscriber {
        LiveSubscriber {
            filter,
            outbox,
            progress: Mutex::new(Progress {
                delivered,
                quiet_since,
                detached: None,
            }),
            detached: Notify::new(),
        }
    }

    /// Its progress, locked: while it is held the dispatcher queues
    /// nothing for it, so a heartbeat built from it is in order.
    pub(crate) fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once it has been detached (at once if it already was).
    pub(crate) async fn detached(&self) {
        self.detached.notified().await;
    }

    /// Queues `frame` now if there is room, as part of `progress`.
    pub(crate) fn try_send(&self, progress: &mut Progress, frame: Frame) -> bool {
        if self.outbox.try_send(frame).is_ok() {
            progress.quiet_since = Instant::now();
            return true;
        }
        false
    }

    /// Hands it `change` at `now`; false once it is detached.
    fn offer(&self, change: &LiveChange, incarnation: &Incarnation, now: Instant) -> bool {
        let mut progress = self.progress();
        let position = change.event.position;
        if progress.detached.is_some() {
            return false;
        }
        if position <= progress.delivered {
            return true;
        }
        if position != progress.delivered.next() {
            return self.detach(&mut progress, Detached::Behind);
        }
        if let Some(frame) = change.frame_for(&self.filter, incarnation) {
            match self.outbox.try_send(frame) {
                Ok(()) => progress.quiet_since = now,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    return self.detach(&mut progress, Detached::Behind);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    return self.detach(&mut progress, Detached::Gone);
                }
            }
        }
        progress.delivered = position;
        true
    }

    fn detach(&self, progress: &mut Progress, why: Detached) -> bool {
        progress.detached = Some(why);
        self.detached.notify_one();
        false
    }
}

/// Hands each change `changes` brings to the shard's subscribers, in order.
async fn dispatch(shard: Arc<Shard>, mut changes: broadcast::Receiver<Arc<LiveChange>>, incarnation: Incarnation) {
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            // The next change shows every subscriber the gap.
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "a live dispatcher fell behind; its subscribers read history");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        // One reading of the clock for every subscriber the change goes to.
        let now = Instant::now();
        let mut members = shard.lock();
        members.dispatched = change.event.position;
        members
            .attached
            .retain(|_, subscriber| subscriber.offer(&change, &incarnation, now));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message;
    use tokio_stream::StreamExt;
    use truce_proto::v1::{SubscribeResponse, subscribe_response::Kind};

    use super::*;
    use crate::{
        outbox::{Outgoing, outbox},
        testing::retraction_at as change,
    };

    fn everything() -> Filter {
        Filter::parse("").expect("the empty filter")
    }

    /// The position of the next change queued, if one comes soon.
    async fn next_position(outgoing: &mut Outgoing) -> Option<u64> {
        let frame = tokio::time::timeout(Duration::from_millis(200), outgoing.next())
            .await
            .ok()??
            .expect("a message, not a status");
        match SubscribeResponse::decode(frame.bytes().clone())
            .expect("a response")
            .kind
        {
            Some(Kind::Change(change)) => Some(change.position),
            other => panic!("not a change: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_dispatcher_that_fell_behind_sends_its_subscribers_back_to_history() {
        let incarnation = Incarnation::from_text("test");
        let (live, _) = broadcast::channel(2);
        let fanout = Fanout::start(&live, &incarnation);
        let (outbox, mut outgoing) = outbox();
        let subscriber = Arc::new(LiveSubscriber::new(
            everything(),
            outbox.live_sender(),
            Position(0),
            Instant::now(),
        ));
        let _membership = fanout.attach(&subscriber).expect("nothing handed out yet");

        // Five changes before the dispatchers run: their rings hold two, so
        // they miss 1 to 3 and next see 4.
        for position in 1..=5 {
            live.send(change(position)).expect("dispatchers listen");
        }
        tokio::time::timeout(Duration::from_secs(5), subscriber.detached())
            .await
            .expect("detached");
        let progress = *subscriber.progress();
        assert_eq!(progress.detached, Some(Detached::Behind));
        assert_eq!(
            progress.delivered,
            Position(0),
            "nothing past the gap counts as delivered"
        );
        assert_eq!(next_position(&mut outgoing).await, None, "nothing queued past the gap");

        // It reads 1 to 5 from history; until it has, it may not attach
        // (to either dispatcher, once both have seen 5).
        while !fanout.shards.iter().all(|shard| shard.lock().dispatched == Position(5)) {
            tokio::task::yield_now().await;
        }
        let behind = Arc::new(LiveSubscriber::new(
            everything(),
            outbox.live_sender(),
            Position(3),
            Instant::now(),
        ));
        assert!(fanout.attach(&behind).is_none(), "4 and 5 were handed out");
        let caught_up = Arc::new(LiveSubscriber::new(
            everything(),
            outbox.live_sender(),
            Position(5),
            Instant::now(),
        ));
        let _membership = fanout.attach(&caught_up).expect("caught up");
        live.send(change(6)).expect("dispatchers listen");
        assert_eq!(next_position(&mut outgoing).await, Some(6));
        assert_eq!(caught_up.progress().delivered, Position(6));
        assert_eq!(caught_up.progress().detached, None);
    }
}
