//! The view: every incident and report, folded from the log's events.
//!
//! Summaries are shared (`Arc`), so a listing or a snapshot takes a copy of
//! the view's state in one pass under the lock without copying incidents,
//! and a change can hand subscribers the summary it replaced. Reports are
//! held as [`HeldReport`](crate::held::HeldReport)s: those read from the log at start stay encoded
//! until a call asks for them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::{Bound, ControlFlow},
    sync::Arc,
};

use truce_domain::{
    IncidentId, Position, ReportId,
    event::RecordedEvent,
    filter::{Filter, IndexKey},
    incident::IncidentSummary,
};

use crate::{
    held::HeldIncident,
    report_places::ReportPlaces,
    view_event::{ViewBody, ViewEvent},
};

/// Incidents by id (in opening order) and where each report is, as of
/// `position`.
#[derive(Debug, Default)]
pub struct View {
    incidents: BTreeMap<IncidentId, HeldIncident>,
    /// The incident of each report.
    reports: ReportPlaces,
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
    pub(crate) fn incident(&self, id: IncidentId) -> Option<&HeldIncident> {
        self.incidents.get(&id)
    }

    /// The incident a report is in.
    pub(crate) fn incident_of(&self, report: ReportId) -> Option<&HeldIncident> {
        self.reports.get(report).and_then(|id| self.incidents.get(&id))
    }

    /// The current version of one report.
    #[cfg(test)]
    pub(crate) fn report(&self, id: ReportId) -> Option<&crate::held::HeldReport> {
        self.incident_of(id).and_then(|incident| incident.report(id))
    }

    /// The summary of every incident, oldest first.
    pub fn summaries(&self) -> impl DoubleEndedIterator<Item = &Arc<IncidentSummary>> {
        self.incidents.values().map(|incident| &incident.summary)
    }

    /// The summaries of incidents opened at or before `position`, oldest
    /// first: the candidates for a listing or snapshot as of `position`.
    pub(crate) fn summaries_up_to(&self, position: Position) -> Vec<Arc<IncidentSummary>> {
        self.incidents
            .range(..=IncidentId(position))
            .map(|(_, incident)| Arc::clone(&incident.summary))
            .collect()
    }

    /// Visits the incidents opened within `ids` that may match `filter`, in
    /// opening order (newest first when `descending`), until `visit`
    /// breaks: those having the filter's rarest required value, or every
    /// incident when the filter requires none.
    pub(crate) fn visit_candidates(
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
    pub(crate) fn changed_since(&self, position: Position) -> Vec<Arc<IncidentSummary>> {
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

    /// Applies the next event and returns the incident's summary before it
    /// (`None` when the event opened the incident). Events must come in
    /// order; one at or before the current position is ignored.
    pub(crate) fn apply(&mut self, event: &RecordedEvent) -> Option<Arc<IncidentSummary>> {
        if event.position <= self.position {
            return None;
        }
        self.apply_event(ViewEvent::of(event))
    }

    /// As [`Self::apply`], for an event as the view takes it.
    pub(crate) fn apply_event(&mut self, event: ViewEvent) -> Option<Arc<IncidentSummary>> {
        let (before, after) = self.fold(event)?;
        self.reindex(before.as_deref(), &after);
        before
    }

    /// Applies an event to the incidents and reports, not to the index:
    /// the incident's summaries before and after it, or `None` when the
    /// event is ignored.
    fn fold(&mut self, event: ViewEvent) -> Option<(Option<Arc<IncidentSummary>>, Arc<IncidentSummary>)> {
        if event.position <= self.position {
            return None;
        }
        debug_assert_eq!(
            event.position,
            self.position.next(),
            "events must be applied without gaps"
        );
        self.position = event.position;
        let ViewEvent {
            position,
            incident: after,
            body,
        } = event;
        let id = after.id;
        let summary = Arc::clone(&after);
        let before = match (self.incidents.get_mut(&id), body) {
            (None, ViewBody::Recorded(report)) => {
                self.reports.insert(report.id(), id);
                self.incidents.insert(id, HeldIncident::opened(report, summary));
                None
            }
            (None, _) => {
                // Only a report opens an incident; the ingest side never
                // writes otherwise.
                tracing::error!(%position, "an event for an unknown incident; ignored");
                return None;
            }
            (Some(incident), body) => {
                match body {
                    ViewBody::Recorded(report) => {
                        self.reports.insert(report.id(), id);
                        incident.add(report);
                    }
                    ViewBody::Amended(report) => incident.amend(report),
                    ViewBody::Retracted(report, retraction) => incident.retract(report, retraction),
                    ViewBody::Reviewed(review) => incident.review(review),
                }
                Some(incident.replace_summary(summary))
            }
        };
        Some((before, after))
    }
}

/// A view being built at start: events are folded in without being
/// indexed, and every incident is indexed once at the end, which is
/// quicker than indexing each event's change when nobody reads the view
/// in between.
#[derive(Debug, Default)]
pub(crate) struct Building(View);

impl Building {
    /// Goes on building `view`.
    pub(crate) fn new(view: View) -> Building {
        Building(view)
    }

    /// The position of the last event applied.
    pub(crate) fn position(&self) -> Position {
        self.0.position
    }

    /// Applies the next event, as [`View::apply_event`] does.
    pub(crate) fn apply(&mut self, event: ViewEvent) {
        self.0.fold(event);
    }

    /// The view, indexed. The index and the incidents by last change are
    /// built at once, on two threads.
    pub(crate) fn finish(self) -> View {
        let mut view = self.0;
        let (index, by_update) = std::thread::scope(|scope| {
            let by_update = scope.spawn(|| by_update_of(&view.incidents));
            (index_of(&view.incidents), by_update.join())
        });
        view.index = index;
        view.by_update = match by_update {
            Ok(by_update) => by_update,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        view
    }
}

/// The incidents having each index key, built in one pass in opening
/// order, so each key's incidents come sorted and are built in bulk.
fn index_of(incidents: &BTreeMap<IncidentId, HeldIncident>) -> HashMap<IndexKey, BTreeSet<IncidentId>> {
    let mut index: HashMap<IndexKey, Vec<IncidentId>> = HashMap::new();
    for (id, incident) in incidents {
        for key in IndexKey::of(&incident.summary) {
            index.entry(key).or_default().push(*id);
        }
    }
    index
        .into_iter()
        .map(|(key, ids)| (key, ids.into_iter().collect()))
        .collect()
}

/// Each incident by the position of its last change.
fn by_update_of(incidents: &BTreeMap<IncidentId, HeldIncident>) -> BTreeMap<Position, IncidentId> {
    let mut by_update: Vec<(Position, IncidentId)> = incidents
        .iter()
        .map(|(id, incident)| (incident.summary.updated_position, *id))
        .collect();
    by_update.sort_unstable();
    by_update.into_iter().collect()
}
