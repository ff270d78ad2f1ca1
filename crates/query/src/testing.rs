//! Changes for the unit tests of live delivery.

use std::sync::Arc;

use truce_domain::{
    PartyId, Position,
    event::{EventBody, RecordedEvent, ReportRetracted},
    incident::IncidentSummary,
    testing::report_at,
};

use crate::live::LiveChange;

/// A retraction at `position`, the smallest change to build.
pub(crate) fn retraction_at(position: u64) -> Arc<LiveChange> {
    let report = report_at(1, |draft| draft);
    let mut incident = IncidentSummary::open(&report, report.received_at);
    incident.updated_position = Position(position);
    let party: PartyId = "idf".parse().expect("a party id");
    let event = RecordedEvent {
        position: Position(position),
        recorded_at: report.received_at,
        body: EventBody::ReportRetracted(ReportRetracted {
            report_id: report.report_id,
            reporting_party: party,
            reason: "withdrawn".into(),
            incident: Arc::new(incident),
            previous_position: Position(1),
            version: 1,
            signature: None,
        }),
    };
    Arc::new(LiveChange::new(event, None))
}
