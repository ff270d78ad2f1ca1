//! Incidents and their summaries.

use truce_domain::{
    FieldViolation, PartyId, Position, Violations,
    geo::{BoundingBox, LatLng},
    incident::{Incident, IncidentStatus, IncidentSummary},
    report::{Category, CountRange, Zone},
};

use super::{
    report::{attribution_to_wire, casualty_to_wire, latlng_to_wire, optional_range_to_wire},
    time::{timestamp_from_wire, timestamp_to_wire},
};
use crate::v1;

impl From<&IncidentSummary> for v1::IncidentSummary {
    fn from(s: &IncidentSummary) -> Self {
        v1::IncidentSummary {
            incident_id: s.id.to_string(),
            status: s.status.number(),
            category: s.category.number(),
            categories: s.categories.iter().map(|c| c.number()).collect(),
            zones: s.zones.iter().map(|z| z.number()).collect(),
            areas: s.areas.clone(),
            reporters: s.reporters.iter().map(ToString::to_string).collect(),
            alleged_responsible: s.alleged_responsible.iter().map(ToString::to_string).collect(),
            occurred_from: Some(timestamp_to_wire(s.occurred_from)),
            occurred_to: Some(timestamp_to_wire(s.occurred_to)),
            bounds: s.bounds.map(|b| v1::BoundingBox {
                south_west: Some(latlng_to_wire(b.south_west)),
                north_east: Some(latlng_to_wire(b.north_east)),
            }),
            killed: optional_range_to_wire(s.killed),
            injured: optional_range_to_wire(s.injured),
            report_count: s.report_count,
            updated_position: s.updated_position.0,
            updated_at: Some(timestamp_to_wire(s.updated_at)),
        }
    }
}

fn required<T>(v: &mut Violations, field: &str, value: Option<T>) -> Option<T> {
    v.check(field, value.ok_or_else(|| "is required".to_owned()))
}

fn enum_list<T>(v: &mut Violations, field: &str, numbers: &[i32], from: fn(i32) -> Option<T>) -> Vec<T> {
    numbers
        .iter()
        .filter_map(|n| v.check(field, from(*n).ok_or_else(|| format!("{n} is not a known value"))))
        .collect()
}

fn parties(v: &mut Violations, field: &str, ids: &[String]) -> Vec<PartyId> {
    ids.iter().filter_map(|p| v.check(field, p.parse())).collect()
}

fn latlng(wire: &Option<v1::LatLng>) -> Result<LatLng, String> {
    let p = wire.as_ref().ok_or("is required")?;
    LatLng::new(p.latitude, p.longitude)
}

fn range(v: &mut Violations, field: &str, wire: &Option<v1::CountRange>) -> Option<CountRange> {
    wire.as_ref()
        .and_then(|r| v.check(field, CountRange::new(r.low, r.best, r.high)))
}

/// Reads an incident summary back from the log.
pub(super) fn summary_from_wire(w: &v1::IncidentSummary) -> Result<IncidentSummary, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let id = v.check("incident_id", w.incident_id.parse());
    let status = required(&mut v, "status", IncidentStatus::from_number(w.status));
    let category = required(&mut v, "category", Category::from_number(w.category));
    let categories = enum_list(&mut v, "categories", &w.categories, Category::from_number);
    let zones = enum_list(&mut v, "zones", &w.zones, Zone::from_number);
    let reporters = parties(&mut v, "reporters", &w.reporters);
    let alleged_responsible = parties(&mut v, "alleged_responsible", &w.alleged_responsible);
    let occurred_from = required(&mut v, "occurred_from", w.occurred_from.as_ref())
        .and_then(|t| v.check("occurred_from", timestamp_from_wire(t)));
    let occurred_to = required(&mut v, "occurred_to", w.occurred_to.as_ref())
        .and_then(|t| v.check("occurred_to", timestamp_from_wire(t)));
    let updated_at = required(&mut v, "updated_at", w.updated_at.as_ref())
        .and_then(|t| v.check("updated_at", timestamp_from_wire(t)));
    let bounds = match &w.bounds {
        None => None,
        Some(b) => {
            let south_west = v.check("bounds.south_west", latlng(&b.south_west));
            let north_east = v.check("bounds.north_east", latlng(&b.north_east));
            south_west
                .zip(north_east)
                .map(|(south_west, north_east)| BoundingBox { south_west, north_east })
        }
    };
    let killed = range(&mut v, "killed", &w.killed);
    let injured = range(&mut v, "injured", &w.injured);
    match (id, status, category, occurred_from, occurred_to, updated_at) {
        (Some(id), Some(status), Some(category), Some(occurred_from), Some(occurred_to), Some(updated_at))
            if v.is_empty() =>
        {
            Ok(IncidentSummary {
                id,
                status,
                category,
                categories,
                zones,
                areas: w.areas.clone(),
                reporters,
                alleged_responsible,
                occurred_from,
                occurred_to,
                bounds,
                killed,
                injured,
                report_count: w.report_count,
                updated_position: Position(w.updated_position),
                updated_at,
            })
        }
        _ => Err(v.into_vec()),
    }
}

impl From<&Incident> for v1::Incident {
    fn from(incident: &Incident) -> Self {
        let mut casualties = Vec::new();
        let mut attributions = Vec::new();
        for stored in &incident.reports {
            let report_id = stored.report_id.to_string();
            for totals in stored.claimant_totals() {
                casualties.push(v1::ClaimantCasualties {
                    report_id: report_id.clone(),
                    by_group: stored
                        .report
                        .casualties
                        .iter()
                        .filter(|c| c.claimed_by == totals.claimed_by)
                        .map(casualty_to_wire)
                        .collect(),
                    claimed_by: totals.claimed_by.to_string(),
                    killed_total: optional_range_to_wire(totals.killed),
                    injured_total: optional_range_to_wire(totals.injured),
                });
            }
            attributions.extend(stored.report.attributions.iter().map(|a| v1::SourcedAttribution {
                claim: Some(attribution_to_wire(a)),
                report_id: report_id.clone(),
            }));
        }
        v1::Incident {
            summary: Some(v1::IncidentSummary::from(incident.summary.as_ref())),
            reports: incident
                .reports
                .iter()
                .map(|r| v1::StoredReport::from(r.as_ref()))
                .collect(),
            casualties,
            attributions,
        }
    }
}
