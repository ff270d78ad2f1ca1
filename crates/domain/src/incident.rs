//! Incidents: the reports about one event, with every party's claims side
//! by side.
//!
//! An [`IncidentSummary`] is the part every filter tests; it is folded
//! forward one report at a time, so the ingest service can carry it in each
//! event. An [`Incident`] adds the reports themselves, for the query side.

use std::sync::Arc;

use crate::{
    IncidentId, PartyId, Position, Timestamp,
    event::{EventBody, RecordedEvent},
    geo::BoundingBox,
    report::{Category, ClaimantTotals, CountRange, Retraction, StoredReport, Zone},
};

/// The state of an incident's review by the mediators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IncidentStatus {
    /// Reported; no review yet.
    Reported,
    /// Under review.
    UnderReview,
    /// A breach was found.
    ConfirmedBreach,
    /// No breach was found.
    NotABreach,
    /// The accounts conflict.
    Disputed,
    /// The evidence does not allow a finding.
    Inconclusive,
}

impl IncidentStatus {
    /// Every status, in order.
    pub const ALL: &'static [IncidentStatus] = &[
        IncidentStatus::Reported,
        IncidentStatus::UnderReview,
        IncidentStatus::ConfirmedBreach,
        IncidentStatus::NotABreach,
        IncidentStatus::Disputed,
        IncidentStatus::Inconclusive,
    ];

    /// The short name used in filters and tallies.
    pub fn name(self) -> &'static str {
        match self {
            IncidentStatus::Reported => "REPORTED",
            IncidentStatus::UnderReview => "UNDER_REVIEW",
            IncidentStatus::ConfirmedBreach => "CONFIRMED_BREACH",
            IncidentStatus::NotABreach => "NOT_A_BREACH",
            IncidentStatus::Disputed => "DISPUTED",
            IncidentStatus::Inconclusive => "INCONCLUSIVE",
        }
    }

    /// From the short name or the full wire name.
    pub fn from_name(name: &str) -> Option<IncidentStatus> {
        let short = name.strip_prefix("INCIDENT_STATUS_").unwrap_or(name);
        Self::ALL.iter().copied().find(|s| s.name() == short)
    }

    /// True while new reports may still join the incident: once the
    /// mediators have ruled, a new report opens a new incident.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            IncidentStatus::Reported | IncidentStatus::UnderReview | IncidentStatus::Disputed
        )
    }
}

/// Every field a filter can test, folded over an incident's reports.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    /// Its id.
    pub id: IncidentId,
    /// Its status.
    pub status: IncidentStatus,
    /// The opening report's category.
    pub category: Category,
    /// Every category its reports claim, the opening one first.
    pub categories: Vec<Category>,
    /// Every zone stated or derived.
    pub zones: Vec<Zone>,
    /// Every named area, as first given.
    pub areas: Vec<String>,
    /// Every reporting party.
    pub reporters: Vec<PartyId>,
    /// Every party alleged responsible.
    pub alleged_responsible: Vec<PartyId>,
    /// The earliest occurrence time given.
    pub occurred_from: Timestamp,
    /// The latest occurrence time given.
    pub occurred_to: Timestamp,
    /// The box around every point given.
    pub bounds: Option<BoundingBox>,
    /// The spread of killed totals over claimants.
    pub killed: Option<CountRange>,
    /// The spread of injured totals over claimants.
    pub injured: Option<CountRange>,
    /// How many reports.
    pub report_count: u32,
    /// The position of the last change.
    pub updated_position: Position,
    /// When that change was recorded.
    pub updated_at: Timestamp,
    /// Each mediator party's standing ruling since the outcome was last
    /// decided (see [`crate::review`]).
    pub rulings: Vec<crate::review::Ruling>,
    /// The party the mediators found responsible for a confirmed breach.
    pub found_responsible: Option<PartyId>,
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

fn span(a: Option<CountRange>, b: Option<CountRange>) -> Option<CountRange> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.span(b)),
        (a, b) => a.or(b),
    }
}

impl IncidentSummary {
    /// A new incident, opened by `report`.
    pub fn open(report: &StoredReport, recorded_at: Timestamp) -> IncidentSummary {
        let mut summary = IncidentSummary {
            id: IncidentId(report.position()),
            status: IncidentStatus::Reported,
            category: report.report.category,
            categories: Vec::new(),
            zones: Vec::new(),
            areas: Vec::new(),
            reporters: Vec::new(),
            alleged_responsible: Vec::new(),
            occurred_from: report.report.occurred_at,
            occurred_to: report.report.occurred_at,
            bounds: None,
            killed: None,
            injured: None,
            report_count: 0,
            updated_position: report.position(),
            updated_at: recorded_at,
            rulings: Vec::new(),
            found_responsible: None,
        };
        summary.absorb(report, recorded_at);
        summary
    }

    /// Folds one more report in.
    pub fn absorb(&mut self, stored: &StoredReport, recorded_at: Timestamp) {
        let report = &stored.report;
        push_unique(&mut self.categories, report.category);
        push_unique(&mut self.zones, report.location.zone);
        if let Some(derived) = stored.derived_zone {
            push_unique(&mut self.zones, derived);
        }
        if let Some(area) = &report.location.area
            && !self.areas.iter().any(|a| a.eq_ignore_ascii_case(area))
        {
            self.areas.push(area.clone());
        }
        push_unique(&mut self.reporters, report.reporting_party.clone());
        for party in &report.alleged_responsible {
            push_unique(&mut self.alleged_responsible, party.clone());
        }
        self.occurred_from = self.occurred_from.min(report.occurred_at);
        self.occurred_to = self.occurred_to.max(report.occurred_at);
        if let Some(point) = report.location.point {
            self.bounds = Some(match self.bounds {
                Some(bounds) => bounds.including(point),
                None => BoundingBox::around(point),
            });
        }
        for ClaimantTotals { killed, injured, .. } in stored.claimant_totals() {
            self.killed = span(self.killed, killed);
            self.injured = span(self.injured, injured);
        }
        self.report_count += 1;
        self.updated_position = stored.position();
        self.updated_at = recorded_at;
    }
}

impl IncidentSummary {
    /// The summary after a report was amended or retracted: everything a
    /// report contributes is folded anew over `reports` (the current
    /// versions; retracted ones are skipped), while what belongs to the
    /// incident itself (its id and opening category, the mediators' status
    /// and findings) stays.
    pub fn refolded<'a>(
        &self,
        reports: impl IntoIterator<Item = &'a StoredReport>,
        position: Position,
        recorded_at: Timestamp,
    ) -> IncidentSummary {
        let mut summary = IncidentSummary {
            categories: Vec::new(),
            zones: Vec::new(),
            areas: Vec::new(),
            reporters: Vec::new(),
            alleged_responsible: Vec::new(),
            bounds: None,
            killed: None,
            injured: None,
            report_count: 0,
            rulings: self.rulings.clone(),
            found_responsible: self.found_responsible.clone(),
            ..self.clone()
        };
        let mut first = true;
        for report in reports.into_iter().filter(|r| r.is_current()) {
            if first {
                // The window is the current reports' window.
                summary.occurred_from = report.report.occurred_at;
                summary.occurred_to = report.report.occurred_at;
                first = false;
            }
            summary.absorb(report, recorded_at);
        }
        summary.updated_position = position;
        summary.updated_at = recorded_at;
        summary
    }
}

/// An incident with its reports, as the query side holds it. Reports are
/// shared, so a summary change does not copy them.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The summary.
    pub summary: Arc<IncidentSummary>,
    /// Every report in its current version (retracted ones marked), oldest
    /// first.
    pub reports: Vec<Arc<StoredReport>>,
    /// Every review, oldest first.
    pub reviews: Vec<RecordedReview>,
    /// Versions replaced by amendments, oldest first.
    pub earlier_versions: Vec<Arc<StoredReport>>,
}

impl Incident {
    /// The incident as the report that opened it left it.
    pub fn opened(report: Arc<StoredReport>, summary: Arc<IncidentSummary>) -> Incident {
        Incident {
            summary,
            reports: vec![report],
            reviews: Vec::new(),
            earlier_versions: Vec::new(),
        }
    }

    /// The current version of one of its reports.
    pub fn report(&self, id: crate::ReportId) -> Option<&Arc<StoredReport>> {
        // Reports are in id order: ids are positions, appended in order.
        self.reports
            .binary_search_by_key(&id, |r| r.report_id)
            .ok()
            .map(|i| &self.reports[i])
    }

    /// Applies a later event of this incident and returns the summary it
    /// replaced. The same fold serves the query side's view and the ingest
    /// side when it needs an incident's reports.
    pub fn apply(&mut self, event: &RecordedEvent) -> Arc<IncidentSummary> {
        match &event.body {
            EventBody::ReportRecorded(recorded) => {
                self.reports.push(Arc::clone(&recorded.report));
            }
            EventBody::IncidentReviewed(reviewed) => self.reviews.push(RecordedReview {
                position: event.position,
                recorded_at: event.recorded_at,
                review: reviewed.review.clone(),
            }),
            EventBody::ReportAmended(amended) => {
                if let Ok(i) = self
                    .reports
                    .binary_search_by_key(&amended.report.report_id, |r| r.report_id)
                {
                    let earlier = std::mem::replace(&mut self.reports[i], Arc::clone(&amended.report));
                    self.earlier_versions.push(earlier);
                }
            }
            EventBody::ReportRetracted(retracted) => {
                if let Ok(i) = self.reports.binary_search_by_key(&retracted.report_id, |r| r.report_id) {
                    let mut report = StoredReport::clone(&self.reports[i]);
                    report.retraction = Some(Retraction {
                        position: event.position,
                        recorded_at: event.recorded_at,
                        reason: retracted.reason.clone(),
                    });
                    self.reports[i] = Arc::new(report);
                }
            }
        }
        std::mem::replace(&mut self.summary, Arc::clone(event.shared_incident()))
    }
}

/// A review with where and when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedReview {
    /// The log position.
    pub position: Position,
    /// When.
    pub recorded_at: Timestamp,
    /// The ruling.
    pub review: crate::review::Review,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::report_at;

    #[test]
    fn keeps_claimants_apart_and_spans_their_totals() {
        // The health ministry says 20 to 21 killed; another claimant says 5
        // combatants and 2 civilians: the incident shows 7 to 21, no average.
        let first = report_at(1, |r| r.with_killed("gaza-health-ministry", 20, 21));
        let mut summary = IncidentSummary::open(&first, Timestamp(10));
        let second = report_at(2, |r| r.with_killed("idf", 5, 5).with_killed("idf", 2, 2));
        summary.absorb(&second, Timestamp(20));
        let killed = summary.killed.unwrap();
        assert_eq!((killed.low(), killed.best(), killed.high()), (7, None, 21));
        assert_eq!(summary.report_count, 2);
        assert_eq!(summary.updated_position, Position(2));
        assert_eq!(summary.id, IncidentId(Position(1)));
    }

    #[test]
    fn only_unruled_incidents_are_open() {
        assert!(IncidentStatus::Reported.is_open());
        assert!(!IncidentStatus::ConfirmedBreach.is_open());
        assert_eq!(
            IncidentStatus::from_name("INCIDENT_STATUS_DISPUTED"),
            Some(IncidentStatus::Disputed)
        );
    }
}
