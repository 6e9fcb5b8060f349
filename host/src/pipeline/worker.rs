//! Workers: each runs the batches of the partitions pinned to it through its chain (with the
//! previous version as a fallback while a new one is on probation) and hands them to delivery.

use std::sync::{Arc, Mutex};

use sluice_abi::InputBatch;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::{mpsc, watch};

use crate::chain::{Chain, ChainOutput, Failure};
use crate::offsets::{Ticket, TopicPartition};
use crate::progress::Progress;
use crate::reload::{self, ChainVersion, LiveChain, Verdict};
use crate::router::Router;
use crate::sinks::KafkaSink;
use crate::sinks::{Sink, SinkWriter};
use crate::source::{self, Batch};

use super::batch::{process_batch, process_idle_tick};
use super::delivery::kafka_transactions::{TxnOutcome, process_in_transaction};
use super::*;

/// Everything a worker needs, shared by the workers of one pipeline.
pub(crate) struct WorkerContext {
    pub(crate) pipeline: String,
    pub(crate) metrics: PipelineMetrics,
    pub(crate) router: Router,
    pub(crate) dead_letter_topic: Option<String>,
    pub(crate) sink: Arc<KafkaSink>,
    /// The pipeline's sinks; each worker has a writer of each.
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    /// Exactly-once into a sink that stores offsets: that sink's index in `sinks`.
    pub(crate) offsets_sink: Option<usize>,
    pub(crate) stats: Arc<PipelineStats>,
    pub(crate) failure: Mutex<Option<String>>,
    pub(crate) stop: watch::Sender<bool>,
    /// What the workers are doing, for the stall watch.
    pub(crate) progress: Arc<Progress>,
    /// Input records whose outputs a sink refused (by partition and offset): when their batch
    /// is processed again they go to the dead-letter topic.
    pub(crate) refused:
        Mutex<std::collections::HashMap<(TopicPartition, i64), crate::offsets::Refusal>>,
    /// Commands to the source (to read a partition again after a refusal).
    pub(crate) control: mpsc::UnboundedSender<source::Control>,
    /// Exactly-once into Kafka: what the workers' transactions need.
    pub(crate) transactions: Option<Transactions>,
    /// A stateful pipeline's stores.
    pub(crate) state: Option<Arc<crate::state::Stores>>,
}

impl WorkerContext {
    pub(crate) fn fail(&self, message: String) {
        let mut failure = self.failure.lock().expect("failure lock");
        if failure.is_none() {
            tracing::error!(pipeline = %self.pipeline, "{message}");
            *failure = Some(message);
        }
        let _ = self.stop.send(true);
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.lock().expect("failure lock").is_some()
    }

    /// Remembers inputs of `tp` whose outputs a sink refused, for when they are read again.
    pub(crate) fn remember_refused(
        &self,
        tp: &TopicPartition,
        refusals: Vec<crate::offsets::Refusal>,
    ) {
        let mut refused = self.refused.lock().expect("refused lock");
        for r in refusals {
            refused.insert((tp.clone(), r.offset), r);
        }
    }

    /// Failures for the inputs of `batch` whose outputs a sink refused before.
    pub(crate) fn refused_earlier(
        &self,
        batch: &Batch,
        last_plugin: &Arc<crate::runtime::Plugin>,
    ) -> Vec<Failure> {
        let mut refused = self.refused.lock().expect("refused lock");
        if refused.is_empty() {
            return Vec::new();
        }
        let tp: TopicPartition = (batch.topic.clone(), batch.partition);
        (0..batch.input.len())
            .filter_map(|i| {
                let r = refused.remove(&(tp.clone(), batch.input.record(i).offset))?;
                Some(Failure {
                    input: i as u32,
                    reason: r.reason,
                    message: format!("the sink refused an output of this record: {}", r.message),
                    plugin: Some(last_plugin.clone()),
                })
            })
            .collect()
    }

    /// True once the pipeline is stopping (signal or failure).
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sends every failed input to the dead-letter topic through `sink`, counted on `ticket`.
    pub(crate) fn dead_letter(
        &self,
        sink: &KafkaSink,
        input: &InputBatch,
        failures: &[Failure],
        ticket: &Arc<Ticket>,
        made_by: crate::sinks::dead_letter::InputHeaders,
    ) {
        let Some(dlq) = &self.dead_letter_topic else {
            return;
        };
        for failure in failures {
            let record = input.record(failure.input as usize);
            tracing::debug!(pipeline = %self.pipeline, topic = record.topic, partition = record.partition, offset = record.offset, reason = failure.reason.as_str(), "dead-lettering record: {}", failure.message);
            crate::sinks::dead_letter::write(
                sink,
                dlq,
                &self.pipeline,
                &record,
                failure,
                ticket,
                made_by,
            );
        }
    }
}

/// Refuses to go on when an input failed and the pipeline has no dead-letter topic.
pub(crate) fn require_dead_letter_topic(
    ctx: &WorkerContext,
    input: &InputBatch,
    failures: &[Failure],
) -> Result<()> {
    if let (Some(failure), None) = (failures.first(), &ctx.dead_letter_topic) {
        let record = input.record(failure.input as usize);
        bail!(
            "record {}[{}]@{} failed ({}: {}) and the pipeline has no dead_letter_topic, so it stops \
             rather than drop the record; nothing from this batch on is committed. Set \
             dead_letter_topic or fix the plugin, then restart",
            record.topic,
            record.partition,
            record.offset,
            failure.reason.as_str(),
            failure.message
        );
    }
    Ok(())
}

/// One worker's chain instances, following the pipeline's live version at batch boundaries.
pub(crate) struct Worker {
    pub(crate) live: Arc<LiveChain>,
    pub(crate) version: Arc<ChainVersion>,
    pub(crate) chain: Chain,
    /// The previous version's chain, while the live one is on probation.
    pub(crate) fallback: Option<Chain>,
    /// The state store of the batch's partition (stateful pipelines).
    pub(crate) partition: Option<Arc<crate::state::PartitionStore>>,
}

impl Worker {
    pub(crate) fn new(live: Arc<LiveChain>) -> Self {
        let version = live.current();
        Worker {
            chain: Chain::new(version.plugins.clone()),
            fallback: None,
            version,
            live,
            partition: None,
        }
    }

    /// Switches to the live version if it changed: called between batches only.
    pub(crate) fn refresh(&mut self) {
        if self.live.generation() == self.version.generation {
            return;
        }
        let version = self.live.current();
        self.chain.replace(version.plugins.clone());
        self.fallback = None;
        self.version = version;
    }

    /// Runs the batch through the chain and fails unroutable inputs. On probation the last
    /// version that passed runs on the batch too (a shadow), and a batch on which the new version
    /// fails or diverges on inputs that the previous version handles is served by the previous
    /// version. Returns the result and the label of the version that produced it.
    pub(crate) fn process(
        &mut self,
        router: &Router,
        input: &mut InputBatch,
        rejected: Vec<Failure>,
    ) -> Result<(ChainOutput, Arc<str>)> {
        self.chain.set_partition(self.partition.clone());
        let mut out = self.chain.process_without(input, rejected.clone())?;
        router.fail_unroutable(
            &mut out,
            self.chain.plugins().last().expect("a chain has plugins"),
        );
        self.live.state_failures(&out.state_failures);
        let (Some(previous), true) = (&self.version.previous, self.version.on_probation()) else {
            return Ok((out, self.version.label.clone()));
        };
        let fallback = self
            .fallback
            .get_or_insert_with(|| Chain::new(previous.plugins.clone()));
        fallback.set_partition(self.partition.clone());
        // The shadow starts from the same state: the changes of whichever version serves the
        // batch are kept, the other's dropped.
        let new_changes = self.partition.as_ref().map(|p| p.take_pending());
        let mut old = fallback.process_without(input, rejected)?;
        router.fail_unroutable(
            &mut old,
            fallback.plugins().last().expect("a chain has plugins"),
        );
        self.live.state_failures(&old.state_failures);
        let comparison = reload::Comparison::of(router, &out, &old, input.len());
        let mut label = self.version.label.clone();
        if comparison.regressions() > 0 {
            out = old;
            label = previous.label.clone();
        } else if let (Some(p), Some(changes)) = (&self.partition, new_changes) {
            p.put_pending(changes);
        }
        if self
            .live
            .report(&self.version, input.len() as u64, &comparison)
            == Verdict::Passed
        {
            self.fallback = None;
        }
        Ok((out, label))
    }
}

impl Worker {
    /// Hands timers fired for stateful plugin `k` to its `on-timer` (the live version only: a
    /// version on probation is not shadowed on timers).
    pub(crate) fn fire_timers(
        &mut self,
        router: &Router,
        k: usize,
        fired: &crate::runtime::FiredTimers,
        pseudo: &mut InputBatch,
    ) -> Result<ChainOutput> {
        self.chain.set_partition(self.partition.clone());
        let mut out = self.chain.process_timers(k, fired, pseudo)?;
        router.fail_unroutable(
            &mut out,
            self.chain.plugins().last().expect("a chain has plugins"),
        );
        Ok(out)
    }
}

/// A fenced producer is replaced, as Kafka Streams does, unless fencing repeats this often:
/// then another process most likely shares this one's instance id.
pub(crate) const MAX_FENCES: usize = 3;
pub(crate) const FENCE_WINDOW: Duration = Duration::from_secs(60);

/// Runs the batches of the partitions pinned to this worker through its chain, sending their
/// outputs through `sink` (its own transactional producer `transactional_id` when exactly-once).
pub(crate) fn worker_loop(
    ctx: &WorkerContext,
    mut worker: Worker,
    mut sink: Arc<KafkaSink>,
    transactional_id: &str,
    mut rx: mpsc::Receiver<Batch>,
) {
    let mut writers: Vec<Box<dyn SinkWriter>> = ctx.sinks.iter().map(|s| s.writer()).collect();
    let mut aborts = 0u32;
    let mut fences: Vec<std::time::Instant> = Vec::new();
    let me = ctx.progress.enter();
    while let Some(mut batch) = rx.blocking_recv() {
        if ctx.failed() {
            // Stopping: leave the batch unacknowledged so it is processed again after a restart.
            continue;
        }
        ctx.progress
            .start(me, (batch.topic.clone(), batch.partition));
        worker.refresh();
        if let Some(stores) = &ctx.state {
            // The partition's store, restored from the changelog before its first batch.
            let tp = (batch.topic.clone(), batch.partition);
            match stores.partition(&tp) {
                Ok(Some(store)) => worker.partition = Some(store),
                Ok(None) => {
                    // Revoked since it was read: the new owner processes it.
                    batch.ticket.done();
                    ctx.progress.finish(me);
                    continue;
                }
                Err(e) => {
                    ctx.fail(format!(
                        "restoring the state of {}[{}] from changelog `{}`: {e:#}",
                        tp.0, tp.1, stores.changelog
                    ));
                    ctx.progress.finish(me);
                    continue;
                }
            }
        }
        if batch.input.is_empty() {
            // An idle tick (at-least-once only): it holds no record and moves no offset.
            if ctx.transactions.is_none()
                && let Err(e) = retry_plugin_start(ctx, || {
                    process_idle_tick(ctx, &mut worker, &mut writers, &sink, &batch)
                })
            {
                ctx.fail(format!("{e:#}"));
            }
            if let Some(store) = worker.partition.take() {
                store.discard_pending();
            }
            ctx.progress.finish(me);
            continue;
        }
        let Some(txn) = &ctx.transactions else {
            let outcome = retry_plugin_start(ctx, || {
                process_batch(ctx, &mut worker, &mut writers, &sink, &mut batch)
            });
            match outcome {
                Ok(Some(())) => batch.ticket.done(),
                // Stopping: unacknowledged, so processed again after a restart.
                Ok(None) => {}
                Err(e) => ctx.fail(format!("{e:#}")),
            }
            if let Some(store) = worker.partition.take() {
                // Applied by the batch step when it went through; dropped otherwise.
                store.discard_pending();
            }
            ctx.progress.finish(me);
            continue;
        };
        let outcome = retry_plugin_start(ctx, || {
            process_in_transaction(ctx, txn, &mut worker, &mut writers, &sink, &mut batch)
        });
        batch.ticket.done();
        ctx.progress.finish(me);
        let outcome = outcome.map(|o| o.unwrap_or(TxnOutcome::Committed));
        if let Some(store) = worker.partition.take() {
            // The batch's state changes are the store's only once its transaction committed.
            if matches!(outcome, Ok(TxnOutcome::Committed)) {
                if let Err(e) = store.apply_pending() {
                    ctx.fail(format!(
                        "applying committed state changes of {}[{}]: {e:#}",
                        store.topic, store.partition
                    ));
                }
            } else {
                store.discard_pending();
            }
        }
        match outcome {
            Ok(TxnOutcome::Committed) => aborts = 0,
            Ok(TxnOutcome::Aborted) => {
                // Abort after abort (a broker down): back off before the next try.
                aborts += 1;
                std::thread::sleep(Duration::from_millis(50 << aborts.min(6)));
            }
            Ok(TxnOutcome::Fenced(why)) => {
                fences.retain(|at| at.elapsed() < FENCE_WINDOW);
                fences.push(std::time::Instant::now());
                if fences.len() >= MAX_FENCES {
                    ctx.fail(format!(
                        "the transactional producer `{transactional_id}` of pipeline `{}` was \
                         fenced {MAX_FENCES} times within {} s ({why}): most likely another \
                         process runs with the same runtime.instance_id (SLUICE_INSTANCE_ID); give \
                         every process its own. Nothing of the fenced transactions is committed",
                        ctx.pipeline,
                        FENCE_WINDOW.as_secs()
                    ));
                    continue;
                }
                tracing::warn!(pipeline = %ctx.pipeline, "transactional producer `{transactional_id}` fenced ({why}); replacing it");
                match KafkaSink::transactional(&txn.kafka, transactional_id, &|| ctx.stopping()) {
                    Ok(fresh) => sink = Arc::new(fresh),
                    Err(e) => ctx.fail(format!("{e:#}")),
                }
            }
            Err(e) => ctx.fail(format!("{e:#}")),
        }
    }
}

/// Runs `attempt` again while it fails because a plugin instance cannot start (its `init`
/// refuses its config or runs past its deadline, say while many workers start at once on few
/// cores). The batch waits with nothing of it sent or committed, the stall watch reports the
/// partition, and the host's other pipelines go on. `None` when the pipeline stops meanwhile.
pub(crate) fn retry_plugin_start<T>(
    ctx: &WorkerContext,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<Option<T>> {
    let mut backoff = crate::sinks::Backoff::default();
    loop {
        let error = match attempt() {
            Ok(done) => return Ok(Some(done)),
            Err(e) => e,
        };
        let Some(load) = error.downcast_ref::<crate::runtime::LoadError>() else {
            return Err(error);
        };
        if ctx.stopping() {
            tracing::warn!(pipeline = %ctx.pipeline, "stopping with a batch not processed (a plugin instance could not start: {load}); it is processed again after a restart");
            return Ok(None);
        }
        backoff.wait(&format!(
            "pipeline `{}`: a plugin instance cannot start, so its batch waits (nothing of it is \
             sent or committed): {load}",
            ctx.pipeline
        ));
    }
}
