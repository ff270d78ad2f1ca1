//! Which incident a new report belongs to.
//!
//! A report that names no incident joins the open incident of the same
//! category that is closest in time among those near it in place and time,
//! or opens a new one. "Near" is configurable; the defaults suit the
//! reporting in a small, dense territory (a shoot-out and the strikes that
//! answered it are separate categories, so they stay separate incidents).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use crate::{
    IncidentId, Timestamp,
    geo::LatLng,
    incident::IncidentSummary,
    report::{Category, Report},
};

/// How near in place and time a report must be to join an incident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupingPolicy {
    /// Greatest distance in metres between the report's point and the box
    /// around the incident's points.
    pub max_distance_m: f64,
    /// Greatest gap between the report's occurrence time and the incident's
    /// occurrence window.
    pub max_time_gap: Duration,
}

impl GroupingPolicy {
    /// 3 km.
    pub const DEFAULT_MAX_DISTANCE_M: f64 = 3_000.0;
    /// 6 hours.
    pub const DEFAULT_MAX_TIME_GAP: Duration = Duration::from_secs(6 * 3600);
}

impl Default for GroupingPolicy {
    fn default() -> Self {
        GroupingPolicy {
            max_distance_m: Self::DEFAULT_MAX_DISTANCE_M,
            max_time_gap: Self::DEFAULT_MAX_TIME_GAP,
        }
    }
}

/// The summaries of every incident, indexed for grouping: by category and
/// the end of the occurrence window, so finding candidates is a range scan.
/// The scan is bounded on both sides by remembering the longest window any
/// incident has: an incident ending later than the report's time plus the
/// gap plus that length cannot start close enough to the report.
#[derive(Debug, Default)]
pub struct IncidentIndex {
    incidents: HashMap<IncidentId, Arc<IncidentSummary>>,
    by_category_and_end: BTreeSet<(Category, Timestamp, IncidentId)>,
    longest_window: Duration,
}

impl IncidentIndex {
    /// The index of `summaries`, each an incident's latest (as the query
    /// view holds them): built in bulk, which is quicker than one upsert
    /// each when every incident is known at once. The summaries are read
    /// once for the ordered keys; the keys are then sorted on one thread
    /// while the summaries move into the map on another.
    pub fn from_summaries(summaries: Vec<Arc<IncidentSummary>>) -> IncidentIndex {
        let mut keys = Vec::with_capacity(summaries.len());
        let mut longest_window = Duration::ZERO;
        for s in &summaries {
            keys.push((s.category, s.occurred_to, s.id));
            longest_window = longest_window.max(s.occurred_to.abs_diff(s.occurred_from));
        }
        let (by_category_and_end, incidents) = std::thread::scope(|scope| {
            let sorted = scope.spawn(move || {
                keys.sort_unstable();
                keys.into_iter().collect::<BTreeSet<_>>()
            });
            let incidents: HashMap<_, _> = summaries.into_iter().map(|s| (s.id, s)).collect();
            (sorted.join(), incidents)
        });
        IncidentIndex {
            incidents,
            by_category_and_end: by_category_and_end.unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            longest_window,
        }
    }

    /// The summary of an incident.
    pub fn get(&self, id: IncidentId) -> Option<&IncidentSummary> {
        self.incidents.get(&id).map(Arc::as_ref)
    }

    /// How many incidents there are.
    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    /// Stores a summary, replacing the incident's previous one. It is
    /// shared with the event that carries it.
    pub fn upsert(&mut self, summary: impl Into<Arc<IncidentSummary>>) {
        let summary = summary.into();
        if let Some(old) = self.incidents.get(&summary.id) {
            self.by_category_and_end
                .remove(&(old.category, old.occurred_to, old.id));
        }
        self.by_category_and_end
            .insert((summary.category, summary.occurred_to, summary.id));
        self.longest_window = self
            .longest_window
            .max(summary.occurred_to.abs_diff(summary.occurred_from));
        self.incidents.insert(summary.id, summary);
    }

    /// Forgets an incident (one whose opening report turned out not to be
    /// stored).
    pub fn remove(&mut self, id: IncidentId) {
        if let Some(old) = self.incidents.remove(&id) {
            self.by_category_and_end
                .remove(&(old.category, old.occurred_to, old.id));
        }
    }

    /// The open incident `report` should join, if any.
    pub fn find_match(&self, report: &Report, policy: &GroupingPolicy) -> Option<IncidentId> {
        let at = report.occurred_at;
        let earliest_end = Timestamp(at.0.saturating_sub(duration_nanos(policy.max_time_gap)));
        let latest_start = at.saturating_add(policy.max_time_gap);
        let latest_end = latest_start.saturating_add(self.longest_window);
        let lower = (report.category, earliest_end, IncidentId(crate::Position::ZERO));
        let upper = (report.category, latest_end, IncidentId(crate::Position(u64::MAX)));
        self.by_category_and_end
            .range(lower..=upper)
            .filter_map(|(_, _, id)| self.incidents.get(id))
            .filter(|incident| incident.status.is_open() && incident.occurred_from <= latest_start)
            .filter(|incident| is_near(report, incident, policy))
            .min_by_key(|incident| (time_gap(at, incident), std::cmp::Reverse(incident.id)))
            .map(|incident| incident.id)
    }
}

fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn time_gap(at: Timestamp, incident: &IncidentSummary) -> Duration {
    if at < incident.occurred_from {
        at.abs_diff(incident.occurred_from)
    } else if at > incident.occurred_to {
        at.abs_diff(incident.occurred_to)
    } else {
        Duration::ZERO
    }
}

/// Near in place: by distance when both give points, else by the same
/// named area (case-insensitive). A report that can be compared neither way
/// is near nothing.
fn is_near(report: &Report, incident: &IncidentSummary, policy: &GroupingPolicy) -> bool {
    if let (Some(point), Some(bounds)) = (report.location.point, incident.bounds) {
        let nearest = LatLng::new(
            point.lat().clamp(bounds.south_west.lat(), bounds.north_east.lat()),
            point.lon().clamp(bounds.south_west.lon(), bounds.north_east.lon()),
        );
        return nearest.is_ok_and(|nearest| nearest.distance_m(&point) <= policy.max_distance_m);
    }
    report
        .location
        .area
        .as_ref()
        .is_some_and(|area| incident.areas.iter().any(|a| a.eq_ignore_ascii_case(area)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Position, testing::report_at};

    fn index_with(reports: &[crate::report::StoredReport]) -> IncidentIndex {
        let mut index = IncidentIndex::default();
        for r in reports {
            index.upsert(IncidentSummary::open(r, Timestamp(0)));
        }
        index
    }

    #[test]
    fn joins_same_category_nearby_in_place_and_time() {
        let index = index_with(&[report_at(1, |r| r.at_point(31.30, 34.25).hours(10))]);
        let near = report_at(2, |r| r.at_point(31.31, 34.25).hours(12)).report;
        assert_eq!(
            index.find_match(&near, &GroupingPolicy::default()),
            Some(IncidentId(Position(1)))
        );
    }

    #[test]
    fn separates_other_category_far_place_or_late_time() {
        let index = index_with(&[report_at(1, |r| r.at_point(31.30, 34.25).hours(10))]);
        let policy = GroupingPolicy::default();
        let other_category = report_at(2, |r| r.at_point(31.30, 34.25).hours(10).category(Category::AirStrike));
        let far = report_at(3, |r| r.at_point(31.50, 34.45).hours(10));
        let late = report_at(4, |r| r.at_point(31.30, 34.25).hours(17));
        for r in [other_category, far, late] {
            assert_eq!(index.find_match(&r.report, &policy), None, "{:?}", r.report_id);
        }
    }

    #[test]
    fn matches_by_area_name_without_points_and_prefers_the_closest_in_time() {
        let index = index_with(&[
            report_at(1, |r| r.in_area("Rafah").hours(6)),
            report_at(2, |r| r.in_area("Rafah").hours(11)),
        ]);
        let report = report_at(3, |r| r.in_area("rafah").hours(12)).report;
        assert_eq!(
            index.find_match(&report, &GroupingPolicy::default()),
            Some(IncidentId(Position(2)))
        );
    }

    #[test]
    fn a_long_running_incident_is_still_found_in_the_middle() {
        let mut summary = IncidentSummary::open(&report_at(1, |r| r.in_area("Rafah").hours(0)), Timestamp(0));
        for (i, hour) in (5..=40).step_by(5).enumerate() {
            summary.absorb(
                &report_at(2 + i as u64, |r| r.in_area("Rafah").hours(hour)),
                Timestamp(0),
            );
        }
        let mut index = IncidentIndex::default();
        index.upsert(summary);
        // Many later, unrelated incidents must not hide it.
        for n in 0..100 {
            index.upsert(IncidentSummary::open(
                &report_at(100 + n, |r| r.in_area("Gaza").hours(100 + n as i64 * 24)),
                Timestamp(0),
            ));
        }
        let report = report_at(500, |r| r.in_area("Rafah").hours(20)).report;
        assert_eq!(
            index.find_match(&report, &GroupingPolicy::default()),
            Some(IncidentId(Position(1)))
        );
    }

    #[test]
    fn an_index_built_from_the_latest_summaries_groups_as_one_upserted_event_by_event() {
        // Every version of every summary, as a fold of the log upserts
        // them: one incident grows to a long window, then shrinks (a report
        // retracted), one is ruled, others are elsewhere or of another kind.
        let mut history: Vec<IncidentSummary> = Vec::new();
        let mut long = IncidentSummary::open(&report_at(1, |r| r.in_area("Rafah").hours(0)), Timestamp(0));
        history.push(long.clone());
        long.absorb(&report_at(2, |r| r.in_area("Rafah").hours(30)), Timestamp(0));
        history.push(long.clone());
        long.occurred_to = long.occurred_from;
        history.push(long);
        let mut ruled = IncidentSummary::open(&report_at(3, |r| r.in_area("Jabalia").hours(10)), Timestamp(0));
        history.push(ruled.clone());
        ruled.status = crate::incident::IncidentStatus::ConfirmedBreach;
        history.push(ruled);
        for n in 0..20u64 {
            let area = ["Rafah", "Jabalia", "Gaza"][n as usize % 3];
            let category = [Category::LineCrossing, Category::AirStrike][n as usize % 2];
            history.push(IncidentSummary::open(
                &report_at(10 + n, |r| r.in_area(area).category(category).hours(n as i64 * 5)),
                Timestamp(0),
            ));
        }
        let mut upserted = IncidentIndex::default();
        let mut latest = std::collections::BTreeMap::new();
        for summary in history {
            latest.insert(summary.id, Arc::new(summary.clone()));
            upserted.upsert(summary);
        }
        let built = IncidentIndex::from_summaries(latest.into_values().collect());
        assert_eq!(built.len(), upserted.len());
        let policy = GroupingPolicy::default();
        let mut joined = 0;
        for area in ["Rafah", "rafah", "Jabalia", "Gaza", "Bureij"] {
            for category in [Category::LineCrossing, Category::AirStrike, Category::Shelling] {
                for hour in (-12..120).step_by(3) {
                    let report = report_at(500, |r| r.in_area(area).category(category).hours(hour)).report;
                    joined += usize::from(built.find_match(&report, &policy).is_some());
                    assert_eq!(
                        built.find_match(&report, &policy),
                        upserted.find_match(&report, &policy),
                        "{area} {category:?} at hour {hour}"
                    );
                }
            }
        }
        assert!(joined > 20, "the probes join incidents ({joined})");
    }

    #[test]
    fn ruled_incidents_take_no_new_reports() {
        let mut index = index_with(&[report_at(1, |r| r.in_area("Rafah").hours(6))]);
        let mut summary = index.get(IncidentId(Position(1))).unwrap().clone();
        summary.status = crate::incident::IncidentStatus::ConfirmedBreach;
        index.upsert(summary);
        let report = report_at(2, |r| r.in_area("Rafah").hours(6)).report;
        assert_eq!(index.find_match(&report, &GroupingPolicy::default()), None);
    }
}
