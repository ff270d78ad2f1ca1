//! Which incident each report is in. Report ids are the positions that
//! recorded them, so they arrive in order: a sorted list, appended to,
//! serves where a hash map would hash every id.

use truce_domain::{IncidentId, ReportId};

/// Each report's incident, by report id.
#[derive(Debug, Default)]
pub(crate) struct ReportPlaces(Vec<(ReportId, IncidentId)>);

impl ReportPlaces {
    /// Records that `report` is in `incident`.
    pub(crate) fn insert(&mut self, report: ReportId, incident: IncidentId) {
        match self.0.last() {
            Some((last, _)) if *last >= report => match self.find(report) {
                Ok(i) => self.0[i].1 = incident,
                Err(i) => self.0.insert(i, (report, incident)),
            },
            _ => self.0.push((report, incident)),
        }
    }

    /// The incident `report` is in.
    pub(crate) fn get(&self, report: ReportId) -> Option<IncidentId> {
        self.find(report).ok().map(|i| self.0[i].1)
    }

    fn find(&self, report: ReportId) -> Result<usize, usize> {
        self.0.binary_search_by_key(&report, |(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use truce_domain::Position;

    use super::*;

    #[test]
    fn finds_every_report_whatever_the_order_it_came_in() {
        let report = |n| ReportId(Position(n));
        let incident = |n| IncidentId(Position(n));
        let mut places = ReportPlaces::default();
        for (r, i) in [(1, 1), (2, 1), (5, 5), (3, 3), (9, 5), (5, 5)] {
            places.insert(report(r), incident(i));
        }
        let found = |n| places.get(report(n)).map(|i| i.0.0);
        assert_eq!(
            (found(1), found(2), found(3), found(5), found(9)),
            (Some(1), Some(1), Some(3), Some(5), Some(5))
        );
        assert_eq!((found(0), found(4), found(10)), (None, None, None));
    }
}
