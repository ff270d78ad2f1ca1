//! Log events: their encoding is what the log stores and the hash chain
//! covers.

use prost::Message;
use truce_domain::{
    FieldViolation, Position,
    event::{EventBody, IncidentReviewed, RecordedEvent, ReportAmended, ReportRecorded, ReportRetracted},
};

use super::{
    incident::{review_from_wire, review_to_wire, summary_from_wire},
    report::{signature_from_wire, stored_report_from_wire},
    time::{timestamp_from_wire, timestamp_to_wire},
};
use crate::v1;

/// The canonical encoding of an event.
pub fn event_to_wire(event: &RecordedEvent) -> Vec<u8> {
    let body = match &event.body {
        EventBody::ReportRecorded(r) => v1::log_event::Body::ReportRecorded(v1::ReportRecorded {
            report: Some(v1::StoredReport::from(r.report.as_ref())),
            opened_incident: r.opened_incident,
            incident: Some(v1::IncidentSummary::from(r.incident.as_ref())),
            content_digest: r.content_digest.to_vec(),
            previous_position: r.previous_position.map_or(0, |p| p.0),
        }),
        EventBody::IncidentReviewed(r) => v1::log_event::Body::IncidentReviewed(v1::IncidentReviewed {
            review: Some(review_to_wire(&r.review, event.position, event.recorded_at)),
            incident: Some(v1::IncidentSummary::from(r.incident.as_ref())),
            previous_position: r.previous_position.0,
        }),
        EventBody::ReportAmended(r) => v1::log_event::Body::ReportAmended(v1::ReportAmended {
            report: Some(v1::StoredReport::from(r.report.as_ref())),
            incident: Some(v1::IncidentSummary::from(r.incident.as_ref())),
            previous_position: r.previous_position.0,
        }),
        EventBody::ReportRetracted(r) => v1::log_event::Body::ReportRetracted(v1::ReportRetracted {
            report_id: r.report_id.to_string(),
            reporting_party: r.reporting_party.to_string(),
            reason: r.reason.clone(),
            incident: Some(v1::IncidentSummary::from(r.incident.as_ref())),
            previous_position: r.previous_position.0,
            signature: r.signature.map(|s| v1::ReportSignature {
                public_key: s.public_key.to_vec(),
                signature: s.signature.to_vec(),
            }),
            version: r.version,
        }),
    };
    v1::LogEvent {
        position: event.position.0,
        recorded_at: Some(timestamp_to_wire(event.recorded_at)),
        body: Some(body),
    }
    .encode_to_vec()
}

fn prefixed(prefix: &str, violations: Vec<FieldViolation>) -> String {
    violations
        .into_iter()
        .map(|v| format!("{prefix}.{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decodes an event read from the log at `position`. An error means the
/// stored bytes are not an event this version understands.
pub fn event_from_wire(position: u64, bytes: &[u8]) -> Result<RecordedEvent, String> {
    let wire = v1::LogEvent::decode(bytes).map_err(|e| format!("undecodable event: {e}"))?;
    if wire.position != position {
        return Err(format!(
            "event says position {} but is stored at {position}",
            wire.position
        ));
    }
    let recorded_at = timestamp_from_wire(&wire.recorded_at.unwrap_or_default())?;
    let body = match wire.body {
        Some(v1::log_event::Body::ReportRecorded(r)) => {
            let report = stored_report_from_wire(&r.report.unwrap_or_default()).map_err(|v| prefixed("report", v))?;
            let incident = summary_from_wire(&r.incident.unwrap_or_default()).map_err(|v| prefixed("incident", v))?;
            let content_digest = r
                .content_digest
                .as_slice()
                .try_into()
                .map_err(|_| "content_digest is not 32 bytes".to_owned())?;
            EventBody::ReportRecorded(ReportRecorded {
                report: report.into(),
                opened_incident: r.opened_incident,
                incident: incident.into(),
                content_digest,
                previous_position: (r.previous_position != 0).then_some(Position(r.previous_position)),
            })
        }
        Some(v1::log_event::Body::IncidentReviewed(r)) => {
            let incident = summary_from_wire(&r.incident.unwrap_or_default()).map_err(|v| prefixed("incident", v))?;
            let review =
                review_from_wire(&r.review.unwrap_or_default(), incident.id).map_err(|v| prefixed("review", v))?;
            EventBody::IncidentReviewed(IncidentReviewed {
                review,
                incident: incident.into(),
                previous_position: Position(r.previous_position),
            })
        }
        Some(v1::log_event::Body::ReportAmended(r)) => {
            let report = stored_report_from_wire(&r.report.unwrap_or_default()).map_err(|v| prefixed("report", v))?;
            let incident = summary_from_wire(&r.incident.unwrap_or_default()).map_err(|v| prefixed("incident", v))?;
            EventBody::ReportAmended(ReportAmended {
                report: report.into(),
                incident: incident.into(),
                previous_position: Position(r.previous_position),
            })
        }
        Some(v1::log_event::Body::ReportRetracted(r)) => {
            let incident = summary_from_wire(&r.incident.unwrap_or_default()).map_err(|v| prefixed("incident", v))?;
            EventBody::ReportRetracted(ReportRetracted {
                report_id: r.report_id.parse().map_err(|e| format!("report_id: {e}"))?,
                reporting_party: r.reporting_party.parse().map_err(|e| format!("reporting_party: {e}"))?,
                reason: r.reason,
                incident: incident.into(),
                previous_position: Position(r.previous_position),
                version: r.version,
                signature: r
                    .signature
                    .map(|s| signature_from_wire(&s))
                    .transpose()
                    .map_err(|e| format!("signature: {e}"))?,
            })
        }
        None => return Err("event has no body (written by a newer version?)".to_owned()),
    };
    Ok(RecordedEvent {
        position: Position(position),
        recorded_at,
        body,
    })
}
