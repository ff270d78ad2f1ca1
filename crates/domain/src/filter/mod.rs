//! The filter language: a documented subset of AIP-160 over incident
//! summaries, shared by `ListIncidents`, `Subscribe` and `Summarize`.
//!
//! ```text
//! category = AIR_STRIKE AND zone = AT_LINE AND killed_high >= 10
//! area = "Rafah"
//! reporter = "idf" OR responsible = "hamas"
//! bbox(34.2, 31.2, 34.4, 31.4) AND occurred >= "2025-11-22T00:00:00Z"
//! NOT status = CONFIRMED_BREACH
//! ```
//!
//! As in AIP-160, `OR` binds tighter than `AND`: `a AND b OR c` is
//! `a AND (b OR c)`. Fields that hold several values (categories, zones,
//! areas, reporters, parties alleged responsible) match `=` and `:` when any
//! value does, and `!=` when none does. Text comparisons of areas ignore
//! case. Time comparisons on `occurred` hold when any instant of the
//! incident's occurrence window satisfies them. A filter is parsed once,
//! with every value checked, so evaluation cannot fail.

mod parse;

use std::cmp::Ordering;

use crate::{
    IncidentId, PartyId, Timestamp,
    geo::BoundingBox,
    incident::{IncidentStatus, IncidentSummary},
    report::{Category, Zone},
};

pub use parse::{FilterError, MAX_FILTER_BYTES};

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Option<Expr>,
    text: String,
}

/// A node of a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every part holds.
    And(Vec<Expr>),
    /// Some part holds.
    Or(Vec<Expr>),
    /// The part does not hold.
    Not(Box<Expr>),
    /// A test of one field.
    Test(Test),
}

/// How a value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `=` or `:`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Comparator {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparator::Eq => ordering.is_eq(),
            Comparator::Ne => ordering.is_ne(),
            Comparator::Lt => ordering.is_lt(),
            Comparator::Le => ordering.is_le(),
            Comparator::Gt => ordering.is_gt(),
            Comparator::Ge => ordering.is_ge(),
        }
    }
}

/// A numeric field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountField {
    /// Lowest killed figure of any claimant (0 when none).
    KilledLow,
    /// Highest killed figure of any claimant (0 when none).
    KilledHigh,
    /// Lowest injured figure.
    InjuredLow,
    /// Highest injured figure.
    InjuredHigh,
    /// Number of reports.
    ReportCount,
    /// Position of the last change.
    UpdatedPosition,
}

/// A test of one field against a checked value. `bool` is true for `=`,
/// false for `!=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `id = "inc-1"`.
    Id(bool, IncidentId),
    /// `status = REPORTED`.
    Status(bool, IncidentStatus),
    /// `category = AIR_STRIKE`: any of the categories claimed.
    Category(bool, Category),
    /// `zone = AT_LINE`: any zone stated or derived.
    Zone(bool, Zone),
    /// `area = "Rafah"`: any area, ignoring case.
    Area(bool, String),
    /// `reporter = "idf"`.
    Reporter(bool, PartyId),
    /// `responsible = "hamas"`.
    Responsible(bool, PartyId),
    /// `killed_high >= 10`.
    Count(CountField, Comparator, u64),
    /// `occurred >= "2025-11-22T00:00:00Z"`.
    Occurred(Comparator, Timestamp),
    /// `updated >= "..."`: when the last change was recorded.
    Updated(Comparator, Timestamp),
    /// `bbox(west, south, east, north)`: the incident's points reach into
    /// the box.
    BBox(BoundingBox),
}

impl Filter {
    /// Parses a filter; the empty string matches everything.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            root: parse::parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The filter that matches everything.
    pub fn all() -> Filter {
        Filter {
            root: None,
            text: String::new(),
        }
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed expression; `None` matches everything.
    pub fn expr(&self) -> Option<&Expr> {
        self.root.as_ref()
    }

    /// True when `incident` satisfies the filter.
    pub fn matches(&self, incident: &IncidentSummary) -> bool {
        self.root.as_ref().is_none_or(|e| e.matches(incident))
    }
}

/// A value incidents are indexed by: what an equality test names. Lets a
/// listing start from the incidents that have a value the filter requires
/// instead of from every incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    /// `status = S`.
    Status(IncidentStatus),
    /// `category = C`.
    Category(Category),
    /// `zone = Z`.
    Zone(Zone),
    /// `area = "A"`, lowercased (areas compare ignoring case).
    Area(String),
    /// `reporter = "P"`.
    Reporter(PartyId),
    /// `responsible = "P"`.
    Responsible(PartyId),
}

impl IndexKey {
    /// Every key `incident` is found by: one per value its tests compare.
    pub fn of(incident: &IncidentSummary) -> Vec<IndexKey> {
        let all = std::iter::once(IndexKey::Status(incident.status))
            .chain(incident.categories.iter().map(|c| IndexKey::Category(*c)))
            .chain(incident.zones.iter().map(|z| IndexKey::Zone(*z)))
            .chain(incident.areas.iter().map(|a| IndexKey::Area(a.to_ascii_lowercase())))
            .chain(incident.reporters.iter().map(|p| IndexKey::Reporter(p.clone())))
            .chain(
                incident
                    .alleged_responsible
                    .iter()
                    .map(|p| IndexKey::Responsible(p.clone())),
            );
        let mut keys: Vec<IndexKey> = Vec::new();
        for key in all {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }
}

impl Filter {
    /// Keys every matching incident has: each is enough to narrow the
    /// candidates. Empty when the filter requires none (it has no
    /// top-level equality test, e.g. only `OR`, `NOT`, ranges or `!=`).
    pub fn required_keys(&self) -> Vec<IndexKey> {
        match &self.root {
            None => Vec::new(),
            Some(Expr::And(parts)) => parts.iter().filter_map(Expr::required_key).collect(),
            Some(other) => other.required_key().into_iter().collect(),
        }
    }
}

impl Expr {
    /// The key an equality test requires.
    fn required_key(&self) -> Option<IndexKey> {
        let Expr::Test(test) = self else {
            return None;
        };
        Some(match test {
            Test::Status(true, s) => IndexKey::Status(*s),
            Test::Category(true, c) => IndexKey::Category(*c),
            Test::Zone(true, z) => IndexKey::Zone(*z),
            Test::Area(true, a) => IndexKey::Area(a.to_ascii_lowercase()),
            Test::Reporter(true, p) => IndexKey::Reporter(p.clone()),
            Test::Responsible(true, p) => IndexKey::Responsible(p.clone()),
            _ => return None,
        })
    }

    /// True when `incident` satisfies this expression.
    pub fn matches(&self, incident: &IncidentSummary) -> bool {
        match self {
            Expr::And(parts) => parts.iter().all(|p| p.matches(incident)),
            Expr::Or(parts) => parts.iter().any(|p| p.matches(incident)),
            Expr::Not(part) => !part.matches(incident),
            Expr::Test(test) => test.matches(incident),
        }
    }
}

impl Test {
    fn matches(&self, i: &IncidentSummary) -> bool {
        match self {
            Test::Id(eq, id) => (i.id == *id) == *eq,
            Test::Status(eq, status) => (i.status == *status) == *eq,
            Test::Category(eq, c) => i.categories.contains(c) == *eq,
            Test::Zone(eq, z) => i.zones.contains(z) == *eq,
            Test::Area(eq, area) => i.areas.iter().any(|a| a.eq_ignore_ascii_case(area)) == *eq,
            Test::Reporter(eq, p) => i.reporters.contains(p) == *eq,
            Test::Responsible(eq, p) => i.alleged_responsible.contains(p) == *eq,
            Test::Count(field, cmp, value) => cmp.holds(count(i, *field).cmp(value)),
            Test::Occurred(cmp, t) => occurred_holds(i, *cmp, *t),
            Test::Updated(cmp, t) => cmp.holds(i.updated_at.cmp(t)),
            Test::BBox(bbox) => i.bounds.is_some_and(|b| b.intersects(bbox)),
        }
    }
}

fn count(i: &IncidentSummary, field: CountField) -> u64 {
    match field {
        CountField::KilledLow => i.killed.map_or(0, |r| r.low()).into(),
        CountField::KilledHigh => i.killed.map_or(0, |r| r.high()).into(),
        CountField::InjuredLow => i.injured.map_or(0, |r| r.low()).into(),
        CountField::InjuredHigh => i.injured.map_or(0, |r| r.high()).into(),
        CountField::ReportCount => i.report_count.into(),
        CountField::UpdatedPosition => i.updated_position.0,
    }
}

/// Whether some instant of the window `[occurred_from, occurred_to]`
/// satisfies the comparison (for `!=`: the window is not exactly `t`).
fn occurred_holds(i: &IncidentSummary, cmp: Comparator, t: Timestamp) -> bool {
    let (from, to) = (i.occurred_from, i.occurred_to);
    match cmp {
        Comparator::Eq => from <= t && t <= to,
        Comparator::Ne => !(from == t && to == t),
        Comparator::Lt => from < t,
        Comparator::Le => from <= t,
        Comparator::Gt => to > t,
        Comparator::Ge => to >= t,
    }
}

#[cfg(test)]
mod tests;
