//! Building the view at start: the log from the view's position to its
//! head, in pages read and decoded only as far as the view needs
//! ([`ViewEvent::from_stored`]: the incident summary, and each report's
//! id), several pages at once on the runtime's threads while the one
//! before them is applied, and indexed once at the end. Nothing is
//! broadcast, and nobody reads the view meanwhile: nobody can call before
//! the service serves.

use std::collections::VecDeque;

use tokio::task::JoinHandle;
use truce_log::{LogEntry, LogError, LogReader, Position};

use crate::{state::QueryState, view::Building, view_event::ViewEvent};

/// Entries read and decoded per page.
const PAGE: u64 = 4096;

/// Pages read and decoded ahead of the one being applied: enough to keep
/// every core busy decoding while one applies.
const AHEAD: usize = 3;

impl QueryState {
    /// Folds the log from the view's position to the log's head into the
    /// view. The view is taken out while it is built, and indexed once
    /// at the end.
    pub(crate) async fn build_view(&self) -> Result<(), LogError> {
        let taken = std::mem::take(&mut *self.view.write().unwrap_or_else(|p| p.into_inner()));
        let mut building = Building::new(taken);
        let mut pages = pages(building.position().next().0, self.history.head().position);
        let mut pending: VecDeque<JoinHandle<Result<Vec<ViewEvent>, LogError>>> = VecDeque::new();
        loop {
            while pending.len() <= AHEAD {
                let Some(page) = pages.next() else { break };
                pending.push_back(tokio::spawn(read_page(self.history.clone(), page)));
            }
            let Some(task) = pending.pop_front() else { break };
            for event in task.await.map_err(join_error)?? {
                building.apply(event);
            }
        }
        let view = tokio::task::spawn_blocking(move || building.finish())
            .await
            .map_err(join_error)?;
        let position = view.position();
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
        self.applied.send_replace(position);
        Ok(())
    }
}

fn join_error(error: tokio::task::JoinError) -> LogError {
    LogError::Io(std::io::Error::other(error))
}

/// Positions `first` through `last` of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    first: Position,
    last: Position,
}

/// The pages from `from` through `head`, in order.
fn pages(from: Position, head: Position) -> impl Iterator<Item = Page> {
    (from..=head).step_by(PAGE as usize).map(move |first| Page {
        first,
        last: head.min(first + PAGE - 1),
    })
}

/// Reads every entry of `page` and decodes it for the view.
async fn read_page(reader: LogReader, page: Page) -> Result<Vec<ViewEvent>, LogError> {
    let wanted = page.last - page.first + 1;
    let entries = reader.read(page.first, wanted as usize).await?;
    if entries.len() as u64 != wanted {
        return Err(LogError::Corrupt {
            position: page.first + entries.len() as u64,
            what: "missing from the log below its head".into(),
        });
    }
    entries
        .into_iter()
        .map(|LogEntry { position, payload, .. }| {
            ViewEvent::from_stored(position, payload).map_err(|what| LogError::Corrupt { position, what })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_position_once_in_order() {
        let all: Vec<Page> = pages(1, 2 * PAGE + 5).collect();
        assert_eq!(
            all,
            vec![
                Page { first: 1, last: PAGE },
                Page {
                    first: PAGE + 1,
                    last: 2 * PAGE
                },
                Page {
                    first: 2 * PAGE + 1,
                    last: 2 * PAGE + 5
                },
            ]
        );
        assert_eq!(pages(7, 7).collect::<Vec<_>>(), vec![Page { first: 7, last: 7 }]);
        assert!(pages(8, 7).next().is_none(), "nothing past the head");
    }
}
