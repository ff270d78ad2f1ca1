//! The view: every incident and report, folded from the log's events.
//!
//! Summaries are shared (`Arc`), so a listing or a snapshot takes a copy of
//! the view's state in one pass under the lock without copying incidents,
//! and a change can hand subscribers the summary it replaced.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::{Bound, ControlFlow},
    sync::Arc,
};

use truce_domain::{
    IncidentId, Position, ReportId,
    event::{EventBody, RecordedEvent},
    filter::{Filter, IndexKey},
    incident::{Incident, IncidentSummary},
    report::StoredReport,
};

/// Incidents by id (in opening order) and reports by id, as of `position`.
#[derive(Debug, Default)]
pub struct View {
    incidents: BTreeMap<IncidentId, Incident>,
    reports: HashMap<ReportId, Arc<StoredReport>>,
    position: Position,
    /// The incidents having each value a filter can require, so a
    /// selective listing reads a few incidents instead of all.
    index: HashMap<IndexKey, BTreeSet<IncidentId>>,
    /// Each incident by the position of its last change: the ones changed
    /// after a listing's position are judged as they stood then.
    by_update: BTreeMap<Position, IncidentId>,
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

    /// Visits the incidents opened within `ids` that may match `filter`, in
    /// opening order (newest first when `descending`), until `visit`
    /// breaks: those having the filter's rarest required value, or every
    /// incident when the filter requires none.
    pub fn visit_candidates(
        &self,
        filter: &Filter,
        ids: (Bound<IncidentId>, Bound<IncidentId>),
        descending: bool,
        mut visit: impl FnMut(&Arc<IncidentSummary>) -> ControlFlow<()>,
    ) {
        let narrowest = filter
            .required_keys()
            .iter()
            .map(|key| self.index.get(key))
            .min_by_key(|ids| ids.map_or(0, BTreeSet::len));
        let candidates: Box<dyn DoubleEndedIterator<Item = &Arc<IncidentSummary>>> = match narrowest {
            // A required value no incident has: nothing can match.
            Some(None) => return,
            Some(Some(having)) => Box::new(
                having
                    .range(ids)
                    .filter_map(|id| self.incidents.get(id))
                    .map(|incident| &incident.summary),
            ),
            None => Box::new(self.incidents.range(ids).map(|(_, incident)| &incident.summary)),
        };
        let candidates: Box<dyn Iterator<Item = &Arc<IncidentSummary>>> = if descending {
            Box::new(candidates.rev())
        } else {
            candidates
        };
        for summary in candidates {
            if visit(summary).is_break() {
                return;
            }
        }
    }

    /// The current summaries of incidents opened at or before `position`
    /// and changed after it.
    pub fn changed_since(&self, position: Position) -> Vec<Arc<IncidentSummary>> {
        self.by_update
            .range(position.next()..)
            .filter(|(_, id)| id.0 <= position)
            .filter_map(|(_, id)| self.incidents.get(id))
            .map(|incident| Arc::clone(&incident.summary))
            .collect()
    }

    /// Moves incident `id` in the index from the values of `before` to
    /// those of `after`.
    fn reindex(&mut self, before: Option<&IncidentSummary>, after: &IncidentSummary) {
        let id = after.id;
        let old = before.map(IndexKey::of).unwrap_or_default();
        let new = IndexKey::of(after);
        for key in old.iter().filter(|k| !new.contains(k)) {
            if let Some(ids) = self.index.get_mut(key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.index.remove(key);
                }
            }
        }
        for key in new.into_iter().filter(|k| !old.contains(k)) {
            self.index.entry(key).or_default().insert(id);
        }
        if let Some(before) = before {
            self.by_update.remove(&before.updated_position);
        }
        self.by_update.insert(after.updated_position, id);
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
                let report = Arc::clone(&recorded.report);
                self.incidents.insert(
                    summary.id,
                    Incident::opened(report, Arc::clone(event.shared_incident())),
                );
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
        if let Some(after) = self.incidents.get(&summary.id).map(|i| Arc::clone(&i.summary)) {
            self.reindex(before.as_deref(), &after);
        }
        before
    }
}
