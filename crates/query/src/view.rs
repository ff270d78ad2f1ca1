//! The view: every incident and report, folded from the log's events.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use truce_domain::{
    IncidentId, Position, ReportId,
    event::{EventBody, RecordedEvent},
    incident::Incident,
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

    /// How many incidents.
    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    /// Applies the next event. Events must come in order; one at or before
    /// the current position was already applied and is ignored.
    pub fn apply(&mut self, event: &RecordedEvent) {
        if event.position <= self.position {
            return;
        }
        debug_assert_eq!(
            event.position,
            self.position.next(),
            "events must be applied without gaps"
        );
        match &event.body {
            EventBody::ReportRecorded(recorded) => {
                let report = Arc::new(recorded.report.clone());
                self.reports.insert(report.report_id, Arc::clone(&report));
                let incident = self.incidents.entry(recorded.incident.id).or_insert_with(|| Incident {
                    summary: recorded.incident.clone(),
                    reports: Vec::new(),
                });
                incident.summary = recorded.incident.clone();
                incident.reports.push(report);
            }
        }
        self.position = event.position;
    }
}
