//! A durable batch on its way from the writer to an in-process follower.

/// A durable batch's entries (`T`, in whatever form the follower applies),
/// with what the writer does once the follower has applied them: answer
/// their submitters, so that an acknowledged write is already in the
/// follower's view and on its way to subscribers. The hook runs when the
/// batch is dropped, applied or not, so a follower that stops or falls
/// behind never holds answers back.
pub struct Committed<T> {
    entries: T,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl<T: Default> Committed<T> {
    /// `entries`, and `then` to run once they are applied.
    pub fn new(entries: T, then: impl FnOnce() + Send + 'static) -> Committed<T> {
        Committed {
            entries,
            then: Some(Box::new(then)),
        }
    }

    /// Takes the entries out to apply them; dropping the batch afterwards
    /// runs the hook.
    pub fn take(&mut self) -> T {
        std::mem::take(&mut self.entries)
    }
}

impl<T> Drop for Committed<T> {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            then();
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Committed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committed")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[test]
    fn the_hook_runs_once_the_batch_is_dropped_and_not_before() {
        let ran = Arc::new(AtomicBool::new(false));
        let mut batch = Committed::new(vec![1, 2, 3], {
            let ran = Arc::clone(&ran);
            move || ran.store(true, Ordering::SeqCst)
        });
        assert_eq!(batch.take(), vec![1, 2, 3]);
        assert!(!ran.load(Ordering::SeqCst));
        drop(batch);
        assert!(ran.load(Ordering::SeqCst));
    }
}
