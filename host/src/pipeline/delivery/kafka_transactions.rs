//! Exactly-once into Kafka: one transaction per batch.

use std::sync::Arc;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::offsets::{OffsetTracker, TopicPartition};
use crate::sinks::SinkWriter;
use crate::sinks::{KafkaSink, TxnError};
use crate::source::{self, Batch, SourceConsumer};

use super::super::batch::process_batch;
use super::super::worker::WorkerContext;
use super::super::*;

/// What the workers of an exactly-once Kafka pipeline share to commit their transactions.
pub(crate) struct Transactions {
    /// Held (shared) from a batch's ownership check to its transaction's end; a revoke takes it
    /// exclusively.
    pub(crate) gate: Arc<std::sync::RwLock<()>>,
    /// The pipeline's consumer, for the group metadata that fences zombie transactions.
    pub(crate) consumer: Arc<SourceConsumer>,
    pub(crate) tracker: Arc<OffsetTracker>,
    /// Rewinds a partition after an aborted transaction.
    pub(crate) control: mpsc::UnboundedSender<source::Control>,
    /// To replace a fenced producer.
    pub(crate) kafka: crate::config::KafkaConfig,
    pub(crate) aborted: metrics::Counter,
}

/// How a batch's transaction ended.
pub(crate) enum TxnOutcome {
    Committed,
    /// Aborted; the partition is read again from the batch.
    Aborted,
    /// Aborted, and the producer is unusable: fenced by a newer one with its transactional id
    /// (the broker timed the transaction out, or another process has the same instance id), or
    /// stuck in a call.
    Fenced(String),
}

/// Exactly-once into Kafka: the batch's outputs, dead letters and next offset commit in one
/// transaction. When it aborts, the partition is read again from the batch's first record (its
/// last committed position).
pub(crate) fn process_in_transaction(
    ctx: &WorkerContext,
    txn: &Transactions,
    worker: &mut Worker,
    writers: &mut [Box<dyn SinkWriter>],
    sink: &Arc<KafkaSink>,
    batch: &mut Batch,
) -> Result<TxnOutcome> {
    let tp: TopicPartition = (batch.topic.clone(), batch.partition);
    let _owning = txn.gate.read().expect("transactions lock");
    if txn.tracker.generation(&tp) != Some(batch.generation) {
        // Revoked or rewound since it was read: whoever owns the partition reads it again.
        tracing::debug!(pipeline = %ctx.pipeline, topic = %tp.0, partition = tp.1, offset = batch.input.record(0).offset, "batch read before a revoke or rewind dropped");
        return Ok(TxnOutcome::Committed);
    }
    let first = batch.input.record(0).offset;
    // Stops taking this partition's batches (those read after this one must not commit past
    // it) and has the source read it again from `first`.
    let rewind = |tp: TopicPartition| {
        txn.tracker.revoke(&tp);
        let _ = txn.control.send(source::Control::Rewind(tp, first));
    };
    if let Err(e) = sink.begin() {
        return match e {
            TxnError::Abortable(e) => Err(e).context("beginning a transaction"),
            fatal => {
                rewind(tp);
                Ok(TxnOutcome::Fenced(fatal.to_string()))
            }
        };
    }
    if let Err(e) = process_batch(ctx, worker, writers, sink, batch) {
        let _ = sink.abort();
        return Err(e);
    }
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&tp.0, tp.1, Offset::Offset(batch.ticket.next_offset()))?;
    let group = txn
        .consumer
        .group_metadata()
        .context("the consumer has no group metadata to commit offsets with")?;
    // rdkafka's commit_transaction flushes first, and while the producer's own thread serves
    // the delivery reports that flush sleeps in 100 ms polls: wait for them here instead.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while batch.ticket.outstanding() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    let aborted = match sink.commit(offsets, group) {
        Ok(()) => {
            ctx.metrics.commits.increment(1);
            tracing::debug!(pipeline = %ctx.pipeline, topic = %tp.0, partition = tp.1, from = first, next = batch.ticket.next_offset(), "transaction committed");
            return Ok(TxnOutcome::Committed);
        }
        Err(e @ (TxnError::Fatal(_) | TxnError::Hung(_))) => {
            rewind(tp);
            txn.aborted.increment(1);
            return Ok(TxnOutcome::Fenced(e.to_string()));
        }
        Err(TxnError::Abortable(e)) => e,
    };
    rewind(tp.clone());
    let permanent = batch.ticket.failed_permanently();
    txn.aborted.increment(1);
    if let Err(e @ (TxnError::Fatal(_) | TxnError::Hung(_))) = sink.abort() {
        return Ok(TxnOutcome::Fenced(e.to_string()));
    }
    let refusals = batch.ticket.refusals();
    if !refusals.is_empty() && ctx.dead_letter_topic.is_some() {
        // The broker refused some records for what they are: read the batch again (rewound
        // above) and dead-letter those inputs instead.
        tracing::warn!(pipeline = %ctx.pipeline, topic = %tp.0, partition = tp.1, offset = first, "transaction aborted: {} record(s) refused by the broker ({}); the batch is processed again with their inputs dead-lettered", refusals.len(), batch.ticket.failure().unwrap_or_default());
        ctx.remember_refused(&tp, refusals);
        return Ok(TxnOutcome::Aborted);
    }
    if permanent {
        // Not a passing fault: the same records would fail the same way again.
        bail!(
            "{}; the transaction with records {}[{}] from offset {first} is aborted and \
             nothing from there on is committed",
            batch.ticket.failure().unwrap_or_default(),
            tp.0,
            tp.1
        );
    }
    tracing::warn!(pipeline = %ctx.pipeline, topic = %tp.0, partition = tp.1, offset = first, "transaction aborted ({aborted}); the partition is read again from its last commit");
    Ok(TxnOutcome::Aborted)
}
