//! The most recent applied changes, held in memory for subscribers that
//! fell behind live delivery.
//!
//! A subscriber whose queue filled is detached from its dispatcher and
//! reads history from where it was. Reading that history from the log
//! costs each such subscriber its own reads, decoding and encoding; under
//! overload that is every subscriber at once, for the same few seconds of
//! changes. Held here, those changes are read by every subscriber from the
//! same memory, each encoded once (the frames live dispatch already
//! shares), at the pace each client takes them. Only a subscriber further
//! behind than this holds reads the log. The memory is bounded by
//! [`RECENT_CHANGES`], whatever the number of subscribers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use truce_domain::Position;

use crate::live::LiveChange;

/// Changes held: about 16 s of changes at 1,000 writes/s.
pub(crate) const RECENT_CHANGES: usize = 16_384;

/// The last [`RECENT_CHANGES`] changes applied, in order.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    changes: Mutex<VecDeque<Arc<LiveChange>>>,
}

impl Recent {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<LiveChange>>> {
        // Nothing panics while holding it; the queue is whole either way.
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `changes`, applied in this order after every change held,
    /// dropping the oldest beyond [`RECENT_CHANGES`].
    pub(crate) fn hold(&self, changes: &[Arc<LiveChange>]) {
        let mut held = self.lock();
        let kept = &changes[changes.len().saturating_sub(RECENT_CHANGES)..];
        let excess = (held.len() + kept.len()).saturating_sub(RECENT_CHANGES).min(held.len());
        held.drain(..excess);
        held.extend(kept.iter().cloned());
    }

    /// Up to `max` changes after `delivered`, in order: empty when
    /// `delivered` is the last one applied; `None` when the next one is
    /// not held (older than what is held, or nothing held yet), so it must
    /// be read from the log.
    pub(crate) fn after(&self, delivered: Position, max: usize) -> Option<Vec<Arc<LiveChange>>> {
        let held = self.lock();
        let first = held.front()?.event.position;
        if first > delivered.next() {
            return None;
        }
        let from = held.partition_point(|change| change.event.position <= delivered);
        Some(held.range(from..).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::retraction_at as change;

    fn positions(changes: Option<Vec<Arc<LiveChange>>>) -> Option<Vec<u64>> {
        changes.map(|c| c.iter().map(|change| change.event.position.0).collect())
    }

    #[test]
    fn nothing_held_sends_readers_to_the_log() {
        assert_eq!(positions(Recent::default().after(Position(0), 10)), None);
    }

    #[test]
    fn changes_after_a_held_position_come_in_order_and_at_most_as_many_as_asked() {
        let recent = Recent::default();
        recent.hold(&(1..=5).map(change).collect::<Vec<_>>());
        recent.hold(&[change(6)]);
        assert_eq!(positions(recent.after(Position(0), 10)), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(positions(recent.after(Position(2), 2)), Some(vec![3, 4]));
        assert_eq!(positions(recent.after(Position(6), 10)), Some(vec![]), "at the head");
        assert_eq!(positions(recent.after(Position(9), 10)), Some(vec![]), "ahead of it");
    }

    #[test]
    fn only_the_last_changes_are_held_and_older_ones_are_read_from_the_log() {
        let recent = Recent::default();
        let total = RECENT_CHANGES as u64 + 100;
        for chunk in (1..=total).collect::<Vec<_>>().chunks(1000) {
            recent.hold(&chunk.iter().copied().map(change).collect::<Vec<_>>());
        }
        let first_held = total - RECENT_CHANGES as u64 + 1;
        assert_eq!(recent.lock().len(), RECENT_CHANGES);
        assert_eq!(positions(recent.after(Position(first_held - 2), 1)), None);
        assert_eq!(
            positions(recent.after(Position(first_held - 1), 1)),
            Some(vec![first_held])
        );
        // One batch larger than what is held keeps its newest.
        recent.hold(
            &(total + 1..=total + RECENT_CHANGES as u64 + 5)
                .map(change)
                .collect::<Vec<_>>(),
        );
        assert_eq!(recent.lock().len(), RECENT_CHANGES);
        assert_eq!(
            recent.lock().back().map(|c| c.event.position),
            Some(Position(total + RECENT_CHANGES as u64 + 5))
        );
    }
}
