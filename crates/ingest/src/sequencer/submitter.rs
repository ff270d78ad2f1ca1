//! The callers' side of the sequencer: a command goes in, its answer
//! comes back once durable, or UNAVAILABLE once the caller's bound is up.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use truce_domain::review::Review;
use truce_proto::ServiceError;

use super::{Accepted, Command, MAX_SHARED_BATCH, Outcome, Reviewed, Revised, Submission, answers};
use crate::release::{OutOfService, Reply};

/// Hands submissions to the sequencer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub(super) tx: mpsc::Sender<(Command, Reply)>,
    pub(super) out_of_service: OutOfService,
    /// How long a caller waits while writes do not get through, when the
    /// log bounds it.
    pub(super) bound: Option<AnswerBound>,
}

/// How long a caller waits on a log that bounds it.
#[derive(Debug, Clone)]
pub(super) struct AnswerBound {
    /// Past this with no batch completing, a caller is answered.
    pub(super) within: Duration,
    /// When the sequencer last completed a batch in time (see
    /// [`kept_up`]).
    pub(super) progress: watch::Receiver<Instant>,
}

impl AnswerBound {
    /// Returns once a caller that began waiting at `started` is owed an
    /// answer: it has waited `within`, and no batch completed in time over
    /// the last `within`.
    async fn overdue(&self, started: Instant) {
        loop {
            let due = answer_due(started, *self.progress.borrow(), self.within);
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// When a caller that began waiting at `started` is answered UNAVAILABLE,
/// the sequencer having last completed a batch in time at `progress`:
/// once it has waited `within` with no batch completing meanwhile. While
/// batches complete, callers wait their turn however busy the log.
pub(super) fn answer_due(started: Instant, progress: Instant, within: Duration) -> Instant {
    started.max(progress) + within
}

/// Whether a batch that stored `stored` entries in `took` counts as
/// progress for callers bound by `within`: completed within three quarters
/// of it, at a pace that would store a full batch ([`MAX_SHARED_BATCH`])
/// in that time too. A caller is then answered within 1.75 times the bound
/// (the batch ahead of its own, and the bound) whatever the log does, slow
/// or silent; only one queued behind more than a batch waits longer, and
/// only while the log keeps that pace: a busy log, not a failing one.
pub(super) fn kept_up(took: Duration, stored: usize, within: Duration) -> bool {
    let most = within * 3 / 4;
    took <= most && (stored == 0 || took * MAX_SHARED_BATCH as u32 <= most * stored as u32)
}

impl Submitter {
    /// Holds the reason once storage has failed and every write is
    /// refused until the process restarts.
    pub fn out_of_service(&self) -> watch::Receiver<Option<String>> {
        self.out_of_service.watch()
    }

    async fn send(&self, command: Command) -> Result<Outcome, ServiceError> {
        let advice = answers::retry_advice(&command);
        let exchange = async {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send((command, reply))
                .await
                .map_err(|_| ServiceError::Unavailable("the ingest service is shutting down".into()))?;
            answer
                .await
                .map_err(|_| ServiceError::Unavailable("the ingest service is shutting down".into()))?
        };
        let Some(bound) = &self.bound else {
            return exchange.await;
        };
        // A caller answered so stops waiting: the sequencer decides no
        // command whose caller is gone, but one already being appended
        // may still be recorded.
        let started = Instant::now();
        tokio::select! {
            answer = exchange => answer,
            () = bound.overdue(started) => Err(ServiceError::Unavailable(format!(
                "the write was not stored within {:?} (the log is failing or slow, or other ingest replicas \
                 keep appending first); it may or may not be recorded: {advice}",
                bound.within
            ))),
        }
    }

    /// Records `submission`, returning once it is durable.
    pub async fn submit(&self, submission: Submission) -> Result<Accepted, ServiceError> {
        match self.send(Command::Report(submission)).await? {
            Outcome::Accepted(accepted) => Ok(accepted),
            _ => Err(answers::internal("a report was answered as something else")),
        }
    }

    /// Records `review`, returning once it is durable.
    pub async fn review(&self, review: Review) -> Result<Reviewed, ServiceError> {
        match self.send(Command::Review(review)).await? {
            Outcome::Reviewed(reviewed) => Ok(*reviewed),
            _ => Err(answers::internal("a review was answered as something else")),
        }
    }

    /// Records an amendment or a retraction, returning once it is durable.
    pub async fn revise(&self, command: Command) -> Result<Revised, ServiceError> {
        match self.send(command).await? {
            Outcome::Revised(revised) => Ok(*revised),
            _ => Err(answers::internal("a revision was answered as something else")),
        }
    }
}
