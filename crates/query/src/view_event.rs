//! An event as the view applies it: from a decoded event (applied live),
//! or read from its stored bytes with only its incident summary decoded
//! and its report kept encoded (building the view at start).

use std::sync::Arc;

use prost::bytes::Bytes;
use truce_domain::{
    Position, ReportId,
    event::{EventBody, RecordedEvent},
    incident::{IncidentSummary, RecordedReview},
    report::Retraction,
};
use truce_proto::convert::{CarriedReport, StoredEvent, event_from_wire, stored_report_id};

use crate::held::HeldReport;

/// What the view takes from an event.
#[derive(Debug, Clone)]
pub(crate) struct ViewEvent {
    /// Where it is in the log.
    pub(crate) position: Position,
    /// The incident's summary after it.
    pub(crate) incident: Arc<IncidentSummary>,
    /// What it did.
    pub(crate) body: ViewBody,
}

/// What an event did, as the view needs it.
#[derive(Debug, Clone)]
pub(crate) enum ViewBody {
    /// A report was recorded (and opened its incident if it is new).
    Recorded(HeldReport),
    /// A report's new version.
    Amended(HeldReport),
    /// A report was retracted.
    Retracted(ReportId, Retraction),
    /// A monitor ruled.
    Reviewed(RecordedReview),
}

impl ViewEvent {
    /// From a decoded event, sharing its summary and report.
    pub(crate) fn of(event: &RecordedEvent) -> ViewEvent {
        let body = match &event.body {
            EventBody::ReportRecorded(recorded) => {
                ViewBody::Recorded(HeldReport::decoded(Arc::clone(&recorded.report)))
            }
            EventBody::ReportAmended(amended) => ViewBody::Amended(HeldReport::decoded(Arc::clone(&amended.report))),
            EventBody::ReportRetracted(retracted) => ViewBody::Retracted(
                retracted.report_id,
                Retraction {
                    position: event.position,
                    recorded_at: event.recorded_at,
                    reason: retracted.reason.clone(),
                },
            ),
            EventBody::IncidentReviewed(reviewed) => ViewBody::Reviewed(RecordedReview {
                position: event.position,
                recorded_at: event.recorded_at,
                review: reviewed.review.clone(),
            }),
        };
        ViewEvent {
            position: event.position,
            incident: Arc::clone(event.shared_incident()),
            body,
        }
    }

    /// From the bytes stored at `position`. A report, recorded or amended,
    /// stays encoded; only its id and the incident summary are decoded.
    /// Reviews and retractions (rare, and small) are decoded whole. An
    /// error means the bytes are not an event this version understands.
    pub(crate) fn from_stored(position: u64, payload: Vec<u8>) -> Result<ViewEvent, String> {
        let payload = Bytes::from(payload);
        let stored = StoredEvent::decode(position, payload.clone())?;
        let held = |report: &[u8]| stored_report_id(report).map(|id| HeldReport::encoded(id, report));
        let body = match stored.carried_report() {
            Some(CarriedReport::Recorded(report)) => ViewBody::Recorded(held(report)?),
            Some(CarriedReport::Amended(report)) => ViewBody::Amended(held(report)?),
            None => return event_from_wire(position, &payload).map(|event| ViewEvent::of(&event)),
        };
        Ok(ViewEvent {
            position: Position(position),
            incident: Arc::new(stored.incident()?),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::ops::{Bound, ControlFlow};

    use truce_domain::{
        IncidentId, Timestamp,
        event::{IncidentReviewed, ReportAmended, ReportRecorded, ReportRetracted},
        filter::Filter,
        incident::IncidentStatus,
        report::{Category, CountRange, StoredReport},
        review::Review,
        testing::report_at,
    };
    use truce_proto::convert::event_to_wire;

    use super::*;
    use crate::view::{Building, View};

    fn recorded(report: StoredReport, incident: IncidentSummary, previous: Option<u64>) -> RecordedEvent {
        RecordedEvent {
            position: report.position(),
            recorded_at: Timestamp(report.position().0 as i64 * 1000),
            body: EventBody::ReportRecorded(ReportRecorded {
                opened_incident: previous.is_none(),
                report: Arc::new(report),
                incident: Arc::new(incident),
                content_digest: [7; 32],
                previous_position: previous.map(Position),
            }),
        }
    }

    /// Two incidents, one of which gets a second report, an amendment, a
    /// retraction and a review.
    fn events() -> Vec<RecordedEvent> {
        let at = |n: u64| Timestamp(n as i64 * 1000);
        let first = report_at(1, |r| r.in_area("Rafah").with_killed("idf", 1, 1));
        let mut rafah = IncidentSummary::open(&first, at(1));
        let mut events = vec![recorded(first.clone(), rafah.clone(), None)];

        let mut second = report_at(2, |r| r.in_area("Rafah").with_killed("hamas", 3, 4));
        second.incident_id = rafah.id;
        second.report.reporting_party = "hamas".parse().unwrap();
        rafah.absorb(&second, at(2));
        events.push(recorded(second.clone(), rafah.clone(), Some(1)));

        let other = report_at(3, |r| r.in_area("Jabalia").category(Category::AirStrike));
        events.push(recorded(other.clone(), IncidentSummary::open(&other, at(3)), None));

        let mut amended = first.clone();
        amended.report.casualties[0].killed = CountRange::new(2, None, 2).ok();
        amended.version = 2;
        amended.version_position = Position(4);
        amended.amendment_reason = Some("a second body".into());
        rafah = rafah.refolded([&amended, &second], Position(4), at(4));
        events.push(RecordedEvent {
            position: Position(4),
            recorded_at: at(4),
            body: EventBody::ReportAmended(ReportAmended {
                report: Arc::new(amended.clone()),
                incident: Arc::new(rafah.clone()),
                previous_position: Position(2),
            }),
        });

        let mut withdrawn = second.clone();
        withdrawn.retraction = Some(Retraction {
            position: Position(5),
            recorded_at: at(5),
            reason: "unverified".into(),
        });
        rafah = rafah.refolded([&amended, &withdrawn], Position(5), at(5));
        events.push(RecordedEvent {
            position: Position(5),
            recorded_at: at(5),
            body: EventBody::ReportRetracted(ReportRetracted {
                report_id: second.report_id,
                reporting_party: "hamas".parse().unwrap(),
                reason: "unverified".into(),
                incident: Arc::new(rafah.clone()),
                previous_position: Position(4),
                version: 1,
                signature: None,
            }),
        });

        rafah.status = IncidentStatus::UnderReview;
        rafah.updated_position = Position(6);
        events.push(RecordedEvent {
            position: Position(6),
            recorded_at: at(6),
            body: EventBody::IncidentReviewed(IncidentReviewed {
                review: Review {
                    incident_id: rafah.id,
                    reviewer: "egypt-monitor".into(),
                    reviewer_party: "egypt".parse().unwrap(),
                    status: IncidentStatus::UnderReview,
                    finding: "looking".into(),
                    responsible: None,
                },
                incident: Arc::new(rafah),
                previous_position: Position(5),
            }),
        });
        events
    }

    fn stored(event: &RecordedEvent) -> ViewEvent {
        ViewEvent::from_stored(event.position.0, event_to_wire(event)).expect("decodes")
    }

    /// Everything a call can read from `view`.
    fn answers(view: &View) -> String {
        let mut out = format!("at {}\n", view.position());
        for summary in view.summaries() {
            let incident = view.incident(summary.id).expect("listed").decode().expect("decodes");
            out += &format!("{incident:?}\n");
            for report in &incident.reports {
                let current = view.report(report.report_id).expect("found").report().expect("decodes");
                let earlier: Vec<_> = view
                    .incident_of(report.report_id)
                    .expect("found")
                    .earlier_versions_of(report.report_id)
                    .map(|r| r.report().expect("decodes"))
                    .collect();
                out += &format!("{current:?} {earlier:?}\n");
            }
        }
        for text in [
            "",
            "area = \"Rafah\"",
            "status = UNDER_REVIEW",
            "reporter = \"hamas\"",
            "category = AIR_STRIKE",
        ] {
            let filter = Filter::parse(text).expect("a filter");
            let mut ids = Vec::new();
            view.visit_candidates(&filter, (Bound::Unbounded, Bound::Unbounded), false, |s| {
                ids.push(s.id);
                ControlFlow::Continue(())
            });
            out += &format!("{text}: {ids:?}\n");
        }
        for position in 0..=6 {
            let changed: Vec<IncidentId> = view.changed_since(Position(position)).iter().map(|s| s.id).collect();
            out += &format!("changed since {position}: {changed:?}\n");
        }
        out
    }

    #[test]
    fn a_view_built_from_stored_events_answers_as_one_applied_live() {
        let events = events();
        let mut live = View::default();
        for event in &events {
            live.apply(event);
        }
        let mut building = Building::new(View::default());
        for event in &events {
            building.apply(stored(event));
        }
        let built = building.finish();
        assert_eq!(answers(&built), answers(&live));

        // Built from the first events at start, then applied live.
        for split in 1..events.len() {
            let mut building = Building::new(View::default());
            for event in &events[..split] {
                building.apply(stored(event));
            }
            let mut restarted = building.finish();
            for event in &events[split..] {
                restarted.apply(event);
            }
            assert_eq!(answers(&restarted), answers(&live), "restarted after {split} events");
        }
    }

    #[test]
    fn reports_stay_encoded_until_asked_for() {
        let event = &events()[0];
        let ViewBody::Recorded(held) = stored(event).body else {
            panic!("a recorded report");
        };
        let EventBody::ReportRecorded(recorded) = &event.body else {
            panic!("a recorded report");
        };
        assert_eq!(held.report().expect("decodes"), recorded.report);
        assert!(
            HeldReport::encoded(held.id(), b"\xff\xff not a report")
                .report()
                .is_err(),
            "undecodable bytes are an error when asked for"
        );
    }
}
