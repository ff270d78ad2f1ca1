//! The query side's state: the view, what it broadcasts as it applies the
//! log, and how fresh it is. Followers feed it ([`crate::follow_local`],
//! [`crate::replica`]); every call reads it.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicI64, Ordering},
};

use tokio::sync::{broadcast, watch};
use truce_domain::{Position, Timestamp, event::RecordedEvent, incident::IncidentSummary};
use truce_log::{Incarnation, LogEntry, LogError, LogReader, ReadAhead};
use truce_proto::convert::event_from_wire;

use crate::{
    fanout::Fanout,
    live::{LIVE_BUFFER, LiveChange, LiveChanges},
    recent::Recent,
    view::View,
};

/// How fresh the view is.
#[derive(Debug)]
enum Freshness {
    /// Reading the log in this process: never stale.
    Local,
    /// Following a remote log: when it was last heard from (Unix nanos).
    Remote(AtomicI64),
}

/// The query side's state, shared by the follower and every call.
#[derive(Debug)]
pub struct QueryState {
    /// Incidents and reports as of some position.
    pub(crate) view: RwLock<View>,
    /// Each applied event, for the live dispatchers.
    pub live: LiveChanges,
    /// Live subscribers, attached to the dispatchers.
    pub(crate) fanout: Fanout,
    /// The last changes applied, for subscribers that fell behind.
    pub(crate) recent: Recent,
    /// The log, for history.
    pub(crate) history: LogReader,
    /// The position of the last applied event.
    pub(crate) applied: watch::Sender<Position>,
    freshness: Freshness,
}

impl QueryState {
    /// An empty view over `history`; `remote` when the log is followed
    /// from elsewhere, and so can go stale.
    pub(crate) fn new(history: LogReader, remote: bool) -> Arc<QueryState> {
        let live = broadcast::channel(LIVE_BUFFER).0;
        Arc::new(QueryState {
            view: RwLock::new(View::default()),
            fanout: Fanout::start(&live, history.incarnation()),
            recent: Recent::default(),
            live,
            history,
            applied: watch::channel(Position::ZERO).0,
            freshness: if remote {
                Freshness::Remote(AtomicI64::new(now().0))
            } else {
                Freshness::Local
            },
        })
    }

    /// Which log the view follows.
    pub(crate) fn incarnation(&self) -> &Incarnation {
        self.history.incarnation()
    }

    /// Reads the view. Poisoning is not possible in practice (the writer
    /// does not panic while holding it), and a poisoned view is still whole
    /// since each event is applied before the lock is released.
    pub fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// When the log was last heard from: now, for a log in this process.
    pub(crate) fn log_heard_at(&self) -> Timestamp {
        match &self.freshness {
            Freshness::Local => now(),
            Freshness::Remote(at) => Timestamp(at.load(Ordering::Relaxed)),
        }
    }

    /// Notes that the remote log answered, so the view is still fresh.
    pub(crate) fn heard_from_log(&self) {
        if let Freshness::Remote(at) = &self.freshness {
            at.store(now().0, Ordering::Relaxed);
        }
    }

    /// Applies decoded events in order, then tells live subscribers.
    pub(crate) fn apply(&self, events: Vec<RecordedEvent>) {
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        let changes: Vec<Arc<LiveChange>> = {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            events
                .into_iter()
                .map(|event| {
                    let before = view.apply(&event);
                    Arc::new(LiveChange::new(event, before))
                })
                .collect()
        };
        // Held before they are handed out, so a subscriber that finds a
        // change already dispatched finds it held.
        self.recent.hold(&changes);
        for change in changes {
            // No receivers is fine: nobody is subscribed.
            let _ = self.live.send(change);
        }
        self.applied.send_replace(last);
    }

    /// Replays the history from the view's position through `last`. The
    /// next page is read and decoded on another task while one is applied.
    pub(crate) async fn catch_up_to(&self, last: Position) -> Result<(), LogError> {
        let from = self.read_view().position().next();
        let mut pages = ReadAhead::new(self.history.clone(), from.0, last.0, (4096, usize::MAX), |entries| {
            decode(&entries)
        });
        loop {
            let events = pages.next_page().await?;
            if events.is_empty() {
                return Ok(());
            }
            self.apply(events);
        }
    }

    /// The event at `position` of the log.
    pub(crate) async fn event_at(&self, position: Position) -> Result<RecordedEvent, LogError> {
        let entries = self.history.read(position.0, 1).await?;
        match entries.first() {
            Some(entry) if entry.position == position.0 => Ok(decode(std::slice::from_ref(entry))?.remove(0)),
            _ => Err(LogError::Corrupt {
                position: position.0,
                what: "an event the view refers to is missing from the log".into(),
            }),
        }
    }

    /// `summary` as it stood at `position`: walks back through the
    /// incident's earlier events in the log while they are later than
    /// `position`. `None` when the incident did not exist yet. Costs one
    /// log read per change since `position`, and no memory in between.
    pub(crate) async fn as_of(
        &self,
        summary: Arc<IncidentSummary>,
        position: Position,
    ) -> Result<Option<Arc<IncidentSummary>>, LogError> {
        let mut current = summary;
        while current.updated_position > position {
            let event = self.event_at(current.updated_position).await?;
            match event.previous_position() {
                None => return Ok(None),
                Some(previous) => current = Arc::new(self.event_at(previous).await?.incident().clone()),
            }
        }
        Ok(Some(current))
    }

    /// The last position recorded before `time` (0 if none): a binary
    /// search over the log by recording time.
    pub(crate) async fn position_before(&self, time: Timestamp) -> Result<Position, LogError> {
        let (mut low, mut high) = (0u64, self.history.head().position);
        // Invariant: everything at or before `low` was recorded before
        // `time`; everything after `high` at or after it.
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if self.event_at(Position(middle)).await?.recorded_at < time {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Ok(Position(low))
    }
}

fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

/// Decodes log entries into events; an entry that does not decode is
/// corruption.
pub(crate) fn decode(entries: &[LogEntry]) -> Result<Vec<RecordedEvent>, LogError> {
    entries
        .iter()
        .map(|e| {
            event_from_wire(e.position, &e.payload).map_err(|what| LogError::Corrupt {
                position: e.position,
                what,
            })
        })
        .collect()
}
