//! Builders for reports in unit tests (of other crates too, with the
//! `test-support` feature).

use crate::{IncidentId, Position, ReportId, Timestamp, geo::LatLng, report::*};

/// A report under construction.
pub struct Draft(Report);

impl Draft {
    /// At a point.
    pub fn at_point(mut self, lat: f64, lon: f64) -> Self {
        self.0.location.point = Some(LatLng::new(lat, lon).expect("a valid point"));
        self
    }
    /// In a named area.
    pub fn in_area(mut self, area: &str) -> Self {
        self.0.location.area = Some(area.to_owned());
        self
    }
    /// At `hour` hours past the default time.
    pub fn hours(mut self, hour: i64) -> Self {
        // 2025-11-22T00:00:00Z plus `hour` hours.
        self.0.occurred_at = Timestamp((1_763_769_600 + hour * 3600) * 1_000_000_000);
        self
    }
    /// Of `category`.
    pub fn category(mut self, category: Category) -> Self {
        self.0.category = category;
        self
    }
    /// With `claimant`'s claim of `low` to `high` killed.
    pub fn with_killed(mut self, claimant: &str, low: u32, high: u32) -> Self {
        self.0.casualties.push(CasualtyClaim {
            group: CasualtyGroup::Unknown,
            killed: Some(CountRange::new(low, None, high).expect("a valid range")),
            injured: None,
            claimed_by: claimant.parse().expect("a party id"),
        });
        self
    }
}

/// A stored report at `position`, shaped by `shape`.
pub fn report_at(position: u64, shape: impl FnOnce(Draft) -> Draft) -> StoredReport {
    let draft = Draft(Report {
        reporting_party: "idf".parse().expect("a party id"),
        sources: Vec::new(),
        occurred_at: Timestamp(1_763_769_600_000_000_000),
        occurred_precision: TimePrecision::Hour,
        location: Location {
            point: None,
            area: None,
            zone: Zone::AtLine,
            precision: LocationPrecision::Area,
        },
        category: Category::LineCrossing,
        summary: "test".to_owned(),
        alleged_responsible: Vec::new(),
        attributions: Vec::new(),
        casualties: Vec::new(),
        evidence: Vec::new(),
        incident_id: None,
    });
    let report = shape(draft).0;
    StoredReport {
        report_id: ReportId(Position(position)),
        incident_id: IncidentId(Position(position)),
        received_at: Timestamp(0),
        report,
        derived_zone: None,
        client_report_id: None,
        signature: None,
        version: 1,
        version_position: Position(position),
        amendment_reason: None,
        retraction: None,
    }
}
