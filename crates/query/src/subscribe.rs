//! `Subscribe`: a catch-up subscription.
//!
//! Each subscriber reads history from the log after its start point until
//! it reaches the end, then attaches to a live dispatcher ([`fanout`]),
//! which queues the changes it should get as they are applied, after
//! everything history gave it. A subscriber whose client reads slower than
//! changes come (its queue fills) is detached and goes back to reading
//! history from exactly where it was: nothing is lost, nothing is
//! repeated, and nobody else waits. Recent history is read from the
//! changes held in memory for everyone ([`recent`]), older history from
//! the log. Its queue holds encoded messages: at
//! most [`QUEUE`] of its own (history, progress) and up to [`LIVE_QUEUE`]
//! live changes, each shared with every subscriber it goes to, so its
//! server memory stays bounded whatever its backlog.
//!
//! [`QUEUE`]: crate::outbox::QUEUE
//! [`LIVE_QUEUE`]: crate::outbox::LIVE_QUEUE
//!
//! [`fanout`]: crate::fanout
//! [`recent`]: crate::recent

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tonic::Status;
use truce_domain::{Position, Timestamp, filter::Filter};
use truce_log::{LogEntry, LogError, ReadAhead};
use truce_proto::{
    ServiceError,
    convert::{StoredEvent, timestamp_to_wire},
    frame::Frame,
    query::{Start as Asked, Subscribing},
    v1::{self, subscribe_response::Kind},
};
use truce_serve::{Stopping, admission::Permit, revocation::Revocation};

use crate::{
    fanout::{Detached, LiveSubscriber},
    live::LiveChange,
    outbox::{Outbox, Stop},
    state::QueryState,
    token::ResumeToken,
};

/// Events read from history per page.
const HISTORY_PAGE: usize = 512;

/// Held changes considered per turn of catch-up.
const RECENT_BATCH: usize = 256;

/// Stored bytes read from history per page, at most: a subscriber that
/// stops reading holds the page it is sent and the one read ahead,
/// decoded, so this bounds what it costs.
const HISTORY_PAGE_BYTES: usize = 64 * 1024;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// After the current position of the view.
    Now,
    /// After the given position.
    After(Position),
    /// After the last position recorded before this time.
    Time(Timestamp),
}

/// A validated subscription request.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// Which incidents.
    pub(crate) filter: Filter,
    /// From where.
    pub(crate) start: Start,
    /// Send matching state as of the start first.
    pub(crate) snapshot: bool,
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
}

impl Subscription {
    /// The subscription `asked` for, its resume token checked against the
    /// log this service follows, before any stream opens.
    pub(crate) fn resolve(asked: Subscribing, state: &QueryState) -> Result<Subscription, ServiceError> {
        let start = match asked.start {
            Asked::Now => Start::Now,
            Asked::After(position) => Start::After(position),
            Asked::Time(time) => Start::Time(time),
            Asked::Token(text) => Start::After(resumed_at(&text, state)?),
        };
        Ok(Subscription {
            filter: asked.filter,
            start,
            snapshot: asked.snapshot,
            heartbeat: asked.heartbeat,
        })
    }
}

/// Where a resume token says to resume, if it is for the log this service
/// follows.
fn resumed_at(text: &str, state: &QueryState) -> Result<Position, ServiceError> {
    let token = ResumeToken::decode(text)?;
    if token.incarnation != *state.incarnation() {
        return Err(ServiceError::OutOfRange {
            message: format!(
                "the resume token is for log incarnation {}, but this service follows {}; list again and subscribe from the listing's position",
                truce_domain::quote(&token.incarnation.to_string()),
                state.incarnation()
            ),
            reason: "OTHER_LOG_INCARNATION",
            metadata: vec![
                ("first_available_position", "1".into()),
                ("incarnation", state.incarnation().to_string()),
            ],
        });
    }
    Ok(token.position)
}

/// Timeouts that end a subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A reader that takes nothing for this long is ended.
    pub(crate) stall: Duration,
    /// A log not heard from for this long ends the stream.
    pub(crate) stale: Duration,
}

/// Runs one subscription until the client goes away, the service stops,
/// the reader stalls, its caller's credential is revoked or rotated out
/// (`revocation`), or the log fails. `permit` is held for its lifetime.
pub(crate) async fn run(
    state: Arc<QueryState>,
    subscription: Subscription,
    out: Outbox,
    timeouts: Timeouts,
    stopping: Stopping,
    permit: Permit,
    revocation: Revocation,
) {
    let mut delivery = Delivery {
        state: &state,
        subscription: &subscription,
        out: &out,
        timeouts,
        delivered: Position::ZERO,
        quiet_since: Instant::now(),
    };
    let outcome = tokio::select! {
        outcome = delivery.run() => outcome,
        () = stopping.wait() => Err(Stop::End(Status::unavailable(
            "the query service is shutting down; resume from your last token elsewhere",
        ))),
        () = out.closed() => Err(Stop::Gone),
        () = revocation.revoked() => Err(Stop::End(Revocation::refusal().into())),
    };
    drop(permit);
    if let Err(Stop::End(status)) = outcome {
        out.finish(status);
    }
}

/// Stored events read only as far as a subscriber needs.
fn stored_events(entries: Vec<LogEntry>) -> Result<Vec<StoredEvent>, LogError> {
    entries
        .into_iter()
        .map(|entry| {
            StoredEvent::decode(entry.position, entry.payload.into()).map_err(|what| LogError::Corrupt {
                position: entry.position,
                what,
            })
        })
        .collect()
}

/// One subscription's progress.
struct Delivery<'a> {
    state: &'a QueryState,
    subscription: &'a Subscription,
    out: &'a Outbox,
    timeouts: Timeouts,
    /// Everything up to here has been considered and, if it matched, sent.
    delivered: Position,
    /// When the last message was sent; heartbeats fill silences.
    quiet_since: Instant,
}

fn internal(error: impl std::fmt::Display) -> Stop {
    Stop::End(ServiceError::Internal(error.to_string()).into())
}

impl Delivery<'_> {
    fn token(&self, position: Position) -> String {
        ResumeToken::text(self.state.incarnation(), position)
    }

    fn checkpoint(&self) -> v1::Checkpoint {
        v1::Checkpoint {
            position: self.delivered.0,
            resume_token: self.token(self.delivered),
        }
    }

    async fn send(&mut self, kind: Kind) -> Result<(), Stop> {
        self.send_frame(Frame::of(&v1::SubscribeResponse { kind: Some(kind) }))
            .await
    }

    async fn send_frame(&mut self, frame: Frame) -> Result<(), Stop> {
        match self.out.send(frame, self.timeouts.stall).await {
            Ok(()) => {
                self.quiet_since = Instant::now();
                Ok(())
            }
            Err(Stop::Stalled) => Err(Stop::End(
                ServiceError::ResourceExhausted {
                    message: format!(
                        "the subscriber took nothing for {:?}; resume from the token in the details",
                        self.timeouts.stall
                    ),
                    reason: "SLOW_CONSUMER",
                    metadata: vec![
                        ("resume_token", self.token(self.delivered)),
                        ("position", self.delivered.0.to_string()),
                    ],
                }
                .into(),
            )),
            Err(other) => Err(other),
        }
    }

    async fn run(&mut self) -> Result<(), Stop> {
        let after = match self.subscription.start {
            Start::Now => self.state.read_view().position(),
            Start::After(position) => position,
            Start::Time(time) => self.state.position_before(time).await.map_err(internal)?,
        };
        self.delivered = after;
        let subscribed = v1::Subscribed {
            position: after.0,
            resume_token: self.token(after),
        };
        self.send(Kind::Subscribed(subscribed)).await?;
        if self.subscription.snapshot {
            self.snapshot(after).await?;
        }
        loop {
            self.catch_up().await?;
            let checkpoint = self.checkpoint();
            self.send(Kind::CaughtUp(checkpoint)).await?;
            self.live().await?;
            let checkpoint = self.checkpoint();
            self.send(Kind::FellBehind(checkpoint)).await?;
        }
    }

    /// Sends every matching incident as of `at`, then `snapshot_end`.
    async fn snapshot(&mut self, at: Position) -> Result<(), Stop> {
        // A start ahead of the view waits until the view gets there.
        let mut applied = self.state.applied.subscribe();
        applied
            .wait_for(|position| *position >= at)
            .await
            .map_err(|_| Stop::End(Status::unavailable("the view stopped following the log")))?;
        let candidates = self.state.read_view().summaries_up_to(at);
        for current in candidates {
            let Some(summary) = self.state.as_of(current, at).await.map_err(internal)? else {
                continue;
            };
            if self.subscription.filter.matches(&summary) {
                self.send(Kind::Snapshot(v1::IncidentSummary::from(summary.as_ref())))
                    .await?;
            }
        }
        let end = v1::Checkpoint {
            position: at.0,
            resume_token: self.token(at),
        };
        self.send(Kind::SnapshotEnd(end)).await
    }

    /// Reads history until it has nothing more: from the changes held in
    /// memory ([`crate::recent`]) where they reach back far enough, from
    /// the log before that.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            match self.state.recent.after(self.delivered, RECENT_BATCH) {
                Some(changes) if changes.is_empty() => return Ok(()),
                Some(changes) => self.consider_recent(&changes).await?,
                None => {
                    if !self.read_log_until_recent().await? {
                        return Ok(());
                    }
                }
            }
            // A long stretch of history that does not match still shows
            // progress.
            if self.quiet_since.elapsed() >= self.subscription.heartbeat {
                self.heartbeat().await?;
            }
        }
    }

    /// Sends each held change the filter selects, shared with every other
    /// subscriber it goes to.
    async fn consider_recent(&mut self, changes: &[Arc<LiveChange>]) -> Result<(), Stop> {
        let incarnation = self.state.incarnation();
        for change in changes {
            if let Some(frame) = change.frame_for(&self.subscription.filter, incarnation) {
                self.send_frame(frame).await?;
            }
            self.delivered = change.event.position;
        }
        Ok(())
    }

    /// Reads the log from where delivery got to until the changes held in
    /// memory reach back that far (true) or the log has nothing more
    /// (false). The next page is read and decoded on another task while
    /// this one is sent, so a long replay keeps both halves busy.
    async fn read_log_until_recent(&mut self) -> Result<bool, Stop> {
        let mut pages = ReadAhead::new(
            self.state.history.clone(),
            self.delivered.next().0,
            u64::MAX,
            (HISTORY_PAGE, HISTORY_PAGE_BYTES),
            stored_events,
        );
        loop {
            let events = pages.next_page().await.map_err(internal)?;
            if events.is_empty() {
                return Ok(false);
            }
            for event in &events {
                self.consider_stored(event).await?;
            }
            if self.quiet_since.elapsed() >= self.subscription.heartbeat {
                self.heartbeat().await?;
            }
            if self.state.recent.after(self.delivered, 0).is_some() {
                return Ok(true);
            }
        }
    }

    /// Attaches to a live dispatcher and lets it deliver, sending
    /// heartbeats in silences, until it is detached: then returns, to
    /// read history from where it got to.
    async fn live(&mut self) -> Result<(), Stop> {
        let subscriber = Arc::new(LiveSubscriber::new(
            self.subscription.filter.clone(),
            self.out.live_sender(),
            self.delivered,
            self.quiet_since,
        ));
        // Attaching fails while the dispatcher has already handed out
        // changes past what history gave: those are read first.
        let _membership = loop {
            if let Some(membership) = self.state.fanout.attach(&subscriber) {
                break membership;
            }
            self.catch_up().await?;
            let mut progress = subscriber.progress();
            progress.delivered = self.delivered;
            progress.quiet_since = self.quiet_since;
        };
        // One timer, moved only when a silence ends: most changes do not
        // match a subscriber's filter and leave its deadline alone.
        let mut deadline = self.quiet_since + self.subscription.heartbeat;
        let quiet = tokio::time::sleep_until(deadline);
        tokio::pin!(quiet);
        loop {
            let due = {
                let progress = subscriber.progress();
                self.delivered = progress.delivered;
                self.quiet_since = progress.quiet_since;
                match progress.detached {
                    None => {}
                    Some(Detached::Behind) => return Ok(()),
                    Some(Detached::Gone) => return Err(Stop::Gone),
                }
                progress.quiet_since + self.subscription.heartbeat
            };
            if due != deadline {
                deadline = due;
                quiet.as_mut().reset(deadline);
            }
            tokio::select! {
                () = subscriber.detached() => {}
                () = &mut quiet => {
                    // Read before the subscriber is locked, so its dispatcher
                    // never waits on the view's lock.
                    let head = self.state.read_view().position();
                    let mut progress = subscriber.progress();
                    if progress.detached.is_none() && progress.quiet_since + self.subscription.heartbeat <= Instant::now() {
                        let heartbeat = self.heartbeat_frame(progress.delivered, head)?;
                        // A full queue already tells the client more than a
                        // heartbeat would.
                        if !subscriber.try_send(&mut progress, heartbeat) {
                            progress.quiet_since = Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// Sends a stored event if the incident matches after it, as a
    /// departure if it matched only before it, and nothing otherwise: its
    /// change is written around the stored bytes, and its incident decoded
    /// only when there is a filter to judge it by.
    async fn consider_stored(&mut self, event: &StoredEvent) -> Result<(), Stop> {
        let filter = &self.subscription.filter;
        let departure = match filter.expr() {
            None => Some(false),
            Some(_) if filter.matches(&event.incident().map_err(internal)?) => Some(false),
            Some(_) => match event.previous_position() {
                None => None,
                Some(previous) => {
                    let earlier = self.state.event_at(previous).await.map_err(internal)?;
                    filter.matches(earlier.incident()).then_some(true)
                }
            },
        };
        if let Some(departure) = departure {
            let frame = event.frame(self.token(event.position()), departure).map_err(internal)?;
            self.send_frame(frame).await?;
        }
        self.delivered = event.position();
        Ok(())
    }

    /// Says how far delivery has got, unless the log has gone quiet for
    /// too long, which ends the stream: a subscriber must be able to tell a
    /// quiet log from a dead one.
    async fn heartbeat(&mut self) -> Result<(), Stop> {
        let head = self.state.read_view().position();
        let heartbeat = self.heartbeat_frame(self.delivered, head)?;
        self.send_frame(heartbeat).await
    }

    /// A heartbeat for `delivered` with the view at `head`, or the end of
    /// the stream if the log has been silent too long.
    fn heartbeat_frame(&self, delivered: Position, head: Position) -> Result<Frame, Stop> {
        let heard = self.state.log_heard_at();
        let silent = Timestamp::from_system(std::time::SystemTime::now()).abs_diff(heard);
        if silent > self.timeouts.stale {
            return Err(Stop::End(Status::unavailable(format!(
                "the log has not been heard from for {}s; resume from your last token on a service that is current",
                silent.as_secs()
            ))));
        }
        let heartbeat = v1::Heartbeat {
            position: delivered.0,
            resume_token: self.token(delivered),
            // Everything delivered was applied first: a head read a moment
            // earlier is never behind it.
            head_position: head.max(delivered).0,
            log_heard_at: Some(timestamp_to_wire(heard)),
        };
        Ok(Frame::of(&v1::SubscribeResponse {
            kind: Some(Kind::Heartbeat(heartbeat)),
        }))
    }
}
