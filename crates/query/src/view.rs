//! The view: every incident and report, folded from the log's events.
//!
//! Summaries are shared (`Arc`), so a listing or a snapshot takes a copy of
//! the view's state in one pass under the lock without copying incidents,
//! and a change can hand subscribers the summary it replaced.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use truce_domain::{
    IncidentId, Position, ReportId,
    event::{EventBody, RecordedEvent},
    incident::{Incident, IncidentSummary},
    report::StoredReport,
};

/// Incidents by id (in opening order) and reports by id, as of `position`.
#[derive(Debug, Default)]
pub struct View {
    incidents: BTreeMap<IncidentId, Incident>,
    reports: HashMap<ReportId, Arc<StoredReport>>,
    position: Position,
}

impl View {
    /// The position of the last event applied.
    pub fn position(&self) -> Position {
        self.position
    }

    /// One incident.
    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(&id)
    }

    /// One report.
    pub fn report(&self, id: ReportId) -> Option<&Arc<StoredReport>> {
        self.reports.get(&id)
    }

    /// Every incident, oldest first.
    pub fn incidents(&self) -> impl DoubleEndedIterator<Item = &Incident> {
        self.incidents.values()
    }

    /// The summaries of incidents opened at or before `position`, oldest
    /// first: the candidates for a listing or snapshot as of `position`.
    pub fn summaries_up_to(&self, position: Position) -> Vec<Arc<IncidentSummary>> {
        self.incidents
            .range(..=IncidentId(position))
            .map(|(_, incident)| Arc::clone(&incident.summary))
            .collect()
    }

    /// How many incidents.
    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    /// Applies the next event and returns the incident's summary before it
    /// (`None` when the event opened the incident). Events must come in
    /// order; one at or before the current position is ignored.
    pub fn apply(&mut self, event: &RecordedEvent) -> Option<Arc<IncidentSummary>> {
        if event.position <= self.position {
            return None;
        }
        debug_assert_eq!(
            event.position,
            self.position.next(),
            "events must be applied without gaps"
        );
        self.position = event.position;
        let summary = event.incident();
        let before = match self.incidents.get_mut(&summary.id) {
            Some(incident) => Some(incident.apply(event)),
            None => {
                let EventBody::ReportRecorded(recorded) = &event.body else {
                    // Only a report opens an incident; the ingest side
                    // never writes otherwise.
                    tracing::error!(position = %event.position, "an event for an unknown incident; ignored");
                    return None;
                };
                let report = Arc::new(recorded.report.clone());
                self.incidents
                    .insert(summary.id, Incident::opened(report, summary.clone()));
                None
            }
        };
        // Keep the report index on the current versions.
        let changed = match &event.body {
            EventBody::ReportRecorded(r) => Some(r.report.report_id),
            EventBody::ReportAmended(r) => Some(r.report.report_id),
            EventBody::ReportRetracted(r) => Some(r.report_id),
            EventBody::IncidentReviewed(_) => None,
        };
        if let Some(id) = changed
            && let Some(report) = self.incidents.get(&summary.id).and_then(|i| i.report(id))
        {
            self.reports.insert(id, Arc::clone(report));
        }
        before
    }
}
