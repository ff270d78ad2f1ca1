//! Counting incidents for `Summarize`: by category, zone, party and status,
//! with the sums of their casualty ranges.

use std::collections::BTreeMap;

use crate::{incident::IncidentSummary, report::CountRange};

/// A count of incidents with summed casualty ranges: the low sum adds each
/// incident's lowest claim, the high sum each incident's highest, so the
/// spread between claimants survives aggregation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Incidents counted.
    pub incidents: u32,
    /// Summed killed range; `None` when no counted incident has a figure.
    pub killed: Option<CountRange>,
    /// Summed injured range.
    pub injured: Option<CountRange>,
}

fn add(sum: Option<CountRange>, part: Option<CountRange>) -> Option<CountRange> {
    match (sum, part) {
        (Some(sum), Some(part)) => Some(sum.plus(part)),
        (sum, part) => sum.or(part),
    }
}

impl Tally {
    /// Counts one incident in.
    pub fn add(&mut self, incident: &IncidentSummary) {
        self.incidents += 1;
        self.killed = add(self.killed, incident.killed);
        self.injured = add(self.injured, incident.injured);
    }
}

/// Tallies by every dimension `Summarize` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    /// Over everything counted.
    pub total: Tally,
    /// By category claimed (an incident counts once per category).
    pub by_category: BTreeMap<&'static str, Tally>,
    /// By zone stated or derived.
    pub by_zone: BTreeMap<&'static str, Tally>,
    /// By reporting party.
    pub by_reporter: BTreeMap<String, Tally>,
    /// By party alleged responsible.
    pub by_responsible: BTreeMap<String, Tally>,
    /// By status.
    pub by_status: BTreeMap<&'static str, Tally>,
}

impl Breakdown {
    /// Counts one incident in, once in each group it belongs to.
    pub fn add(&mut self, incident: &IncidentSummary) {
        self.total.add(incident);
        for c in &incident.categories {
            self.by_category.entry(c.name()).or_default().add(incident);
        }
        for z in &incident.zones {
            self.by_zone.entry(z.name()).or_default().add(incident);
        }
        for p in &incident.reporters {
            self.by_reporter.entry(p.to_string()).or_default().add(incident);
        }
        for p in &incident.alleged_responsible {
            self.by_responsible.entry(p.to_string()).or_default().add(incident);
        }
        self.by_status.entry(incident.status.name()).or_default().add(incident);
    }
}
