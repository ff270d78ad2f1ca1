//! Grouping state folded elsewhere. In one process with the query service,
//! the view decodes every event's incident summary as it is built at
//! start; the sequencer takes its grouping index from those summaries
//! instead of reading and decoding the whole log a second time.

use std::sync::Arc;

use truce_domain::{grouping::IncidentIndex, incident::IncidentSummary};
use truce_log::Position;

/// The latest summary of every incident, as of a position of the log.
#[derive(Debug)]
pub struct Folded {
    /// The position they are as of.
    pub position: Position,
    /// Every incident's latest summary.
    pub summaries: Vec<Arc<IncidentSummary>>,
}

impl Folded {
    /// The grouping index when the summaries are as of `head`, the log's
    /// head as the sequencer starts; `None` when the log has moved on from
    /// them, and the sequencer folds the log itself.
    pub fn index_at(self, head: Position) -> Option<IncidentIndex> {
        (self.position == head).then(|| IncidentIndex::from_summaries(self.summaries))
    }
}
