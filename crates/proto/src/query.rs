//! `truce.v1.QueryService` at the border: each request into the query it
//! asks, naming every invalid field with its path; each answer back into
//! its response. Tokens (page and resume) are the service's: they are
//! carried through as text and checked against its state.

use std::time::Duration;

use truce_domain::{
    IncidentId, Position, ReportId, Timestamp, Violations,
    filter::Filter,
    listing::Order,
    report::CountRange,
    tally::{Breakdown, Tally},
};

use crate::{ServiceError, convert::timestamp_from_wire, v1};

/// Incidents on a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The most incidents on a page, whatever the request says.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The heartbeat interval of a subscription that does not ask for one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// The heartbeat intervals a subscription may ask for.
pub const HEARTBEAT_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));

/// One incident or report, once the view has reached `min_position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<Id> {
    /// What is asked for.
    pub id: Id,
    /// The view answers once it has applied this position.
    pub min_position: Position,
}

/// A page of incidents.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Which incidents.
    pub filter: Filter,
    /// In which order.
    pub order: Order,
    /// The order as asked, which a page token is bound to.
    pub order_by: String,
    /// How many at most.
    pub page_size: usize,
    /// Where the previous page ended, if this is not the first.
    pub page_token: Option<String>,
    /// The view answers once it has applied this position.
    pub min_position: Position,
}

/// Totals over the incidents that occurred in a time range.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Which incidents.
    pub filter: Filter,
    /// Occurred at or after this.
    pub start: Timestamp,
    /// Occurred before this.
    pub end: Timestamp,
    /// The view answers once it has applied this position.
    pub min_position: Position,
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After the view's current position.
    Now,
    /// After the given position.
    After(Position),
    /// After the last position recorded before this time.
    Time(Timestamp),
    /// Where an earlier stream's resume token says.
    Token(String),
}

/// A live subscription.
#[derive(Debug, Clone)]
pub struct Subscribing {
    /// Which incidents.
    pub filter: Filter,
    /// From where.
    pub start: Start,
    /// Send the matching state as of the start first.
    pub snapshot: bool,
    /// How often to tell a quiet subscriber how far the log has got.
    pub heartbeat: Duration,
}

/// `GetIncident`.
pub fn incident_lookup(request: &v1::GetIncidentRequest) -> Result<Lookup<IncidentId>, ServiceError> {
    let id = request
        .incident_id
        .parse()
        .map_err(|rule| ServiceError::invalid("incident_id", rule))?;
    Ok(Lookup {
        id,
        min_position: Position(request.min_position),
    })
}

/// `GetReport`.
pub fn report_lookup(request: &v1::GetReportRequest) -> Result<Lookup<ReportId>, ServiceError> {
    let id = request
        .report_id
        .parse()
        .map_err(|rule| ServiceError::invalid("report_id", rule))?;
    Ok(Lookup {
        id,
        min_position: Position(request.min_position),
    })
}

/// `ListIncidents`.
pub fn listing(request: &v1::ListIncidentsRequest) -> Result<Listing, ServiceError> {
    let mut v = Violations::default();
    let filter = filter(&mut v, &request.filter);
    let order = v.check("order_by", Order::parse(&request.order_by));
    let page_size = match request.page_size {
        0 => Some(DEFAULT_PAGE_SIZE),
        n if n < 0 => v.check("page_size", Err("must not be negative".to_owned())),
        n => Some(usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE)),
    };
    let (Some(filter), Some(order), Some(page_size)) = (filter, order, page_size) else {
        return Err(ServiceError::InvalidArgument(v.into_vec()));
    };
    Ok(Listing {
        filter,
        order,
        order_by: request.order_by.clone(),
        page_size,
        page_token: (!request.page_token.is_empty()).then(|| request.page_token.clone()),
        min_position: Position(request.min_position),
    })
}

/// `Summarize`.
pub fn summary(request: &v1::SummarizeRequest) -> Result<Summary, ServiceError> {
    let mut v = Violations::default();
    let filter = filter(&mut v, &request.filter);
    let bound = |v: &mut Violations, field: &str, t: &Option<prost_types::Timestamp>, unset: Timestamp| {
        t.as_ref()
            .map_or(Some(unset), |t| v.check(field.to_owned(), timestamp_from_wire(t)))
    };
    let start = bound(&mut v, "occurred_start", &request.occurred_start, Timestamp(i64::MIN));
    let end = bound(&mut v, "occurred_end", &request.occurred_end, Timestamp(i64::MAX));
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        v.add("occurred_end", "must be after occurred_start");
    }
    match (filter, start, end) {
        (Some(filter), Some(start), Some(end)) if v.is_empty() => Ok(Summary {
            filter,
            start,
            end,
            min_position: Position(request.min_position),
        }),
        _ => Err(ServiceError::InvalidArgument(v.into_vec())),
    }
}

/// `Subscribe`.
pub fn subscribing(request: &v1::SubscribeRequest) -> Result<Subscribing, ServiceError> {
    use v1::subscribe_request::Start as Wire;
    let mut v = Violations::default();
    let filter = filter(&mut v, &request.filter);
    let start = match &request.start {
        None | Some(Wire::FromNow(_)) => Some(Start::Now),
        Some(Wire::FromBeginning(_)) => Some(Start::After(Position::ZERO)),
        Some(Wire::AfterPosition(p)) => Some(Start::After(Position(*p))),
        Some(Wire::FromTime(t)) => v.check("from_time", timestamp_from_wire(t)).map(Start::Time),
        Some(Wire::ResumeToken(text)) => Some(Start::Token(text.clone())),
    };
    let heartbeat = v.check("heartbeat_interval", heartbeat(request.heartbeat_interval.as_ref()));
    match (filter, start, heartbeat) {
        (Some(filter), Some(start), Some(heartbeat)) => Ok(Subscribing {
            filter,
            start,
            snapshot: request.snapshot,
            heartbeat,
        }),
        _ => Err(ServiceError::InvalidArgument(v.into_vec())),
    }
}

/// The answer to `Summarize`, as of `position`.
pub fn summarized(breakdown: &Breakdown, position: Position) -> v1::SummarizeResponse {
    v1::SummarizeResponse {
        total: Some(tally(&breakdown.total)),
        by_category: keyed(&breakdown.by_category),
        by_zone: keyed(&breakdown.by_zone),
        by_reporter: keyed(&breakdown.by_reporter),
        by_responsible: keyed(&breakdown.by_responsible),
        by_status: keyed(&breakdown.by_status),
        position: position.0,
    }
}

/// The filter a request names, its error added to `v`.
fn filter(v: &mut Violations, text: &str) -> Option<Filter> {
    v.check("filter", Filter::parse(text).map_err(|e| e.to_string()))
}

/// The heartbeat interval asked for (none, or zero: the default).
fn heartbeat(asked: Option<&prost_types::Duration>) -> Result<Duration, String> {
    let Some(d) = asked.filter(|d| d.seconds != 0 || d.nanos != 0) else {
        return Ok(DEFAULT_HEARTBEAT);
    };
    let (min, max) = HEARTBEAT_BOUNDS;
    u64::try_from(d.seconds)
        .ok()
        .zip(u32::try_from(d.nanos).ok())
        .map(|(s, n)| Duration::new(s, n))
        .filter(|wanted| (min..=max).contains(wanted))
        .ok_or_else(|| format!("must be between {min:?} and {max:?}"))
}

fn tally(t: &Tally) -> v1::Tally {
    let range = |r: Option<CountRange>| {
        r.map(|r| v1::CountRange {
            low: r.low(),
            best: r.best(),
            high: r.high(),
        })
    };
    v1::Tally {
        incidents: t.incidents,
        killed: range(t.killed),
        injured: range(t.injured),
    }
}

fn keyed<K: ToString>(map: &std::collections::BTreeMap<K, Tally>) -> Vec<v1::KeyedTally> {
    map.iter()
        .map(|(key, t)| v1::KeyedTally {
            key: key.to_string(),
            tally: Some(tally(t)),
        })
        .collect()
}
