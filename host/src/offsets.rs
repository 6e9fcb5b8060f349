//! At-least-once offset tracking: per partition, the position to commit is the end of the longest
//! prefix of dispatched batches whose every output and dead-letter record has been acknowledged.
//!
//! The source registers a [`Ticket`] per batch, in offset order. The worker and the producer's
//! delivery callbacks count the ticket down; [`OffsetTracker::collect`] pops finished tickets from
//! the front of each partition and reports the positions that advanced. A failed delivery stops
//! the prefix for good: that pipeline is then stopped, and nothing at or after that batch is ever
//! committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A topic partition.
pub type TopicPartition = (Arc<str>, i32);

/// Offsets kept outside Kafka, in the same transaction as a sink's writes (exactly-once). The
/// source skips the records below the stored offset of each partition it is assigned.
#[async_trait::async_trait]
pub trait OffsetStore: Send + Sync {
    /// The offset after the last record written for `tp`, if any was.
    async fn load(&self, tp: &TopicPartition) -> anyhow::Result<Option<i64>>;
}

/// The acknowledgement state of one batch.
#[derive(Debug)]
pub struct Ticket {
    next_offset: i64,
    pending: AtomicUsize,
    failed: OnceLock<String>,
    /// A failure that would happen again on a retry (a missing topic, a record too large).
    permanent: std::sync::atomic::AtomicBool,
    /// When the batch was read, to tell a stalled partition.
    created: std::time::Instant,
    /// The offset of the batch's first record (where to read again after a refusal).
    first_offset: i64,
    /// Records of the batch that a sink refused for what they are (too large, invalid).
    refused: Mutex<Vec<Refusal>>,
    /// A failure other than a refusal (a broker down, a missing topic): the batch cannot be
    /// mended by dead-lettering records.
    other_failure: std::sync::atomic::AtomicBool,
}

/// A sink refused an output of the input record at `offset`, for what the record is: the input
/// can go to the dead-letter topic with `reason` when the batch is processed again.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The input record's offset in its partition.
    pub offset: i64,
    /// `sink:too-large`, `sink:invalid-record`.
    pub reason: crate::failure::Reason,
    /// What the sink said.
    pub message: String,
}

impl Ticket {
    fn new(first_offset: i64, next_offset: i64) -> Self {
        Ticket {
            first_offset,
            refused: Mutex::new(Vec::new()),
            other_failure: std::sync::atomic::AtomicBool::new(false),
            next_offset,
            // One for the worker: the batch is not done before it has sent everything.
            pending: AtomicUsize::new(1),
            failed: OnceLock::new(),
            permanent: std::sync::atomic::AtomicBool::new(false),
            created: std::time::Instant::now(),
        }
    }

    /// A ticket not tracked by any partition (for `sluice test` and benches).
    pub fn untracked() -> Arc<Ticket> {
        Arc::new(Ticket::new(0, 0))
    }

    /// One more record to wait for.
    pub fn add(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// One record acknowledged (or the worker finished sending).
    pub fn done(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// One record could not be delivered; the batch will never be committed.
    pub fn fail(&self, reason: String) {
        self.other_failure.store(true, Ordering::Release);
        let _ = self.failed.set(reason);
        self.done();
    }

    /// A sink refused one output of input `refusal.offset` for what it is; the batch will not be
    /// committed as it is, but can be processed again with that input dead-lettered.
    pub fn refuse(&self, refusal: Refusal) {
        self.permanent.store(true, Ordering::Release);
        let _ = self.failed.set(refusal.message.clone());
        self.refused.lock().expect("refusals lock").push(refusal);
        self.done();
    }

    /// The refusals, when they are the batch's only failures (else empty).
    pub fn refusals(&self) -> Vec<Refusal> {
        if self.other_failure.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.refused.lock().expect("refusals lock").clone()
    }

    /// Like [`Ticket::fail`], for a failure a retry would meet again.
    pub fn fail_permanently(&self, reason: String) {
        self.permanent.store(true, Ordering::Release);
        self.fail(reason);
    }

    /// True when a record failed in a way a retry would meet again.
    pub fn failed_permanently(&self) -> bool {
        self.permanent.load(Ordering::Acquire)
    }

    /// Records still to be acknowledged, plus one until the worker is done with the batch.
    pub fn outstanding(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// True when every record is acknowledged.
    pub fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Why a record of the batch could not be delivered, if one could not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
}

#[derive(Default)]
struct PartitionState {
    generation: u64,
    tickets: VecDeque<Arc<Ticket>>,
    acked: Option<i64>,
    committed: Option<i64>,
}

/// Offsets of one pipeline's assigned partitions.
#[derive(Default)]
pub struct OffsetTracker {
    partitions: Mutex<HashMap<TopicPartition, PartitionState>>,
    generations: std::sync::atomic::AtomicU64,
    assignments: std::sync::atomic::AtomicU64,
    /// Records behind the partition ends, summed over the assignment (librdkafka statistics).
    lag: std::sync::atomic::AtomicI64,
    /// Bumped by every assign and revoke, so the source can tell cheaply when to re-check the
    /// generations of the batches it is filling.
    rebalances: std::sync::atomic::AtomicU64,
}

/// What [`OffsetTracker::collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Partitions whose acknowledged position advanced since the last collect.
    pub positions: Vec<(TopicPartition, i64)>,
    /// A delivery failure that blocks a partition.
    pub failure: Option<String>,
    /// Partitions whose oldest unfinished batch had records refused by a sink, with the offset
    /// to read again from and the refusals. The partition takes no batch until it is tracked
    /// afresh (after the seek back).
    pub refused: Vec<(TopicPartition, i64, Vec<Refusal>)>,
}

impl OffsetTracker {
    /// Starts tracking a newly assigned partition and returns its generation.
    pub fn assign(&self, tp: TopicPartition) -> u64 {
        self.rebalances.fetch_add(1, Ordering::AcqRel);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let mut parts = self.partitions.lock().expect("offsets lock");
        parts.insert(
            tp,
            PartitionState {
                generation,
                ..Default::default()
            },
        );
        generation
    }

    /// Sets the consumer lag summed over the assigned partitions.
    pub fn set_lag(&self, lag: i64) {
        self.lag.store(lag, Ordering::Relaxed);
    }

    /// The consumer lag summed over the assigned partitions, as last reported.
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Changes whenever a partition is assigned or revoked.
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }

    /// Forgets that `tp`'s position was committed (the commit failed), so the next collect
    /// sends it again.
    pub fn commit_failed(&self, tp: &TopicPartition) {
        let mut parts = self.partitions.lock().expect("offsets lock");
        if let Some(state) = parts.get_mut(tp) {
            state.committed = None;
        }
    }

    /// Notes that the group gave this member an assignment (possibly empty).
    pub fn note_assignment(&self) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
    }

    /// True once the group has given this member an assignment.
    pub fn has_assignment(&self) -> bool {
        self.assignments.load(Ordering::Relaxed) > 0
    }

    /// The partitions currently assigned.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let parts = self.partitions.lock().expect("offsets lock");
        let mut v: Vec<_> = parts.keys().cloned().collect();
        v.sort();
        v
    }

    /// Every tracked partition with its generation.
    pub fn generations(&self) -> HashMap<TopicPartition, u64> {
        let parts = self.partitions.lock().expect("offsets lock");
        parts
            .iter()
            .map(|(tp, p)| (tp.clone(), p.generation))
            .collect()
    }

    /// The generation of an assigned partition (to tag records as they are buffered).
    pub fn generation(&self, tp: &TopicPartition) -> Option<u64> {
        let parts = self.partitions.lock().expect("offsets lock");
        parts.get(tp).map(|p| p.generation)
    }

    /// Stops tracking a revoked partition; returns the acknowledged position not yet committed,
    /// which the caller commits before the partition moves on.
    pub fn revoke(&self, tp: &TopicPartition) -> Option<i64> {
        self.rebalances.fetch_add(1, Ordering::AcqRel);
        let mut parts = self.partitions.lock().expect("offsets lock");
        let mut state = parts.remove(tp)?;
        advance(&mut state);
        // Even if it looks committed: an asynchronous commit of it may still fail.
        state.acked
    }

    /// Registers a batch ending before `next_offset`, buffered under `generation`. `None` when
    /// the partition was revoked (or revoked and assigned again) since: the batch is dropped and
    /// the new owner processes it.
    pub fn register(
        &self,
        tp: &TopicPartition,
        generation: u64,
        first_offset: i64,
        next_offset: i64,
    ) -> Option<Arc<Ticket>> {
        let mut parts = self.partitions.lock().expect("offsets lock");
        let state = parts.get_mut(tp).filter(|s| s.generation == generation)?;
        let ticket = Arc::new(Ticket::new(first_offset, next_offset));
        state.tickets.push_back(ticket.clone());
        Some(ticket)
    }

    /// Partitions whose oldest batch is still unacknowledged after `longer_than`, with its age.
    pub fn unacknowledged_for(
        &self,
        longer_than: std::time::Duration,
    ) -> Vec<(TopicPartition, std::time::Duration)> {
        let parts = self.partitions.lock().expect("offsets lock");
        let mut late: Vec<_> = parts
            .iter()
            .filter_map(|(tp, state)| {
                let front = state.tickets.front()?;
                let age = front.created.elapsed();
                (!front.is_done() && age > longer_than).then(|| (tp.clone(), age))
            })
            .collect();
        late.sort();
        late
    }

    /// Pops finished batches and returns the positions to commit: those that advanced since the
    /// last collect, or with `all`, every acknowledged position (for the last commit).
    pub fn collect(&self, all: bool) -> Collected {
        let mut parts = self.partitions.lock().expect("offsets lock");
        let mut collected = Collected::default();
        for (tp, state) in parts.iter_mut() {
            if let Some(front) = state.tickets.front()
                && front.is_done()
                && front.failed.get().is_some()
            {
                let refusals = front.refusals();
                if !refusals.is_empty() {
                    collected
                        .refused
                        .push((tp.clone(), front.first_offset, refusals));
                    // Nothing of this generation may register or commit any more: the
                    // partition is read again from the refused batch under a new one.
                    state.tickets.clear();
                    state.generation = 0;
                    continue;
                }
            }
            if let Some(reason) = advance(state) {
                collected.failure.get_or_insert(format!(
                    "{reason}; offsets of {}[{}] stay at {} so those records are processed again after a restart",
                    tp.0,
                    tp.1,
                    state.acked.map_or("the last commit".to_string(), |a| a.to_string())
                ));
            }
            if let Some(acked) = state.acked
                && (all || state.committed != Some(acked))
            {
                state.committed = Some(acked);
                collected.positions.push((tp.clone(), acked));
            }
        }
        collected
    }
}

/// Pops done tickets from the front; returns the failure of a failed front ticket.
fn advance(state: &mut PartitionState) -> Option<String> {
    while let Some(front) = state.tickets.front() {
        if !front.is_done() {
            return None;
        }
        if let Some(reason) = front.failed.get() {
            return Some(reason.clone());
        }
        state.acked = Some(front.next_offset);
        state.tickets.pop_front();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".into(), p)
    }

    #[test]
    fn commits_only_the_acknowledged_prefix() {
        let tracker = OffsetTracker::default();
        let g = tracker.assign(tp(0));
        let a = tracker.register(&tp(0), g, 0, 10).unwrap();
        let b = tracker.register(&tp(0), g, 10, 20).unwrap();
        b.done(); // the second batch finishes first
        assert!(tracker.collect(false).positions.is_empty());
        a.add();
        a.done(); // worker done, one output pending
        assert!(tracker.collect(false).positions.is_empty());
        a.done(); // output acknowledged
        assert_eq!(tracker.collect(false).positions, vec![(tp(0), 20)]);
        assert!(tracker.collect(false).positions.is_empty(), "reported once");
    }

    #[test]
    fn a_failed_delivery_blocks_the_partition() {
        let tracker = OffsetTracker::default();
        let g = tracker.assign(tp(1));
        let a = tracker.register(&tp(1), g, 0, 5).unwrap();
        let b = tracker.register(&tp(1), g, 0, 9).unwrap();
        a.add();
        a.done();
        a.fail("delivery to out failed".into());
        b.done();
        let c = tracker.collect(false);
        assert!(c.positions.is_empty());
        assert!(c.failure.unwrap().contains("delivery to out failed"));
    }

    #[test]
    fn a_failed_commit_is_sent_again_and_the_last_commit_sends_everything() {
        let tracker = OffsetTracker::default();
        let g = tracker.assign(tp(3));
        tracker.register(&tp(3), g, 0, 8).unwrap().done();
        assert_eq!(tracker.collect(false).positions, vec![(tp(3), 8)]);
        assert!(tracker.collect(false).positions.is_empty());
        assert_eq!(
            tracker.collect(true).positions,
            vec![(tp(3), 8)],
            "the last commit sends all"
        );
        tracker.commit_failed(&tp(3));
        assert_eq!(
            tracker.collect(false).positions,
            vec![(tp(3), 8)],
            "sent again after a failure"
        );
    }

    #[test]
    fn revoked_partitions_drop_stale_batches() {
        let tracker = OffsetTracker::default();
        let before = tracker.rebalances();
        let g1 = tracker.assign(tp(2));
        assert_ne!(tracker.rebalances(), before, "the source sees the change");
        let a = tracker.register(&tp(2), g1, 0, 3).unwrap();
        a.done();
        assert_eq!(tracker.revoke(&tp(2)), Some(3));
        assert!(tracker.register(&tp(2), g1, 0, 7).is_none(), "revoked");
        let g2 = tracker.assign(tp(2));
        assert!(
            tracker.register(&tp(2), g1, 0, 7).is_none(),
            "buffered before the revoke"
        );
        assert!(tracker.register(&tp(2), g2, 0, 7).is_some());
    }
}
