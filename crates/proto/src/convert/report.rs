//! Reports: the strictest border, since every field comes from a party.

use prost::Message;
use sha2::{Digest, Sha256};
use truce_domain::{
    FieldPath, FieldViolation, IncidentId, PartyId, Position, ReportId, Timestamp, Violations,
    geo::LatLng,
    ids::ClientReportId,
    report::{
        AttributionClaim, CasualtyClaim, CasualtyGroup, Category, CountRange, EvidenceRef, Location, LocationPrecision,
        Report, ReportSignature, Retraction, Source, StoredReport, TimePrecision, Zone, bounded_text, http_url, limits,
    },
};

use super::{
    enums::WireEnum,
    time::{timestamp_from_wire, timestamp_to_wire},
};
use crate::v1;

/// When the clock rule applies: on receipt, an occurrence time may not lie
/// beyond `now` plus the allowed skew; stored reports are not re-judged.
#[derive(Debug, Clone, Copy)]
pub enum Received {
    /// Just received at this instant.
    At(Timestamp),
    /// Read back from the log.
    Stored,
}

/// SHA-256 of a report's canonical encoding: what an idempotent retry must
/// repeat exactly.
pub fn report_digest(report: &v1::Report) -> [u8; 32] {
    Sha256::digest(report.encode_to_vec()).into()
}

fn enum_field<T>(v: &mut Violations, field: impl FieldPath, number: i32, from: fn(i32) -> Option<T>) -> Option<T> {
    let rule = if number == 0 {
        "is required (UNSPECIFIED is not allowed)".to_owned()
    } else {
        format!("{number} is not a known value")
    };
    v.check(field, from(number).ok_or(rule))
}

fn party(v: &mut Violations, field: impl FieldPath, text: &str) -> Option<PartyId> {
    v.check(field, text.parse())
}

fn too_many(v: &mut Violations, field: impl FieldPath, len: usize, max: usize) -> bool {
    if len > max {
        v.add(field, format!("must have at most {max} items (has {len})"));
        return true;
    }
    false
}

fn range(v: &mut Violations, field: impl FieldPath, wire: &Option<v1::CountRange>) -> Option<Option<CountRange>> {
    match wire {
        None => Some(None),
        Some(r) => v.check(field, CountRange::new(r.low, r.best, r.high)).map(Some),
    }
}

/// Validates a submitted report; `path` prefixes every field name.
pub fn report_from_wire(wire: &v1::Report, path: &str, received: Received) -> Result<Report, Vec<FieldViolation>> {
    let mut v = Violations::default();
    // Paths are built only for a violation: a valid report formats none.
    let f = |name: &'static str| move || format!("{path}.{name}");
    let item = |list: &'static str, i: usize, name: &'static str| move || format!("{path}.{list}[{i}].{name}");

    let reporting_party = party(&mut v, f("reporting_party"), &wire.reporting_party);

    // Sized to the request: reports are kept for the life of the view, and
    // a vector grown by pushing holds spare room.
    let mut sources = Vec::with_capacity(wire.sources.len().min(limits::ITEMS));
    if !too_many(&mut v, f("sources"), wire.sources.len(), limits::ITEMS) {
        for (i, s) in wire.sources.iter().enumerate() {
            let outlet = v.check(
                item("sources", i, "outlet"),
                bounded_text(&s.outlet, limits::SHORT_TEXT_CHARS, true),
            );
            let url = if s.url.is_empty() {
                Some(None)
            } else {
                v.check(item("sources", i, "url"), http_url(&s.url)).map(Some)
            };
            let published_at = match &s.published_at {
                None => Some(None),
                Some(t) => v
                    .check(item("sources", i, "published_at"), timestamp_from_wire(t))
                    .map(Some),
            };
            if let (Some(outlet), Some(url), Some(published_at)) = (outlet, url, published_at) {
                sources.push(Source {
                    outlet,
                    url,
                    published_at,
                });
            }
        }
    }

    let occurred_at = match &wire.occurred_at {
        None => {
            v.add(f("occurred_at"), "is required");
            None
        }
        Some(t) => v
            .check(f("occurred_at"), timestamp_from_wire(t))
            .and_then(|t| match received {
                Received::At(now) if t > now.saturating_add(limits::CLOCK_SKEW) => {
                    v.add(
                        f("occurred_at"),
                        format!(
                            "must not be in the future (now is {now}; {}s of clock skew allowed)",
                            limits::CLOCK_SKEW.as_secs()
                        ),
                    );
                    None
                }
                _ => Some(t),
            }),
    };
    let occurred_precision = enum_field(
        &mut v,
        f("occurred_precision"),
        wire.occurred_precision,
        TimePrecision::from_number,
    );

    let location = match &wire.location {
        None => {
            v.add(f("location"), "is required");
            None
        }
        Some(l) => location(&mut v, path, l),
    };
    let category = enum_field(&mut v, f("category"), wire.category, Category::from_number);
    let summary = v.check(f("summary"), bounded_text(&wire.summary, limits::SUMMARY_CHARS, true));

    let mut alleged_responsible = Vec::with_capacity(wire.alleged_responsible.len().min(limits::ITEMS));
    if !too_many(
        &mut v,
        f("alleged_responsible"),
        wire.alleged_responsible.len(),
        limits::RESPONSIBLE,
    ) {
        for (i, p) in wire.alleged_responsible.iter().enumerate() {
            alleged_responsible.extend(party(&mut v, move || format!("{path}.alleged_responsible[{i}]"), p));
        }
    }

    let mut attributions = Vec::with_capacity(wire.attributions.len().min(limits::ITEMS));
    if !too_many(&mut v, f("attributions"), wire.attributions.len(), limits::ITEMS) {
        for (i, a) in wire.attributions.iter().enumerate() {
            let at = |name| item("attributions", i, name);
            let actor = v.check(at("actor"), bounded_text(&a.actor, limits::SHORT_TEXT_CHARS, true));
            let affiliation = v.check(
                at("affiliation"),
                bounded_text(&a.affiliation, limits::SHORT_TEXT_CHARS, true),
            );
            let claimed_by = party(&mut v, at("claimed_by"), &a.claimed_by);
            if let (Some(actor), Some(affiliation), Some(claimed_by)) = (actor, affiliation, claimed_by) {
                attributions.push(AttributionClaim {
                    actor,
                    affiliation,
                    claimed_by,
                });
            }
        }
    }

    let mut casualties = Vec::with_capacity(wire.casualties.len().min(limits::ITEMS));
    if !too_many(&mut v, f("casualties"), wire.casualties.len(), limits::ITEMS) {
        for (i, c) in wire.casualties.iter().enumerate() {
            let at = |name| item("casualties", i, name);
            let group = enum_field(&mut v, at("group"), c.group, CasualtyGroup::from_number);
            let killed = range(&mut v, at("killed"), &c.killed);
            let injured = range(&mut v, at("injured"), &c.injured);
            if matches!((&c.killed, &c.injured), (None, None)) {
                v.add(at("killed"), "a casualty claim needs killed or injured figures");
            }
            let claimed_by = party(&mut v, at("claimed_by"), &c.claimed_by);
            if let (Some(group), Some(killed), Some(injured), Some(claimed_by)) = (group, killed, injured, claimed_by) {
                casualties.push(CasualtyClaim {
                    group,
                    killed,
                    injured,
                    claimed_by,
                });
            }
        }
    }

    let mut evidence = Vec::with_capacity(wire.evidence.len().min(limits::ITEMS));
    if !too_many(&mut v, f("evidence"), wire.evidence.len(), limits::ITEMS) {
        for (i, e) in wire.evidence.iter().enumerate() {
            let at = |name| item("evidence", i, name);
            let uri = v.check(at("uri"), EvidenceRef::uri(&e.uri));
            let sha256 = v.check(at("sha256"), EvidenceRef::sha256(&e.sha256));
            let media_type = v.check(at("media_type"), EvidenceRef::media_type(&e.media_type));
            if let (Some(uri), Some(sha256), Some(media_type)) = (uri, sha256, media_type) {
                evidence.push(EvidenceRef {
                    uri,
                    sha256,
                    media_type,
                });
            }
        }
    }

    let incident_id = if wire.incident_id.is_empty() {
        Some(None)
    } else {
        v.check(f("incident_id"), wire.incident_id.parse::<IncidentId>())
            .map(Some)
    };

    match (
        reporting_party,
        occurred_at,
        occurred_precision,
        location,
        category,
        summary,
        incident_id,
    ) {
        (
            Some(reporting_party),
            Some(occurred_at),
            Some(occurred_precision),
            Some(location),
            Some(category),
            Some(summary),
            Some(incident_id),
        ) if v.is_empty() => Ok(Report {
            reporting_party,
            sources,
            occurred_at,
            occurred_precision,
            location,
            category,
            summary,
            alleged_responsible,
            attributions,
            casualties,
            evidence,
            incident_id,
        }),
        _ => Err(v.into_vec()),
    }
}

/// Validates the location of the report at `path`.
fn location(v: &mut Violations, path: &str, wire: &v1::Location) -> Option<Location> {
    let f = |name: &'static str| move || format!("{path}.location.{name}");
    let point = match &wire.point {
        None => Some(None),
        Some(p) => {
            let lat = v.check(f("point.latitude"), LatLng::latitude(p.latitude));
            let lon = v.check(f("point.longitude"), LatLng::longitude(p.longitude));
            lat.zip(lon).and_then(|(lat, lon)| LatLng::new(lat, lon).ok()).map(Some)
        }
    };
    let area = if wire.area.is_empty() {
        Some(None)
    } else {
        v.check(f("area"), bounded_text(&wire.area, limits::SHORT_TEXT_CHARS, true))
            .map(Some)
    };
    if wire.point.is_none() && wire.area.is_empty() {
        v.add(f("area"), "a location needs a point or a named area");
    }
    let zone = enum_field(v, f("zone"), wire.zone, Zone::from_number);
    let precision = enum_field(v, f("precision"), wire.precision, LocationPrecision::from_number);
    Some(Location {
        point: point?,
        area: area?,
        zone: zone?,
        precision: precision?,
    })
}

fn range_to_wire(r: CountRange) -> v1::CountRange {
    v1::CountRange {
        low: r.low(),
        best: r.best(),
        high: r.high(),
    }
}

pub(super) fn optional_range_to_wire(r: Option<CountRange>) -> Option<v1::CountRange> {
    r.map(range_to_wire)
}

pub(super) fn latlng_to_wire(p: LatLng) -> v1::LatLng {
    v1::LatLng {
        latitude: p.lat(),
        longitude: p.lon(),
    }
}

impl From<&Report> for v1::Report {
    fn from(r: &Report) -> Self {
        v1::Report {
            reporting_party: r.reporting_party.to_string(),
            sources: r
                .sources
                .iter()
                .map(|s| v1::Source {
                    outlet: s.outlet.clone(),
                    url: s.url.clone().unwrap_or_default(),
                    published_at: s.published_at.map(timestamp_to_wire),
                })
                .collect(),
            occurred_at: Some(timestamp_to_wire(r.occurred_at)),
            occurred_precision: r.occurred_precision.number(),
            location: Some(v1::Location {
                point: r.location.point.map(latlng_to_wire),
                area: r.location.area.clone().unwrap_or_default(),
                zone: r.location.zone.number(),
                precision: r.location.precision.number(),
            }),
            category: r.category.number(),
            summary: r.summary.clone(),
            alleged_responsible: r.alleged_responsible.iter().map(ToString::to_string).collect(),
            attributions: r.attributions.iter().map(attribution_to_wire).collect(),
            casualties: r.casualties.iter().map(casualty_to_wire).collect(),
            evidence: r
                .evidence
                .iter()
                .map(|e| v1::EvidenceRef {
                    uri: e.uri.clone(),
                    sha256: e.sha256.clone(),
                    media_type: e.media_type.clone(),
                })
                .collect(),
            incident_id: r.incident_id.map(|i| i.to_string()).unwrap_or_default(),
        }
    }
}

pub(super) fn attribution_to_wire(a: &AttributionClaim) -> v1::AttributionClaim {
    v1::AttributionClaim {
        actor: a.actor.clone(),
        affiliation: a.affiliation.clone(),
        claimed_by: a.claimed_by.to_string(),
    }
}

pub(super) fn casualty_to_wire(c: &CasualtyClaim) -> v1::CasualtyClaim {
    v1::CasualtyClaim {
        group: c.group.number(),
        killed: optional_range_to_wire(c.killed),
        injured: optional_range_to_wire(c.injured),
        claimed_by: c.claimed_by.to_string(),
    }
}

impl From<&StoredReport> for v1::StoredReport {
    fn from(s: &StoredReport) -> Self {
        v1::StoredReport {
            report_id: s.report_id.to_string(),
            incident_id: s.incident_id.to_string(),
            position: s.position().0,
            received_at: Some(timestamp_to_wire(s.received_at)),
            report: Some(v1::Report::from(&s.report)),
            derived_zone: s.derived_zone.map_or(0, Zone::number),
            zone_disputed: s.zone_disputed(),
            client_report_id: s
                .client_report_id
                .as_ref()
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default(),
            signature: s.signature.map(|s| v1::ReportSignature {
                public_key: s.public_key.to_vec(),
                signature: s.signature.to_vec(),
            }),
            version: s.version,
            version_position: s.version_position.0,
            amendment_reason: s.amendment_reason.clone().unwrap_or_default(),
            retraction: s.retraction.as_ref().map(|r| v1::Retraction {
                position: r.position.0,
                recorded_at: Some(timestamp_to_wire(r.recorded_at)),
                reason: r.reason.clone(),
            }),
        }
    }
}

/// Reads a stored signature back from the log.
pub(super) fn signature_from_wire(wire: &v1::ReportSignature) -> Result<ReportSignature, String> {
    match (
        wire.public_key.as_slice().try_into(),
        wire.signature.as_slice().try_into(),
    ) {
        (Ok(public_key), Ok(signature)) => Ok(ReportSignature { public_key, signature }),
        _ => Err("needs a 32-byte public key and a 64-byte signature".to_owned()),
    }
}

/// Reads a stored report back from the log.
pub fn stored_report_from_wire(wire: &v1::StoredReport) -> Result<StoredReport, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let report_id = v.check("report_id", wire.report_id.parse::<ReportId>());
    let incident_id = v.check("incident_id", wire.incident_id.parse::<IncidentId>());
    let received_at = match &wire.received_at {
        Some(t) => v.check("received_at", timestamp_from_wire(t)),
        None => v.check("received_at", Err("is required".to_owned())),
    };
    let report = match &wire.report {
        Some(r) => match report_from_wire(r, "report", Received::Stored) {
            Ok(r) => Some(r),
            Err(violations) => {
                violations.into_iter().for_each(|fv| v.add(fv.field, fv.description));
                None
            }
        },
        None => v.check("report", Err("is required".to_owned())),
    };
    let derived_zone = Zone::from_number(wire.derived_zone);
    let client_report_id = if wire.client_report_id.is_empty() {
        Some(None)
    } else {
        v.check("client_report_id", wire.client_report_id.parse::<ClientReportId>())
            .map(Some)
    };
    let signature = match &wire.signature {
        None => Some(None),
        Some(s) => v.check("signature", signature_from_wire(s)).map(Some),
    };
    let retraction = match &wire.retraction {
        None => Some(None),
        Some(r) => v
            .check(
                "retraction.recorded_at",
                timestamp_from_wire(&r.recorded_at.unwrap_or_default()),
            )
            .map(|recorded_at| {
                Some(Retraction {
                    position: Position(r.position),
                    recorded_at,
                    reason: r.reason.clone(),
                })
            }),
    };
    // Version 1 is what reports recorded before versions existed are.
    let version = wire.version.max(1);
    let version_position = if wire.version_position == 0 {
        wire.position
    } else {
        wire.version_position
    };
    match (
        report_id,
        incident_id,
        received_at,
        report,
        client_report_id,
        signature,
        retraction,
    ) {
        (
            Some(report_id),
            Some(incident_id),
            Some(received_at),
            Some(report),
            Some(client_report_id),
            Some(signature),
            Some(retraction),
        ) => Ok(StoredReport {
            report_id,
            incident_id,
            received_at,
            report,
            derived_zone,
            client_report_id,
            signature,
            version,
            version_position: Position(version_position),
            amendment_reason: (!wire.amendment_reason.is_empty()).then(|| wire.amendment_reason.clone()),
            retraction,
        }),
        _ => Err(v.into_vec()),
    }
}
