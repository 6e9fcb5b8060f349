//! The Kafka source: a consumer-group member that batches records per partition.
//!
//! Records are copied once, straight from librdkafka's buffers into the batch encoding the plugins
//! read. A batch is dispatched when it holds `batch.max_records` records or its first record has
//! waited `batch.linger_ms`; each partition always goes to the same worker, so order is kept.
//! Dispatch waits when the workers are busy, which stops fetching (back-pressure).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_abi::{Header, InputBatch};
use tokio::sync::{mpsc, watch};

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
}

/// Keeps the offset tracker in step with the group's assignment.
pub struct SourceContext {
    pipeline: String,
    tracker: Arc<OffsetTracker>,
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
            if commit.count() > 0
                && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
            {
                tracing::warn!(pipeline = %self.pipeline, "commit on revoke failed (records will be processed again): {e}");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            for e in tpl.elements() {
                self.tracker.assign((e.topic().into(), e.partition()));
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
) -> Result<Arc<SourceConsumer>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", pipeline.group_id())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // Feeds the consumer-lag gauge.
        .set("statistics.interval.ms", "5000");
    for (k, v) in kafka.properties.iter().chain(&kafka.consumer) {
        config.set(k, v);
    }
    let context = SourceContext {
        pipeline: pipeline.name.clone(),
        tracker,
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

/// Reads records until `stop` turns true, batching them to `workers`. Partially filled batches are
/// dispatched before returning so that nothing read is left unprocessed.
pub async fn run(
    consumer: Arc<SourceConsumer>,
    tracker: Arc<OffsetTracker>,
    batch: BatchConfig,
    workers: Vec<mpsc::Sender<Batch>>,
    rate: Option<Arc<RateLimit>>,
    stored: Option<Arc<dyn OffsetStore>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
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
                            tracing::warn!(topic = %tp.0, partition = tp.1, offset = m.offset(), "record from a partition not assigned to this pipeline; skipped");
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
                    dispatch(&tracker, &workers, rate.as_deref(), tp, p).await?;
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
    let Some(ticket) = tracker.register(&tp, pending.generation, pending.next_offset) else {
        // Revoked since these records were read: their new owner processes them.
        return Ok(());
    };
    let worker = worker_for(&tp, workers.len());
    workers[worker]
        .send(Batch {
            topic: tp.0,
            partition: tp.1,
            input: pending.batch,
            ticket,
        })
        .await
        .ok()
        .context("the pipeline's workers stopped")
}

/// The worker a partition is pinned to: consecutive partitions of a topic go to consecutive
/// workers, so they spread evenly.
fn worker_for(tp: &TopicPartition, workers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.0.hash(&mut h);
    (h.finish().wrapping_add(tp.1 as u64) % workers as u64) as usize
}
