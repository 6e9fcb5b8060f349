//! At-least-once: commit what every sink has acknowledged.

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::offsets::OffsetTracker;
use crate::source::{self, SourceConsumer};

use super::super::worker::WorkerContext;

/// Commits acknowledged positions: those that advanced (`Async`, periodic), or all of them
/// (`Sync`, the last commit, in case an earlier asynchronous one failed).
pub(crate) fn commit(
    tracker: &OffsetTracker,
    consumer: &SourceConsumer,
    ctx: &WorkerContext,
    mode: CommitMode,
) {
    ctx.metrics.producer_queue.set(ctx.sink.in_flight() as f64);
    let collected = tracker.collect(matches!(mode, CommitMode::Sync));
    if let Some(failure) = collected.failure {
        ctx.fail(failure);
    }
    for (tp, first, refusals) in collected.refused {
        if ctx.dead_letter_topic.is_none() {
            ctx.fail(format!(
                "{}: the sink refused output(s) of record(s) {}[{}]@{} and the pipeline has no \
                 dead_letter_topic, so it stops rather than drop them; nothing from offset \
                 {first} on is committed. Set dead_letter_topic or fix the plugin, then restart",
                refusals[0].message,
                tp.0,
                tp.1,
                refusals
                    .iter()
                    .map(|r| r.offset.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            continue;
        }
        tracing::warn!(pipeline = %ctx.pipeline, topic = %tp.0, partition = tp.1, "{} record(s) refused by the sink ({}); the partition is read again from offset {first} with those inputs dead-lettered (outputs after it may repeat: at-least-once)", refusals.len(), refusals[0].message);
        ctx.remember_refused(&tp, refusals);
        let _ = ctx.control.send(source::Control::Rewind(tp, first));
    }
    // Exactly-once into Kafka: the transactions committed these positions already.
    if collected.positions.is_empty() || ctx.transactions.is_some() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &collected.positions {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => ctx.metrics.commits.increment(1),
        Err(e) => {
            for (tp, _) in &collected.positions {
                tracker.commit_failed(tp);
            }
            tracing::warn!(pipeline = %ctx.pipeline, "offset commit failed (retried with the next commit): {e}")
        }
    }
}
