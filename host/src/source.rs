//! The Kafka source: a consumer-group member that batches records per partition.
//!
//! Records are copied once, straight from librdkafka's buffers into the batch encoding the plugins
//! read. A batch is dispatched when it holds `batch.max_records` records or its first record has
//! waited `batch.linger_ms`; each partition always goes to the same worker, so order is kept.
//! Dispatch waits when the workers are busy, which stops fetching (back-pressure).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_abi::{Header, InputBatch};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{BatchConfig, KafkaConfig, PipelineConfig};
use crate::offsets::{OffsetStore, OffsetTracker, Ticket, TopicPartition};

/// A batch of records from one partition, in offset order.
pub struct Batch {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// The encoded records.
    pub input: InputBatch,
    /// Counts the batch's outputs down to its commit.
    pub ticket: Arc<Ticket>,
    /// The partition's generation when the batch was read: it is stale once the partition is
    /// revoked or rewound.
    pub generation: u64,
}

/// Keeps the offset tracker in step with the group's assignment.
pub struct SourceContext {
    pipeline: String,
    tracker: Arc<OffsetTracker>,
    /// Paused through the admin API: partitions assigned meanwhile start paused too.
    paused: Arc<AtomicBool>,
    /// Exactly-once into Kafka: held (shared) by every worker from its ownership check to its
    /// transaction's end, so a revoke waits for the transactions in flight.
    transactions: Option<Arc<RwLock<()>>>,
    /// A stateful pipeline's stores: closed on revoke, restored after an assignment.
    state: Option<Arc<crate::state::Stores>>,
}

/// Where a replay starts.
#[derive(Clone, Copy, Debug)]
pub enum ReplayFrom {
    /// This offset in every assigned partition: from the partition's first offset if it is below
    /// it (removed by retention), refused if it is past the partition's end.
    Offset(i64),
    /// The first record at or after this time (milliseconds since the epoch); refused if a
    /// partition has no record that late.
    Timestamp(i64),
}

/// Starts the message of a replay refused because its target lies outside what a partition
/// holds (the admin API answers it with `400`). Nothing is seeked then.
pub const REPLAY_OUT_OF_RANGE: &str = "replay target out of range: ";

/// A command to a running source, from the admin API.
pub enum Control {
    /// Stop or restart fetching the assigned partitions; positions and offsets are kept.
    Pause(bool, oneshot::Sender<Result<()>>),
    /// Seek every assigned partition; replies with the positions it seeked to.
    Replay(
        ReplayFrom,
        oneshot::Sender<Result<Vec<(TopicPartition, i64)>>>,
    ),
    /// An aborted transaction: read the partition again from this offset (its last committed
    /// position), dropping the batches read since.
    Rewind(TopicPartition, i64),
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut total = 0;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    total += p.consumer_lag;
                    metrics::gauge!("sluice_consumer_lag", "pipeline" => self.pipeline.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
        self.tracker.set_lag(total);
    }
}

impl SourceContext {
    /// Closes the state stores of revoked partitions (after their last transaction ended).
    fn close_stores(&self, tpl: &TopicPartitionList) {
        if let Some(state) = &self.state {
            for e in tpl.elements() {
                state.revoked(&(e.topic().into(), e.partition()));
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Commit what is acknowledged before the partitions move; records still in flight
            // are processed again by the new owner (at-least-once).
            let mut commit = TopicPartitionList::new();
            for e in tpl.elements() {
                let tp: TopicPartition = (e.topic().into(), e.partition());
                if let Some(offset) = self.tracker.revoke(&tp) {
                    let _ = commit.add_partition_offset(
                        e.topic(),
                        e.partition(),
                        Offset::Offset(offset),
                    );
                }
            }
            tracing::info!(pipeline = %self.pipeline, partitions = tpl.count(), "partitions revoked");
            if let Some(transactions) = &self.transactions {
                // The offsets are committed by the transactions. Wait for those in flight to
                // end: once revoked, no transaction of ours may commit for these partitions, and
                // workers see the revoke before starting another.
                drop(transactions.write().expect("transactions lock"));
                self.close_stores(tpl);
                return;
            }
            self.close_stores(tpl);
            if commit.count() > 0
                && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
            {
                tracing::warn!(pipeline = %self.pipeline, "commit on revoke failed (records will be processed again): {e}");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            for e in tpl.elements() {
                if let Some(state) = &self.state {
                    state.assigned(&(e.topic().into(), e.partition()));
                }
                self.tracker.assign((e.topic().into(), e.partition()));
            }
            if self.paused.load(Ordering::Acquire)
                && let Err(e) = consumer.pause(tpl)
            {
                tracing::warn!(pipeline = %self.pipeline, "could not pause newly assigned partitions: {e}");
            }
            self.tracker.note_assignment();
            tracing::info!(pipeline = %self.pipeline, partitions = tpl.count(), "partitions assigned");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            // Send these positions again with the next commit.
            for e in offsets.elements() {
                self.tracker
                    .commit_failed(&(e.topic().into(), e.partition()));
            }
            tracing::warn!(pipeline = %self.pipeline, "offset commit failed (will retry with the next commit): {e}");
        }
    }
}

/// The consumer of one pipeline.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// Creates the pipeline's consumer and subscribes to its inputs.
pub fn connect(
    kafka: &KafkaConfig,
    pipeline: &PipelineConfig,
    tracker: Arc<OffsetTracker>,
    paused: Arc<AtomicBool>,
    transactions: Option<Arc<RwLock<()>>>,
    state: Option<Arc<crate::state::Stores>>,
) -> Result<Arc<SourceConsumer>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", pipeline.group_id())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // Inputs may be another pipeline's transactional outputs: never read aborted records.
        .set("isolation.level", "read_committed")
        // Members joining or leaving move only the partitions that must move; the others keep
        // flowing through a rebalance.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Feeds the consumer-lag gauge.
        .set("statistics.interval.ms", "5000")
        // When its prefetch queue is full (queued.max.messages.kbytes, 64 MB: hit at once with
        // many partitions), librdkafka postpones a partition's next fetch by this much; its
        // default, 1 s, left the workers waiting for records most of the time (passthrough
        // 170k records/s against 420k+ with 10 ms; docs/benchmarks.md).
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in kafka.properties.iter().chain(&kafka.consumer) {
        config.set(k, v);
    }
    let context = SourceContext {
        pipeline: pipeline.name.clone(),
        tracker,
        paused,
        transactions,
        state,
    };
    let consumer: SourceConsumer = config.create_with_context(context).with_context(|| {
        format!(
            "creating the Kafka consumer of pipeline `{}`",
            pipeline.name
        )
    })?;
    let topics: Vec<&str> = pipeline.inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing pipeline `{}` to {topics:?}", pipeline.name))?;
    Ok(Arc::new(consumer))
}

/// A records-per-second budget shared by the pipelines of one tenant. Taking more than is left
/// puts the budget in debt and waits until it is repaid, which stops fetching (back-pressure).
pub struct RateLimit {
    per_second: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A budget of `per_second` records per second (bursts up to one second's worth).
    pub fn new(per_second: u64) -> Arc<Self> {
        Arc::new(RateLimit {
            per_second: per_second as f64,
            state: std::sync::Mutex::new((per_second as f64, Instant::now())),
        })
    }

    /// Takes `records` from the budget, waiting while it is in debt.
    pub async fn take(&self, records: usize) {
        let wait = {
            let mut state = self.state.lock().expect("rate lock");
            let (available, last) = &mut *state;
            let now = Instant::now();
            *available = (*available + now.duration_since(*last).as_secs_f64() * self.per_second)
                .min(self.per_second);
            *last = now;
            *available -= records as f64;
            (*available < 0.0).then(|| Duration::from_secs_f64(-*available / self.per_second))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

struct Pending {
    batch: InputBatch,
    generation: u64,
    started: Instant,
    next_offset: i64,
}

/// What a pipeline's source reads from, and how it batches.
pub struct Source {
    /// The pipeline's consumer, subscribed.
    pub consumer: Arc<SourceConsumer>,
    /// Where batches are registered for their commit.
    pub tracker: Arc<OffsetTracker>,
    /// Batch size and linger.
    pub batch: BatchConfig,
    /// The tenant's records/s budget, if it has one.
    pub rate: Option<Arc<RateLimit>>,
    /// Exactly-once into a sink that stores offsets: the offsets stored with its writes.
    pub stored: Option<Arc<dyn OffsetStore>>,
    /// A stateful at-least-once pipeline: this often, every assigned partition with no records
    /// buffered gets an empty batch (an *idle tick*), so its processing-time timers fire
    /// without waiting for its next record.
    pub idle_ticks: Option<Duration>,
}

/// Reads records until `stop` turns true, batching them to `workers`. Partially filled batches are
/// dispatched before returning so that nothing read is left unprocessed.
pub async fn run(
    source: Source,
    workers: Vec<mpsc::Sender<Batch>>,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let Source {
        consumer,
        tracker,
        batch,
        rate,
        stored,
        idle_ticks,
    } = source;
    // Idle ticks: when each partition last got a batch or a tick, and when they were last looked
    // for (a tenth of their period apart: each look copies the assignment).
    let mut last_sent: HashMap<TopicPartition, Instant> = HashMap::new();
    let mut idle_looked = Instant::now();
    let linger = Duration::from_millis(batch.linger_ms);
    let mut pending: HashMap<TopicPartition, Pending> = HashMap::new();
    let mut tick = tokio::time::interval(linger.max(Duration::from_millis(2)) / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topics: Vec<Arc<str>> = Vec::new();
    let mut last_error: Option<(String, Instant)> = None;
    let mut rebalances = tracker.rebalances();
    // Exactly-once: per assigned partition, the offset stored with the sink's writes; records
    // below it are already written.
    let mut floors: HashMap<TopicPartition, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(command) = control.recv() => match command {
                Control::Pause(pause, reply) => {
                    let _ = reply.send(set_paused(&consumer, pause));
                }
                Control::Replay(from, reply) => {
                    let result = seek_all(&consumer, from).await;
                    if let Ok(positions) = &result {
                        // Batches read before the seek, in flight or buffered, are dropped from
                        // the offsets: the replayed records commit from here.
                        for (tp, _) in positions {
                            track_afresh(&tracker, &mut pending, &mut floors, tp);
                        }
                        rebalances = tracker.rebalances();
                    }
                    let _ = reply.send(result);
                }
                Control::Rewind(tp, offset) => {
                    // The worker stopped tracking the partition; if it is still ours, read it
                    // again from the last committed position under a new generation.
                    let ours = consumer
                        .assignment()
                        .is_ok_and(|a| a.find_partition(&tp.0, tp.1).is_some());
                    if ours {
                        track_afresh(&tracker, &mut pending, &mut floors, &tp);
                        rebalances = tracker.rebalances();
                        // Asynchronous (no wait): the fetcher drops what it read before.
                        match consumer.seek(&tp.0, tp.1, Offset::Offset(offset), Duration::ZERO) {
                            Ok(()) => tracing::info!(topic = %tp.0, partition = tp.1, offset, "reading the partition again from this offset (an aborted transaction or records a sink refused)"),
                            Err(e) => return Err(e).with_context(|| format!("rewinding {}[{}] to offset {offset} after an aborted transaction", tp.0, tp.1)),
                        }
                    }
                }
            },
            message = consumer.recv() => {
                let m = match message {
                    Ok(m) => m,
                    Err(e) => {
                        // librdkafka reconnects by itself; say so once in a while, not per poll.
                        let text = e.to_string();
                        if last_error.as_ref().is_none_or(|(t, at): &(String, Instant)| *t != text || at.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!("Kafka consumer error, retrying: {text} (check kafka.bootstrap_servers and that the brokers are reachable)");
                            last_error = Some((text, Instant::now()));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let topic = match topics.iter().find(|t| ***t == *m.topic()) {
                    Some(t) => t.clone(),
                    None => {
                        let t: Arc<str> = m.topic().into();
                        topics.push(t.clone());
                        t
                    }
                };
                let tp = (topic, m.partition());
                if tracker.rebalances() != rebalances {
                    // A partition revoked (and maybe assigned again) since these batches started:
                    // drop them; the consumer reads those records again from the committed offset.
                    rebalances = tracker.rebalances();
                    pending.retain(|tp, p| tracker.generation(tp) == Some(p.generation));
                    floors.clear();
                }
                if let Some(store) = &stored {
                    let floor = match floors.get(&tp) {
                        Some(floor) => *floor,
                        None => {
                            let floor = store.load(&tp).await?.unwrap_or(i64::MIN);
                            if floor > m.offset() {
                                tracing::info!(topic = %tp.0, partition = tp.1, "skipping records before offset {floor}: already written (exactly-once)");
                            }
                            floors.insert(tp.clone(), floor);
                            floor
                        }
                    };
                    if m.offset() < floor {
                        continue;
                    }
                }
                let entry = match pending.get_mut(&tp) {
                    Some(p) => p,
                    None => {
                        let Some(generation) = tracker.generation(&tp) else {
                            // Revoked, or being rewound after an aborted transaction.
                            tracing::debug!(topic = %tp.0, partition = tp.1, offset = m.offset(), "record from a partition not tracked now; skipped");
                            continue;
                        };
                        pending.entry(tp.clone()).or_insert(Pending {
                            batch: InputBatch::default(),
                            generation,
                            started: Instant::now(),
                            next_offset: 0,
                        })
                    }
                };
                if entry.batch.is_empty() {
                    entry.started = Instant::now();
                    entry.batch.topic_index(&tp.0);
                }
                let headers = m.headers();
                let header_iter = headers.into_iter().flat_map(|h| h.iter()).map(|h| Header {
                    name: h.key,
                    value: h.value,
                });
                entry.batch.push(m.key(), m.payload(), header_iter, m.timestamp().to_millis(), 0, m.partition(), m.offset());
                entry.next_offset = m.offset() + 1;
                if entry.batch.len() >= batch.max_records {
                    let p = pending.remove(&tp).expect("entry exists");
                    if idle_ticks.is_some() {
                        last_sent.insert(tp.clone(), Instant::now());
                    }
                    dispatch(&tracker, &workers, rate.as_deref(), tp, p).await?;
                }
            }
            _ = tick.tick() => {
                let due: Vec<TopicPartition> = pending
                    .iter()
                    .filter(|(_, p)| !p.batch.is_empty() && p.started.elapsed() >= linger)
                    .map(|(tp, _)| tp.clone())
                    .collect();
                for tp in due {
                    let p = pending.remove(&tp).expect("entry exists");
                    if idle_ticks.is_some() {
                        last_sent.insert(tp.clone(), Instant::now());
                    }
                    dispatch(&tracker, &workers, rate.as_deref(), tp, p).await?;
                }
                // A paused pipeline fires nothing: ticks wait for it to resume.
                if let Some(every) = idle_ticks
                    && idle_looked.elapsed() >= every / 10
                    && !consumer.context().paused.load(Ordering::Acquire)
                {
                    idle_looked = Instant::now();
                    send_idle_ticks(&tracker, &workers, &pending, &mut last_sent, every);
                }
            }
        }
    }
    for (tp, p) in pending.drain() {
        if !p.batch.is_empty() {
            dispatch(&tracker, &workers, rate.as_deref(), tp, p).await?;
        }
    }
    Ok(())
}

/// After a seek: tracks `tp` under a new generation, so batches read before (buffered here, or
/// in flight to the workers) are dropped, and forgets its exactly-once floor.
fn track_afresh(
    tracker: &OffsetTracker,
    pending: &mut HashMap<TopicPartition, Pending>,
    floors: &mut HashMap<TopicPartition, i64>,
    tp: &TopicPartition,
) {
    tracker.assign(tp.clone());
    pending.remove(tp);
    floors.remove(tp);
}

fn set_paused(consumer: &SourceConsumer, pause: bool) -> Result<()> {
    consumer.context().paused.store(pause, Ordering::Release);
    let assignment = consumer.assignment().context("reading the assignment")?;
    if pause {
        consumer
            .pause(&assignment)
            .context("pausing the assigned partitions")
    } else {
        consumer
            .resume(&assignment)
            .context("resuming the assigned partitions")
    }
}

/// Seeks every assigned partition to `from`. Every target is checked against the offsets its
/// partition holds before the first seek: one past the end (or a time after the last record)
/// refuses the whole replay with [`REPLAY_OUT_OF_RANGE`], leaving every position as it was, so
/// nothing is skipped. A target below the first offset still held starts from that offset.
async fn seek_all(
    consumer: &Arc<SourceConsumer>,
    from: ReplayFrom,
) -> Result<Vec<(TopicPartition, i64)>> {
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let assignment = consumer.assignment().context("reading the assignment")?;
        if assignment.count() == 0 {
            anyhow::bail!("the pipeline has no partitions assigned in this process");
        }
        // What each partition holds: offsets `low` up to `high`, the end (the next record's).
        let mut held = Vec::new();
        for e in assignment.elements() {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .with_context(|| {
                    format!("reading the offsets held by {}[{}]", e.topic(), e.partition())
                })?;
            held.push((e.topic().to_string(), e.partition(), low, high));
        }
        let found: Vec<Option<i64>> = match from {
            ReplayFrom::Offset(o) => held.iter().map(|_| Some(o)).collect(),
            ReplayFrom::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                for (topic, partition, _, _) in &held {
                    tpl.add_partition_offset(topic, *partition, Offset::Offset(ts))?;
                }
                let offsets = consumer
                    .offsets_for_times(tpl, timeout)
                    .context("looking up the offsets for the timestamp")?;
                held.iter()
                    .map(|(topic, partition, _, _)| {
                        offsets
                            .find_partition(topic, *partition)
                            .and_then(|e| e.offset().to_raw())
                            .filter(|o| *o >= 0)
                    })
                    .collect()
            }
        };
        let mut targets = Vec::new();
        let mut refused = Vec::new();
        for ((topic, partition, low, high), offset) in held.into_iter().zip(found) {
            let range = format!("{topic}[{partition}] holds offsets {low} to {high} (the end)");
            match (from, offset) {
                (ReplayFrom::Offset(o), _) if o > high => {
                    refused.push(format!("offset {o} is past the end: {range}"));
                }
                (ReplayFrom::Timestamp(ts), None) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let future = if ts > now { ", it is in the future" } else { "" };
                    refused.push(format!(
                        "{topic}[{partition}] has no record at or after timestamp {ts}{future} \
                         (the broker found none; {range})"
                    ));
                }
                (_, Some(o)) => targets.push((topic, partition, o.clamp(low, high))),
                (ReplayFrom::Offset(_), None) => unreachable!("an offset replay has a target"),
            }
        }
        if !refused.is_empty() {
            anyhow::bail!(
                "{REPLAY_OUT_OF_RANGE}{}; nothing was replayed (choose an offset within the ranges given)",
                refused.join("; ")
            );
        }
        let mut positions = Vec::new();
        for (topic, partition, offset) in targets {
            consumer
                .seek(&topic, partition, Offset::Offset(offset), timeout)
                .with_context(|| format!("seeking {topic}[{partition}] to {offset}"))?;
            positions.push(((topic.as_str().into(), partition), offset));
        }
        Ok(positions)
    })
    .await?
}

async fn dispatch(
    tracker: &OffsetTracker,
    workers: &[mpsc::Sender<Batch>],
    rate: Option<&RateLimit>,
    tp: TopicPartition,
    pending: Pending,
) -> Result<()> {
    if let Some(rate) = rate {
        rate.take(pending.batch.len()).await;
    }
    let first_offset = pending.batch.record(0).offset;
    let Some(ticket) = tracker.register(&tp, pending.generation, first_offset, pending.next_offset)
    else {
        // Revoked since these records were read: their new owner processes them.
        tracing::debug!(topic = %tp.0, partition = tp.1, next_offset = pending.next_offset, "batch read before a revoke or rewind dropped");
        return Ok(());
    };
    let worker = worker_for(&tp, workers.len());
    workers[worker]
        .send(Batch {
            topic: tp.0,
            partition: tp.1,
            input: pending.batch,
            ticket,
            generation: pending.generation,
        })
        .await
        .ok()
        .context("the pipeline's workers stopped")
}

/// Sends an idle tick (an empty batch on an untracked ticket: it moves no offset) to the worker
/// of every assigned partition that is idle: no records buffered here, and neither a batch nor
/// a tick sent for `every` (`last_sent`). A partition with records gets none: its batches fire
/// the timers. A worker whose queue is full gets its ticks at a later call rather than wait
/// for them: `last_sent` only moves on for a tick that was queued.
fn send_idle_ticks(
    tracker: &OffsetTracker,
    workers: &[mpsc::Sender<Batch>],
    pending: &HashMap<TopicPartition, Pending>,
    last_sent: &mut HashMap<TopicPartition, Instant>,
    every: Duration,
) {
    let assigned = tracker.generations();
    last_sent.retain(|tp, _| assigned.contains_key(tp));
    for (tp, generation) in assigned {
        if pending.contains_key(&tp) || last_sent.get(&tp).is_some_and(|t| t.elapsed() < every) {
            continue;
        }
        let worker = worker_for(&tp, workers.len());
        let tick = Batch {
            topic: tp.0.clone(),
            partition: tp.1,
            input: InputBatch::default(),
            ticket: Ticket::untracked(),
            generation,
        };
        if workers[worker].try_send(tick).is_ok() {
            last_sent.insert(tp, Instant::now());
        }
    }
}

/// The worker a partition is pinned to: consecutive partitions of a topic go to consecutive
/// workers, so they spread evenly.
fn worker_for(tp: &TopicPartition, workers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.0.hash(&mut h);
    (h.finish().wrapping_add(tp.1 as u64) % workers as u64) as usize
}
