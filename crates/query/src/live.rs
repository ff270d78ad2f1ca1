//! What live delivery hands around: each applied change, and the frames
//! subscribers get for it. Kept apart from the state that applies changes
//! and the dispatchers that deliver them, so both depend on it and not on
//! each other.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;
use truce_domain::{
    event::{EventBody, RecordedEvent},
    filter::Filter,
    incident::IncidentSummary,
};
use truce_log::Incarnation;
use truce_proto::{
    convert::{review_to_wire, timestamp_to_wire},
    frame::Frame,
    v1::{self, subscribe_response::Kind},
};

use crate::token::ResumeToken;

/// Changes kept for the live dispatchers; subscribers of one that falls
/// further behind read the log instead.
pub(crate) const LIVE_BUFFER: usize = 1024;

/// The channel each applied change is broadcast on, to the dispatchers.
pub(crate) type LiveChanges = broadcast::Sender<Arc<LiveChange>>;

/// An applied event, as live subscribers receive it: with the incident's
/// summary before it, which the view had at hand, so a subscriber can tell
/// an incident leaving its filter without reading the log.
#[derive(Debug)]
pub struct LiveChange {
    /// The event.
    pub event: RecordedEvent,
    /// The incident's summary before the event; `None` if it opened it.
    pub before: Option<Arc<IncidentSummary>>,
    /// The change as sent to subscribers it matches, encoded by the first.
    as_change: OnceLock<Frame>,
    /// The change as sent to subscribers it leaves, encoded by the first.
    as_departure: OnceLock<Frame>,
}

impl LiveChange {
    /// `event`, applied over `before`, with no frame encoded yet.
    pub(crate) fn new(event: RecordedEvent, before: Option<Arc<IncidentSummary>>) -> LiveChange {
        LiveChange {
            event,
            before,
            as_change: OnceLock::new(),
            as_departure: OnceLock::new(),
        }
    }

    /// The frame a subscriber with `filter` gets for this change: the
    /// change if the incident matches after it, a departure if it matched
    /// only before it, nothing otherwise. Each is encoded once, by the
    /// first subscriber that needs it.
    pub(crate) fn frame_for(&self, filter: &Filter, incarnation: &Incarnation) -> Option<Frame> {
        if filter.matches(self.event.incident()) {
            let frame = self
                .as_change
                .get_or_init(|| encode(&self.event, incarnation, Kind::Change));
            Some(frame.clone())
        } else if self.before.as_deref().is_some_and(|before| filter.matches(before)) {
            let frame = self
                .as_departure
                .get_or_init(|| encode(&self.event, incarnation, Kind::LeftFilter));
            Some(frame.clone())
        } else {
            None
        }
    }
}

/// `event` as a subscriber message of `kind`.
fn encode(event: &RecordedEvent, incarnation: &Incarnation, kind: fn(v1::IncidentChange) -> Kind) -> Frame {
    Frame::of(&v1::SubscribeResponse {
        kind: Some(kind(change(event, incarnation))),
    })
}

fn change(event: &RecordedEvent, incarnation: &Incarnation) -> v1::IncidentChange {
    let mut change = v1::IncidentChange {
        position: event.position.0,
        resume_token: ResumeToken::text(incarnation, event.position),
        incident: Some(v1::IncidentSummary::from(event.incident())),
        recorded_at: Some(timestamp_to_wire(event.recorded_at)),
        ..Default::default()
    };
    match &event.body {
        EventBody::ReportRecorded(recorded) => {
            change.set_kind(if recorded.opened_incident {
                v1::ChangeKind::IncidentOpened
            } else {
                v1::ChangeKind::ReportAdded
            });
            change.report_id = recorded.report.report_id.to_string();
            change.report = Some(v1::StoredReport::from(recorded.report.as_ref()));
        }
        EventBody::IncidentReviewed(reviewed) => {
            change.set_kind(v1::ChangeKind::Reviewed);
            change.review = Some(review_to_wire(&reviewed.review, event.position, event.recorded_at));
        }
        EventBody::ReportAmended(amended) => {
            change.set_kind(v1::ChangeKind::ReportAmended);
            change.report_id = amended.report.report_id.to_string();
            change.report = Some(v1::StoredReport::from(amended.report.as_ref()));
        }
        EventBody::ReportRetracted(retracted) => {
            change.set_kind(v1::ChangeKind::ReportRetracted);
            change.report_id = retracted.report_id.to_string();
            change.retraction = Some(v1::Retraction {
                position: event.position.0,
                recorded_at: Some(timestamp_to_wire(event.recorded_at)),
                reason: retracted.reason.clone(),
            });
        }
    }
    change
}
