//! The orders incidents are listed in.

use crate::incident::IncidentSummary;

/// An order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest incident first (the default).
    Opened,
    /// Newest incident first.
    OpenedDesc,
    /// Most recently changed first.
    UpdatedDesc,
    /// Most recent occurrence first.
    OccurredDesc,
    /// Highest upper bound of the killed first.
    KilledHighDesc,
}

impl Order {
    /// The order `text` names ("" for the default), or the rule it breaks.
    pub fn parse(text: &str) -> Result<Order, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["opened"] | ["opened", "asc"] => Ok(Order::Opened),
            ["opened", "desc"] => Ok(Order::OpenedDesc),
            ["updated", "desc"] => Ok(Order::UpdatedDesc),
            ["occurred", "desc"] => Ok(Order::OccurredDesc),
            ["killed_high", "desc"] => Ok(Order::KilledHighDesc),
            _ => Err(
                "must be one of \"opened\", \"opened desc\", \"updated desc\", \"occurred desc\", \"killed_high desc\""
                    .to_owned(),
            ),
        }
    }

    /// Ascending sort key; the incident id breaks ties, so keys are unique.
    pub fn key(self, s: &IncidentSummary) -> (i128, u64) {
        let id = s.id.0.0;
        let primary = match self {
            Order::Opened => i128::from(id),
            Order::OpenedDesc => -i128::from(id),
            Order::UpdatedDesc => -i128::from(s.updated_position.0),
            Order::OccurredDesc => -i128::from(s.occurred_to.0),
            Order::KilledHighDesc => -i128::from(s.killed.map_or(0, |k| k.high())),
        };
        (primary, id)
    }

    /// True when the listing is in opening order, so that it can stop at
    /// the first incident past a page.
    pub fn by_opening(self) -> bool {
        matches!(self, Order::Opened | Order::OpenedDesc)
    }
}
