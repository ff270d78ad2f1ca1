//! A monitor's ruling on an incident, under the quorum rule of
//! [`crate::review`].

use std::sync::Arc;

use super::{Decision, Outcome, Record, Rules, Stamp, summary_of};
use crate::{
    Position,
    event::{EventBody, IncidentReviewed, RecordedEvent},
    incident::IncidentSummary,
    rejection::Rejection,
    review::{Review, apply_review},
};

/// Where a review was recorded, and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    /// The review's position.
    pub position: Position,
    /// The incident after it.
    pub incident: IncidentSummary,
}

/// Decides a review.
pub(super) fn decide(review: Review, stamp: Stamp, rules: &Rules, record: &impl Record) -> Result<Decision, Rejection> {
    let mut incident = summary_of(record, review.incident_id)?.clone();
    let previous_position = incident.updated_position;
    apply_review(&mut incident, &review, rules.quorum, stamp.recorded_at, stamp.position)?;
    let event = RecordedEvent {
        position: stamp.position,
        recorded_at: stamp.recorded_at,
        body: EventBody::IncidentReviewed(IncidentReviewed {
            review,
            incident: Arc::new(incident.clone()),
            previous_position,
        }),
    };
    Ok(Decision::Record {
        event,
        outcome: Outcome::Reviewed(Box::new(Reviewed {
            position: stamp.position,
            incident,
        })),
    })
}
