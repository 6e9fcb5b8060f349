//! Pipelines: source → batch → plugin chain → router → sinks → offset commit, wired together.
//!
//! Each pipeline has its own consumer, worker threads (each with its own plugin instances) and
//! offset tracker, so one pipeline's slow or failing plugin never holds up another's records.
//! The runtime (engine, compiled plugins) and the Kafka producer are shared by the host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sluice_abi::{Header, InputBatch};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::chain::{Chain, ChainOutput};
use crate::config::{Config, PipelineConfig};
use crate::offsets::OffsetTracker;
use crate::reload::{self, ChainVersion, LiveChain, Verdict};
use crate::router::Router;
use crate::runtime::{PluginSpec, Runtime};
use crate::sinks::{HEADER_VERSION, KafkaSink, OutgoingRecord};
use crate::source::{self, Batch, RateLimit, SourceConsumer};

/// How long shutdown waits for outstanding acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Live counters of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Input records processed.
    pub records_in: AtomicU64,
    /// Output records sent.
    pub records_out: AtomicU64,
    /// Input records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
}

/// The stats of every pipeline of a host, by pipeline name.
pub type HostStats = Vec<(String, Arc<PipelineStats>)>;

/// The specs of one pipeline's plugins, in chain order.
pub fn plugin_specs(config: &Config, pipeline: &PipelineConfig) -> Vec<PluginSpec> {
    pipeline
        .plugins
        .iter()
        .map(|p| PluginSpec {
            name: p.name(),
            path: config.plugin_path(p),
            config: p.config.clone(),
            limits: pipeline.limits.clone(),
            scope: pipeline.name.clone(),
        })
        .collect()
}

/// Creates the runtime, loads every plugin and creates the producer: everything that can fail
/// before a record is read.
pub struct Host {
    config: Config,
    runtime: Arc<Runtime>,
    chains: Vec<Arc<LiveChain>>,
    /// Per pipeline, its tenant's records-per-second budget.
    rates: Vec<Option<Arc<RateLimit>>>,
    sink: Arc<KafkaSink>,
    stats: HostStats,
}

impl Host {
    /// Prepares every pipeline of `config`.
    pub fn prepare(config: Config, runtime: &Arc<Runtime>) -> Result<Host> {
        let mut chains = Vec::new();
        for pipeline in &config.pipelines {
            let specs = plugin_specs(&config, pipeline);
            let plugins = specs
                .iter()
                .map(|spec| runtime.load(spec))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("pipeline `{}`", pipeline.name))?;
            chains.push(LiveChain::new(
                &pipeline.name,
                specs,
                plugins,
                pipeline.reload.clone(),
            ));
        }
        let tenant_rates: std::collections::HashMap<&str, Arc<RateLimit>> = config
            .tenants
            .iter()
            .filter_map(|t| Some((t.name.as_str(), RateLimit::new(t.max_records_per_second?))))
            .collect();
        let rates = config
            .pipelines
            .iter()
            .map(|p| {
                p.tenant
                    .as_deref()
                    .and_then(|t| tenant_rates.get(t).cloned())
            })
            .collect();
        let sink = Arc::new(KafkaSink::new(&config.kafka)?);
        let stats = config
            .pipelines
            .iter()
            .map(|p| (p.name.clone(), Arc::new(PipelineStats::default())))
            .collect();
        Ok(Host {
            config,
            runtime: runtime.clone(),
            chains,
            rates,
            sink,
            stats,
        })
    }

    /// Live counters, by pipeline.
    pub fn stats(&self) -> HostStats {
        self.stats.clone()
    }

    /// The live plugin chain of every pipeline, in config order.
    pub fn chains(&self) -> &[Arc<LiveChain>] {
        &self.chains
    }

    /// Runs every pipeline until `stop` turns true or one fails; returns the first failure.
    /// Plugin files are followed for hot reload (if enabled), and a message on `recheck`
    /// re-checks every plugin file (SIGHUP).
    pub async fn run(
        self,
        stop: watch::Receiver<bool>,
        recheck: mpsc::UnboundedReceiver<()>,
    ) -> Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let (fail_tx, fail_rx) = watch::channel(false);
        let watcher = tokio::spawn(reload::watch(
            self.runtime.clone(),
            self.chains.clone(),
            self.config.runtime.watch_plugins,
            Duration::from_millis(self.config.runtime.reload_debounce_ms),
            recheck,
            stop.clone(),
        ));
        for (((pipeline, live), (_, stats)), rate) in self
            .config
            .pipelines
            .iter()
            .cloned()
            .zip(self.chains.iter().cloned())
            .zip(self.stats.iter().cloned())
            .zip(self.rates.iter().cloned())
        {
            let kafka = self.config.kafka.clone();
            let sink = self.sink.clone();
            let mut stop = stop.clone();
            let mut failed = fail_rx.clone();
            let (local_tx, local_rx) = watch::channel(false);
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = failed.wait_for(|f| *f) => {}
                }
                let _ = local_tx.send(true);
            });
            let fail_tx = fail_tx.clone();
            tasks.spawn(async move {
                let name = pipeline.name.clone();
                let result = run_pipeline(kafka, pipeline, live, sink, stats, rate, local_rx).await;
                if result.is_err() {
                    let _ = fail_tx.send(true);
                }
                result.with_context(|| format!("pipeline `{name}` stopped"))
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.context("pipeline task panicked").and_then(|r| r) {
                tracing::error!("{e:#}");
                first_error.get_or_insert(e);
            }
        }
        watcher.abort();
        if let Ok(Err(e)) = watcher.await {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Everything a worker needs, shared by the workers of one pipeline.
struct WorkerContext {
    pipeline: String,
    router: Router,
    dead_letter_topic: Option<String>,
    sink: Arc<KafkaSink>,
    stats: Arc<PipelineStats>,
    failure: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
}

impl WorkerContext {
    fn fail(&self, message: String) {
        let mut failure = self.failure.lock().expect("failure lock");
        if failure.is_none() {
            tracing::error!(pipeline = %self.pipeline, "{message}");
            *failure = Some(message);
        }
        let _ = self.stop.send(true);
    }

    fn failed(&self) -> bool {
        self.failure.lock().expect("failure lock").is_some()
    }
}

async fn run_pipeline(
    kafka: crate::config::KafkaConfig,
    pipeline: PipelineConfig,
    live: Arc<LiveChain>,
    sink: Arc<KafkaSink>,
    stats: Arc<PipelineStats>,
    rate: Option<Arc<RateLimit>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let tracker = Arc::new(OffsetTracker::default());
    let consumer = source::connect(&kafka, &pipeline, tracker.clone())?;
    let (local_stop, source_stop) = watch::channel(false);
    let ctx = Arc::new(WorkerContext {
        pipeline: pipeline.name.clone(),
        router: Router::new(&pipeline),
        dead_letter_topic: pipeline.dead_letter_topic.clone(),
        sink: sink.clone(),
        stats,
        failure: Mutex::new(None),
        stop: local_stop,
    });
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = ctx.stop.send(true);
        });
    }

    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for i in 0..pipeline.workers {
        let (tx, rx) = mpsc::channel::<Batch>(2);
        senders.push(tx);
        let ctx = ctx.clone();
        let worker = Worker::new(live.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("{}-{i}", pipeline.name))
                .spawn(move || worker_loop(&ctx, worker, rx))
                .context("starting a worker thread")?,
        );
    }

    let committer = {
        let tracker = tracker.clone();
        let consumer = consumer.clone();
        let ctx = ctx.clone();
        let mut stop = source_stop.clone();
        let interval = Duration::from_millis(pipeline.commit_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                commit(&tracker, &consumer, &ctx, CommitMode::Async);
            }
        })
    };

    tracing::info!(pipeline = %pipeline.name, inputs = ?pipeline.inputs, workers = pipeline.workers, "pipeline started");
    let source_result = source::run(
        consumer.clone(),
        tracker.clone(),
        pipeline.batch.clone(),
        senders,
        rate,
        source_stop,
    )
    .await;
    let _ = committer.await;

    // Drain: workers finish what was dispatched, the producer delivers it, then a last commit.
    tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await?;
    let flush_sink = sink.clone();
    tokio::task::spawn_blocking(move || flush_sink.flush(DRAIN_TIMEOUT)).await??;
    commit(&tracker, &consumer, &ctx, CommitMode::Sync);
    source_result?;
    if let Some(failure) = ctx.failure.lock().expect("failure lock").take() {
        bail!(failure);
    }
    tracing::info!(pipeline = %pipeline.name, "pipeline stopped; acknowledged offsets committed");
    Ok(())
}

fn commit(
    tracker: &OffsetTracker,
    consumer: &SourceConsumer,
    ctx: &WorkerContext,
    mode: CommitMode,
) {
    let collected = tracker.collect();
    if let Some(failure) = collected.failure {
        ctx.fail(failure);
    }
    if collected.positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &collected.positions {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(pipeline = %ctx.pipeline, "offset commit failed (retried with the next commit): {e}");
    }
}

/// One worker's chain instances, following the pipeline's live version at batch boundaries.
struct Worker {
    live: Arc<LiveChain>,
    version: Arc<ChainVersion>,
    chain: Chain,
    /// The previous version's chain, while the live one is on probation.
    fallback: Option<Chain>,
}

impl Worker {
    fn new(live: Arc<LiveChain>) -> Self {
        let version = live.current();
        Worker {
            chain: Chain::new(version.plugins.clone()),
            fallback: None,
            version,
            live,
        }
    }

    /// Switches to the live version if it changed: called between batches only.
    fn refresh(&mut self) {
        if self.live.generation() == self.version.generation {
            return;
        }
        let version = self.live.current();
        self.chain.replace(version.plugins.clone());
        self.fallback = None;
        self.version = version;
    }

    /// Runs the batch through the chain and fails unroutable inputs. On probation, a batch on
    /// which the new version fails inputs that the previous version handles is served by the
    /// previous version. Returns the result and the label of the version that produced it.
    fn process(
        &mut self,
        router: &Router,
        input: &mut InputBatch,
    ) -> Result<(ChainOutput, Arc<str>)> {
        let mut out = self.chain.process(input)?;
        router.fail_unroutable(
            &mut out,
            self.chain.plugins().last().expect("a chain has plugins"),
        );
        let (Some(previous), true) = (&self.version.previous, self.version.on_probation()) else {
            return Ok((out, self.version.label.clone()));
        };
        let mut regressions = 0;
        let mut label = self.version.label.clone();
        if !out.failures.is_empty() {
            let fallback = self
                .fallback
                .get_or_insert_with(|| Chain::new(previous.plugins.clone()));
            let mut old = fallback.process(input)?;
            router.fail_unroutable(
                &mut old,
                fallback.plugins().last().expect("a chain has plugins"),
            );
            regressions = out
                .failures
                .iter()
                .filter(|f| !old.is_failed(f.input))
                .count();
            if regressions > 0 {
                out = old;
                label = previous.label.clone();
            }
        }
        if self
            .live
            .report(&self.version, input.len() as u64, regressions as u64)
            == Verdict::Passed
        {
            self.fallback = None;
        }
        Ok((out, label))
    }
}

fn worker_loop(ctx: &WorkerContext, mut worker: Worker, mut rx: mpsc::Receiver<Batch>) {
    while let Some(mut batch) = rx.blocking_recv() {
        if ctx.failed() {
            // Stopping: leave the batch unacknowledged so it is processed again after a restart.
            continue;
        }
        worker.refresh();
        match process_batch(ctx, &mut worker, &mut batch) {
            Ok(()) => batch.ticket.done(),
            Err(e) => ctx.fail(format!("{e:#}")),
        }
    }
}

/// Runs one batch through the chain and the router, then sends its outputs and dead letters.
fn process_batch(ctx: &WorkerContext, worker: &mut Worker, batch: &mut Batch) -> Result<()> {
    let (out, label) = worker.process(&ctx.router, &mut batch.input)?;
    let version = Header {
        name: HEADER_VERSION,
        value: Some(label.as_bytes()),
    };
    let input = &batch.input;
    if let (Some(failure), None) = (out.failures.first(), &ctx.dead_letter_topic) {
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
    let mut sent = 0;
    for (emitted, output) in ctx.router.routes(&out) {
        sent += 1;
        let record = &emitted.record;
        let timestamp = record
            .timestamp
            .or_else(|| input.record(emitted.input as usize).timestamp);
        ctx.sink.send(
            ctx.router.topic(output),
            OutgoingRecord {
                key: record.key,
                value: record.value,
                headers: record.headers.iter().chain(std::iter::once(version)),
                timestamp,
            },
            &batch.ticket,
        );
    }
    if let Some(dlq) = &ctx.dead_letter_topic {
        for failure in &out.failures {
            let record = input.record(failure.input as usize);
            tracing::debug!(pipeline = %ctx.pipeline, topic = record.topic, partition = record.partition, offset = record.offset, reason = failure.reason.as_str(), "dead-lettering record: {}", failure.message);
            ctx.sink
                .dead_letter(dlq, &ctx.pipeline, &record, failure, &batch.ticket);
        }
    }
    let stats = &ctx.stats;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .records_in
        .fetch_add(input.len() as u64, Ordering::Relaxed);
    stats.records_out.fetch_add(sent, Ordering::Relaxed);
    stats
        .dead_lettered
        .fetch_add(out.failures.len() as u64, Ordering::Relaxed);
    Ok(())
}
