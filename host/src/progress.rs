//! What each worker thread is doing, so that a worker that cannot make progress is reported
//! (an error log naming the partition and the cause, and a failing `/readyz`) instead of
//! retrying silently for minutes.
//!
//! A worker marks the batch it starts and finishes ([`Progress::start`], [`Progress::finish`]).
//! Code that waits and retries on the worker's thread (a producer that cannot initialise its
//! transactions, a plugin that cannot start) says why with [`note`], without knowing which
//! worker it runs for: the worker registered its slot for the thread ([`Progress::enter`]).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::offsets::TopicPartition;

/// One worker's current batch, if any.
#[derive(Debug, Default)]
struct Slot {
    /// When the worker took its current batch.
    since: Option<Instant>,
    /// The batch's partition.
    partition: Option<TopicPartition>,
    /// The last reason it gave for waiting.
    cause: Option<String>,
}

/// The progress of one pipeline's workers.
#[derive(Debug, Default)]
pub struct Progress {
    slots: Mutex<Vec<Arc<Mutex<Slot>>>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Mutex<Slot>>>> = const { RefCell::new(None) };
}

/// Records why the current thread's worker waits (no-op on other threads).
pub fn note(cause: impl Into<String>) {
    CURRENT.with(|c| {
        if let Some(slot) = c.borrow().as_ref() {
            slot.lock().expect("progress lock").cause = Some(cause.into());
        }
    });
}

/// A worker that has held one batch for longer than the stall timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The worker's index.
    pub worker: usize,
    /// The partition of the batch it holds.
    pub partition: Option<TopicPartition>,
    /// How long it has held it.
    pub for_secs: u64,
    /// Why it waits, as last noted.
    pub cause: String,
}

impl Progress {
    /// Registers the calling thread as worker `index`; returns that index.
    pub fn enter(&self) -> usize {
        let slot = Arc::new(Mutex::new(Slot::default()));
        CURRENT.with(|c| *c.borrow_mut() = Some(slot.clone()));
        let mut slots = self.slots.lock().expect("progress lock");
        slots.push(slot);
        slots.len() - 1
    }

    /// The worker `index` takes a batch of `partition`.
    pub fn start(&self, index: usize, partition: TopicPartition) {
        let slots = self.slots.lock().expect("progress lock");
        let mut slot = slots[index].lock().expect("progress lock");
        slot.since = Some(Instant::now());
        slot.partition = Some(partition);
        slot.cause = None;
    }

    /// The worker `index` is done with its batch.
    pub fn finish(&self, index: usize) {
        let slots = self.slots.lock().expect("progress lock");
        let mut slot = slots[index].lock().expect("progress lock");
        slot.since = None;
        slot.cause = None;
    }

    /// Workers that have held a batch for longer than `timeout`.
    pub fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        let slots = self.slots.lock().expect("progress lock");
        slots
            .iter()
            .enumerate()
            .filter_map(|(worker, slot)| {
                let slot = slot.lock().expect("progress lock");
                let held = slot.since?.elapsed();
                (held > timeout).then(|| Stall {
                    worker,
                    partition: slot.partition.clone(),
                    for_secs: held.as_secs(),
                    cause: slot.cause.clone().unwrap_or_else(|| {
                        "the batch's plugin call or send has not returned".into()
                    }),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holding_a_batch_too_long_is_stalled_with_its_cause() {
        let progress = Progress::default();
        let w = progress.enter();
        progress.start(w, ("in".into(), 3));
        note("initialising transactions: broker refused");
        assert!(progress.stalled(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(20));
        let stalls = progress.stalled(Duration::from_millis(10));
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].partition, Some(("in".into(), 3)));
        assert_eq!(stalls[0].cause, "initialising transactions: broker refused");
        progress.finish(w);
        assert!(progress.stalled(Duration::from_millis(10)).is_empty());
    }
}
