//! Incidents and their summaries.

use truce_domain::{
    FieldViolation, IncidentId, PartyId, Position, Violations,
    geo::{BoundingBox, LatLng},
    incident::{Incident, IncidentStatus, IncidentSummary},
    report::{Category, CountRange, Zone},
    review::{Review, Ruling},
};

use super::{
    enums::WireEnum,
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
            confirmations: s
                .rulings
                .iter()
                .filter_map(|r| {
                    Some(v1::Confirmation {
                        mediator_party: r.mediator.to_string(),
                        responsible_party: r.responsible.as_ref()?.to_string(),
                    })
                })
                .collect(),
            found_responsible: s
                .found_responsible
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            rulings: s
                .rulings
                .iter()
                .map(|r| v1::Ruling {
                    mediator_party: r.mediator.to_string(),
                    status: r.status.number(),
                    responsible_party: r.responsible.as_ref().map(ToString::to_string).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A review on the wire, with where and when it was recorded.
pub fn review_to_wire(r: &Review, position: Position, recorded_at: truce_domain::Timestamp) -> v1::Review {
    v1::Review {
        reviewer: r.reviewer.clone(),
        reviewer_party: r.reviewer_party.to_string(),
        status: r.status.number(),
        finding: r.finding.clone(),
        responsible_party: r.responsible.as_ref().map(ToString::to_string).unwrap_or_default(),
        position: position.0,
        recorded_at: Some(timestamp_to_wire(recorded_at)),
    }
}

/// Reads a review back from the log.
pub(super) fn review_from_wire(w: &v1::Review, incident_id: IncidentId) -> Result<Review, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let reviewer_party = v.check("reviewer_party", w.reviewer_party.parse::<PartyId>());
    let status = required(&mut v, "status", IncidentStatus::from_number(w.status));
    let responsible = if w.responsible_party.is_empty() {
        Some(None)
    } else {
        v.check("responsible_party", w.responsible_party.parse::<PartyId>())
            .map(Some)
    };
    match (reviewer_party, status, responsible) {
        (Some(reviewer_party), Some(status), Some(responsible)) if v.is_empty() => Ok(Review {
            incident_id,
            reviewer: w.reviewer.clone(),
            reviewer_party,
            status,
            finding: w.finding.clone(),
            responsible,
        }),
        _ => Err(v.into_vec()),
    }
}

fn required<T>(v: &mut Violations, field: &str, value: Option<T>) -> Option<T> {
    v.check(field, value.ok_or_else(|| "is required".to_owned()))
}

// Lists are sized to what was read: summaries are kept for the life of the
// view, and a vector grown by pushing holds spare room.

fn enum_list<T>(v: &mut Violations, field: &str, numbers: &[i32], from: fn(i32) -> Option<T>) -> Vec<T> {
    let mut list = Vec::with_capacity(numbers.len());
    list.extend(
        numbers
            .iter()
            .filter_map(|n| v.check(field, from(*n).ok_or_else(|| format!("{n} is not a known value")))),
    );
    list
}

fn parties(v: &mut Violations, field: &str, ids: &[String]) -> Vec<PartyId> {
    let mut list = Vec::with_capacity(ids.len());
    list.extend(ids.iter().filter_map(|p| v.check(field, p.parse())));
    list
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
    let found_responsible = if w.found_responsible.is_empty() {
        None
    } else {
        v.check("found_responsible", w.found_responsible.parse::<PartyId>())
    };
    let mut rulings: Vec<Ruling> = w
        .rulings
        .iter()
        .filter_map(|r| {
            let mediator = v.check("rulings.mediator_party", r.mediator_party.parse::<PartyId>());
            let status = required(&mut v, "rulings.status", IncidentStatus::from_number(r.status));
            let responsible = if r.responsible_party.is_empty() {
                Some(None)
            } else {
                v.check("rulings.responsible_party", r.responsible_party.parse::<PartyId>())
                    .map(Some)
            };
            Some(Ruling {
                mediator: mediator?,
                status: status?,
                responsible: responsible?,
            })
        })
        .collect();
    // Summaries recorded before rulings were kept hold confirmations only.
    if rulings.is_empty() {
        rulings = w
            .confirmations
            .iter()
            .filter_map(|c| {
                let mediator = v.check("confirmations.mediator_party", c.mediator_party.parse::<PartyId>());
                let responsible = v.check(
                    "confirmations.responsible_party",
                    c.responsible_party.parse::<PartyId>(),
                );
                Some(Ruling {
                    mediator: mediator?,
                    status: IncidentStatus::ConfirmedBreach,
                    responsible: Some(responsible?),
                })
            })
            .collect();
    }
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
                rulings,
                found_responsible,
            })
        }
        _ => Err(v.into_vec()),
    }
}

impl From<&Incident> for v1::Incident {
    fn from(incident: &Incident) -> Self {
        let mut casualties = Vec::new();
        let mut attributions = Vec::new();
        for stored in incident.reports.iter().filter(|r| r.is_current()) {
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
            reviews: incident
                .reviews
                .iter()
                .map(|r| review_to_wire(&r.review, r.position, r.recorded_at))
                .collect(),
            earlier_versions: incident
                .earlier_versions
                .iter()
                .map(|r| v1::StoredReport::from(r.as_ref()))
                .collect(),
        }
    }
}
