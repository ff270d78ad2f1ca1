//! Stored events read only as far as a replaying subscriber needs.
//!
//! A subscriber replaying the log receives each event as an
//! `IncidentChange`, whose incident, report, review and time are the very
//! parts the stored event holds, encoded the same way. [`StoredEvent`] reads
//! an event into those parts as slices of the stored bytes, and
//! [`StoredEvent::frame`] writes the change around the same slices: nothing
//! is decoded into domain types or encoded again. Only a subscription with
//! a filter decodes the incident summary, to judge it.

use prost::{Message, bytes::Bytes};
use truce_domain::{Position, ReportId, incident::IncidentSummary};

use super::incident::summary_from_wire;
use crate::{frame::Frame, v1};

/// A stored event, its parts still encoded.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    position: Position,
    recorded_at: Option<Bytes>,
    previous_position: Option<Position>,
    incident: Bytes,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Recorded { report: Option<Bytes>, opened: bool },
    Reviewed { review: Option<Bytes> },
    Amended { report: Option<Bytes> },
    Retracted { report_id: String, reason: String },
}

impl StoredEvent {
    /// Reads the event stored at `position`.
    pub fn decode(position: u64, payload: Bytes) -> Result<StoredEvent, String> {
        let event = RawLogEvent::decode(payload).map_err(|e| format!("not a log event: {e}"))?;
        if event.position != position {
            return Err(format!("the event says it is at position {}", event.position));
        }
        let (incident, previous, body) = match event.body {
            Some(RawBody::ReportRecorded(r)) => (
                r.incident,
                (r.previous_position != 0).then_some(Position(r.previous_position)),
                Body::Recorded {
                    report: r.report,
                    opened: r.opened_incident,
                },
            ),
            Some(RawBody::IncidentReviewed(r)) => (
                r.incident,
                Some(Position(r.previous_position)),
                Body::Reviewed { review: r.review },
            ),
            Some(RawBody::ReportAmended(r)) => (
                r.incident,
                Some(Position(r.previous_position)),
                Body::Amended { report: r.report },
            ),
            Some(RawBody::ReportRetracted(r)) => (
                r.incident,
                Some(Position(r.previous_position)),
                Body::Retracted {
                    report_id: r.report_id,
                    reason: r.reason,
                },
            ),
            None => return Err("the event has no body".into()),
        };
        Ok(StoredEvent {
            position: Position(position),
            recorded_at: event.recorded_at,
            previous_position: previous,
            incident: incident.ok_or("the event has no incident summary")?,
            body,
        })
    }

    /// Its position.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The position of its incident's previous event; `None` when it opened
    /// the incident.
    pub fn previous_position(&self) -> Option<Position> {
        self.previous_position
    }

    /// The report the event carries, still encoded (a `StoredReport`):
    /// `None` for a review or a retraction, which carry none.
    pub fn carried_report(&self) -> Option<CarriedReport<'_>> {
        match &self.body {
            Body::Recorded { report, .. } => report.as_ref().map(CarriedReport::Recorded),
            Body::Amended { report } => report.as_ref().map(CarriedReport::Amended),
            Body::Reviewed { .. } | Body::Retracted { .. } => None,
        }
    }

    /// The incident's summary after it, decoded and checked.
    pub fn incident(&self) -> Result<IncidentSummary, String> {
        let wire = v1::IncidentSummary::decode(self.incident.clone()).map_err(|e| format!("incident: {e}"))?;
        summary_from_wire(&wire).map_err(|violations| {
            let rules: Vec<String> = violations.iter().map(ToString::to_string).collect();
            format!("incident: {}", rules.join("; "))
        })
    }

    /// The event as a subscriber receives it: a change (or, with
    /// `departure`, the incident leaving the subscriber's filter) carrying
    /// `resume_token`.
    pub fn frame(&self, resume_token: String, departure: bool) -> Result<Frame, String> {
        let mut change = RawChange {
            position: self.position.0,
            resume_token,
            incident: Some(self.incident.clone()),
            recorded_at: self.recorded_at.clone(),
            ..Default::default()
        };
        match &self.body {
            Body::Recorded { report, opened } => {
                change.kind = if *opened {
                    v1::ChangeKind::IncidentOpened
                } else {
                    v1::ChangeKind::ReportAdded
                } as i32;
                change.report_id = report_id(report.as_ref())?;
                change.report = report.clone();
            }
            Body::Reviewed { review } => {
                change.kind = v1::ChangeKind::Reviewed as i32;
                change.review = review.clone();
            }
            Body::Amended { report } => {
                change.kind = v1::ChangeKind::ReportAmended as i32;
                change.report_id = report_id(report.as_ref())?;
                change.report = report.clone();
            }
            Body::Retracted { report_id, reason } => {
                change.kind = v1::ChangeKind::ReportRetracted as i32;
                change.report_id = report_id.clone();
                let recorded_at = self
                    .recorded_at
                    .clone()
                    .map(prost_types::Timestamp::decode)
                    .transpose()
                    .map_err(|e| format!("recorded_at: {e}"))?;
                change.retraction = Some(v1::Retraction {
                    position: self.position.0,
                    recorded_at,
                    reason: reason.clone(),
                });
            }
        }
        let response = if departure {
            RawResponse {
                left_filter: Some(change),
                ..Default::default()
            }
        } else {
            RawResponse {
                change: Some(change),
                ..Default::default()
            }
        };
        Ok(Frame::of(&response))
    }
}

/// A report an event carries, as its encoded `StoredReport`.
#[derive(Debug, Clone, Copy)]
pub enum CarriedReport<'a> {
    /// A report recorded by the event.
    Recorded(&'a Bytes),
    /// A report's new version, recorded by an amendment.
    Amended(&'a Bytes),
}

/// The id of the report in an encoded `StoredReport`, read without
/// decoding the rest of it.
pub fn stored_report_id(report: &[u8]) -> Result<ReportId, String> {
    let id = RawReportId::decode(report).map_err(|e| format!("report: {e}"))?;
    id.report_id.parse().map_err(|e| format!("report.report_id: {e}"))
}

/// The id of the stored report encoded in `report`.
fn report_id(report: Option<&Bytes>) -> Result<String, String> {
    let report = report.ok_or("the event has no report")?;
    RawReportId::decode(report.clone())
        .map(|r| r.report_id)
        .map_err(|e| format!("report: {e}"))
}

// The wire messages below mirror those of `truce.v1` field for field, with
// each nested message kept as its encoded bytes: a length-delimited field
// reads and writes the same whether it is declared a message or bytes.

/// `LogEvent`.
#[derive(Clone, PartialEq, Message)]
struct RawLogEvent {
    #[prost(uint64, tag = "1")]
    position: u64,
    #[prost(bytes = "bytes", optional, tag = "2")]
    recorded_at: Option<Bytes>,
    #[prost(oneof = "RawBody", tags = "3, 4, 5, 6")]
    body: Option<RawBody>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum RawBody {
    #[prost(message, tag = "3")]
    ReportRecorded(RawReportRecorded),
    #[prost(message, tag = "4")]
    IncidentReviewed(RawIncidentReviewed),
    #[prost(message, tag = "5")]
    ReportAmended(RawReportAmended),
    #[prost(message, tag = "6")]
    ReportRetracted(RawReportRetracted),
}

/// `ReportRecorded`, without the content digest.
#[derive(Clone, PartialEq, Message)]
struct RawReportRecorded {
    #[prost(bytes = "bytes", optional, tag = "1")]
    report: Option<Bytes>,
    #[prost(bool, tag = "2")]
    opened_incident: bool,
    #[prost(bytes = "bytes", optional, tag = "3")]
    incident: Option<Bytes>,
    #[prost(uint64, tag = "5")]
    previous_position: u64,
}

/// `IncidentReviewed`.
#[derive(Clone, PartialEq, Message)]
struct RawIncidentReviewed {
    #[prost(bytes = "bytes", optional, tag = "1")]
    review: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    incident: Option<Bytes>,
    #[prost(uint64, tag = "3")]
    previous_position: u64,
}

/// `ReportAmended`.
#[derive(Clone, PartialEq, Message)]
struct RawReportAmended {
    #[prost(bytes = "bytes", optional, tag = "1")]
    report: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    incident: Option<Bytes>,
    #[prost(uint64, tag = "3")]
    previous_position: u64,
}

/// `ReportRetracted`, without the reporting party.
#[derive(Clone, PartialEq, Message)]
struct RawReportRetracted {
    #[prost(string, tag = "1")]
    report_id: String,
    #[prost(string, tag = "3")]
    reason: String,
    #[prost(bytes = "bytes", optional, tag = "4")]
    incident: Option<Bytes>,
    #[prost(uint64, tag = "5")]
    previous_position: u64,
}

/// The id of a `StoredReport`.
#[derive(Clone, PartialEq, Message)]
struct RawReportId {
    #[prost(string, tag = "1")]
    report_id: String,
}

/// `IncidentChange`.
#[derive(Clone, PartialEq, Message)]
struct RawChange {
    #[prost(uint64, tag = "1")]
    position: u64,
    #[prost(string, tag = "2")]
    resume_token: String,
    #[prost(int32, tag = "3")]
    kind: i32,
    #[prost(bytes = "bytes", optional, tag = "4")]
    incident: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "5")]
    report: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "6")]
    recorded_at: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "7")]
    review: Option<Bytes>,
    #[prost(string, tag = "8")]
    report_id: String,
    #[prost(message, optional, tag = "9")]
    retraction: Option<v1::Retraction>,
}

/// `SubscribeResponse`, as a change or a departure.
#[derive(Clone, PartialEq, Message)]
struct RawResponse {
    #[prost(message, optional, tag = "2")]
    change: Option<RawChange>,
    #[prost(message, optional, tag = "6")]
    left_filter: Option<RawChange>,
}
