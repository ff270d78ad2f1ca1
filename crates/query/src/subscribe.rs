//! `Subscribe`: a catch-up subscription.
//!
//! Each subscriber first joins the live broadcast, then reads history from
//! the log after its start point until it reaches the end, then takes live
//! events, skipping those history already gave it. The live buffer is
//! bounded and shared; a subscriber that falls more than [`LIVE_BUFFER`]
//! events behind (a slow reader) loses its place in it, and goes back to
//! reading history from exactly where it was: nothing is lost, nothing is
//! repeated, and nobody else waits. Its own output queue is small, so its
//! server memory stays bounded whatever its backlog.
//!
//! [`LIVE_BUFFER`]: crate::follower::LIVE_BUFFER

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use truce_domain::{
    Position,
    event::{EventBody, RecordedEvent},
    filter::Filter,
};
use truce_proto::{
    ServiceError,
    convert::{event_from_wire, timestamp_to_wire},
    v1::{self, subscribe_response::Kind},
};
use truce_serve::Stopping;

use crate::{follower::QueryState, token::ResumeToken};

/// Events read from history per page.
const HISTORY_PAGE: usize = 256;
/// Messages queued for one subscriber's connection.
pub const OUTPUT_QUEUE: usize = 32;
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Bounds of the heartbeat interval a client may ask for.
pub const HEARTBEAT_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));

/// Where a subscription starts: after this position.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// After the current position of the view.
    Now,
    /// After the given position.
    After(Position),
}

/// A validated subscription request.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Which incidents.
    pub filter: Filter,
    /// From where.
    pub start: Start,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

impl Subscription {
    /// Validates a request, before any stream opens.
    pub fn from_request(request: &v1::SubscribeRequest, state: &QueryState) -> Result<Subscription, ServiceError> {
        let filter = Filter::parse(&request.filter).map_err(|e| ServiceError::invalid("filter", e.to_string()))?;
        let start = match &request.start {
            None | Some(v1::subscribe_request::Start::FromNow(_)) => Start::Now,
            Some(v1::subscribe_request::Start::FromBeginning(_)) => Start::After(Position::ZERO),
            Some(v1::subscribe_request::Start::AfterPosition(p)) => Start::After(Position(*p)),
            Some(v1::subscribe_request::Start::ResumeToken(text)) => {
                let token = ResumeToken::decode(text)?;
                if token.incarnation != *state.incarnation() {
                    return Err(ServiceError::OutOfRange(format!(
                        "the resume token is for log incarnation {}, but this service follows {}; list again and subscribe from its position",
                        token.incarnation,
                        state.incarnation()
                    )));
                }
                Start::After(token.position)
            }
        };
        let heartbeat = match &request.heartbeat_interval {
            None => DEFAULT_HEARTBEAT,
            Some(d) if d.seconds == 0 && d.nanos == 0 => DEFAULT_HEARTBEAT,
            Some(d) => {
                let (min, max) = HEARTBEAT_BOUNDS;
                let wanted = u64::try_from(d.seconds)
                    .ok()
                    .zip(u32::try_from(d.nanos).ok())
                    .map(|(s, n)| Duration::new(s, n))
                    .filter(|wanted| (min..=max).contains(wanted));
                wanted.ok_or_else(|| {
                    ServiceError::invalid("heartbeat_interval", format!("must be between {min:?} and {max:?}"))
                })?
            }
        };
        Ok(Subscription {
            filter,
            start,
            heartbeat,
        })
    }
}

/// Runs one subscription, sending into `out` until the client goes away,
/// the service stops or the log fails.
pub async fn run(
    state: Arc<QueryState>,
    subscription: Subscription,
    out: mpsc::Sender<Result<v1::SubscribeResponse, Status>>,
    stopping: Stopping,
) {
    let outcome = tokio::select! {
        outcome = deliver(&state, &subscription, &out) => outcome,
        () = stopping.wait() => Err(Status::unavailable("the query service is shutting down; resume from your last token")),
        () = out.closed() => return,
    };
    if let Err(status) = outcome {
        let _ = out.send(Err(status)).await;
    }
}

fn token(state: &QueryState, position: Position) -> String {
    ResumeToken {
        incarnation: state.incarnation().clone(),
        position,
    }
    .encode()
}

fn change(state: &QueryState, event: &RecordedEvent) -> v1::SubscribeResponse {
    let EventBody::ReportRecorded(recorded) = &event.body;
    let kind = if recorded.opened_incident {
        v1::ChangeKind::IncidentOpened
    } else {
        v1::ChangeKind::ReportAdded
    };
    v1::SubscribeResponse {
        kind: Some(Kind::Change(v1::IncidentChange {
            position: event.position.0,
            resume_token: token(state, event.position),
            kind: kind as i32,
            incident: Some(v1::IncidentSummary::from(&recorded.incident)),
            report: Some(v1::StoredReport::from(&recorded.report)),
            recorded_at: Some(timestamp_to_wire(event.recorded_at)),
        })),
    }
}

/// The delivery loop. Returns `Ok` when the client went away.
async fn deliver(
    state: &QueryState,
    subscription: &Subscription,
    out: &mpsc::Sender<Result<v1::SubscribeResponse, Status>>,
) -> Result<(), Status> {
    // Join live before reading anything, so no event can fall between
    // history and live.
    let mut live = state.live.subscribe();
    let after = match subscription.start {
        Start::Now => state.read_view().position(),
        Start::After(position) => position,
    };
    let subscribed = v1::SubscribeResponse {
        kind: Some(Kind::Subscribed(v1::Subscribed {
            position: after.0,
            resume_token: token(state, after),
        })),
    };
    if out.send(Ok(subscribed)).await.is_err() {
        return Ok(());
    }
    // Everything up to `delivered` has been considered and, if it matched,
    // sent.
    let mut delivered = after;
    // Heartbeats come when no matching change was sent for the interval,
    // however much non-matching traffic passes.
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        // Catch up from history until it has nothing more.
        loop {
            let entries = state
                .history
                .read(delivered.next().0, HISTORY_PAGE)
                .await
                .map_err(|e| Status::from(ServiceError::Internal(e.to_string())))?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                let event = event_from_wire(entry.position, &entry.payload)
                    .map_err(|e| Status::from(ServiceError::Internal(e)))?;
                if subscription.filter.matches(event.incident()) {
                    if out.send(Ok(change(state, &event))).await.is_err() {
                        return Ok(());
                    }
                    quiet_since = tokio::time::Instant::now();
                }
                delivered = event.position;
            }
        }
        // Live, until the buffer overflows.
        loop {
            let received = tokio::time::timeout_at(quiet_since + subscription.heartbeat, live.recv()).await;
            let event = match received {
                Err(_idle) => {
                    let heartbeat = v1::SubscribeResponse {
                        kind: Some(Kind::Heartbeat(v1::Heartbeat {
                            position: delivered.0,
                            resume_token: token(state, delivered),
                            head_position: state.read_view().position().0,
                        })),
                    };
                    if out.send(Ok(heartbeat)).await.is_err() {
                        return Ok(());
                    }
                    quiet_since = tokio::time::Instant::now();
                    continue;
                }
                Ok(Ok(event)) => event,
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, at = %delivered, "subscriber fell behind live; reading history");
                    break;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(Status::unavailable(
                        "the view stopped following the log; resume from your last token",
                    ));
                }
            };
            if event.position <= delivered {
                continue; // history gave it already
            }
            if event.position != delivered.next() {
                break; // a gap: read it from history
            }
            if subscription.filter.matches(event.incident()) {
                if out.send(Ok(change(state, &event))).await.is_err() {
                    return Ok(());
                }
                quiet_since = tokio::time::Instant::now();
            }
            delivered = event.position;
        }
    }
}
