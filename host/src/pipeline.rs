//! Pipelines: source → batch → plugin chain → router → sinks → offset commit, wired together.
//!
//! Each pipeline has its own consumer, worker threads (each with its own plugin instances) and
//! offset tracker, so one pipeline's slow or failing plugin never holds up another's records.
//! The runtime (engine, compiled plugins) and the Kafka producer are shared by the host.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sluice_abi::{Header, InputBatch};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::chain::{Chain, ChainOutput, Failure};
use crate::config::{Config, Delivery, PipelineConfig};
use crate::offsets::{OffsetTracker, Ticket, TopicPartition};
use crate::progress::Progress;
use crate::reload::{self, ChainVersion, LiveChain, Verdict};
use crate::router::Router;
use crate::runtime::{PluginSpec, Reason, Runtime};
use crate::sinks::postgres::{self, PostgresSink};
use crate::sinks::{HEADER_VERSION, KafkaSink, OutgoingRecord, TxnError, is_reserved};
use crate::source::{self, Batch, RateLimit, ReplayFrom, SourceConsumer};

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

/// What `/readyz` reports about one pipeline.
pub struct PipelineStatus {
    /// Pipeline name.
    pub name: String,
    /// Tenant name (empty without tenants).
    pub tenant: String,
    /// The live plugin chain (versions, reloads, uploads); `None` when the pipeline's plugins
    /// could not be loaded at start.
    pub live: Option<Arc<LiveChain>>,
    delivery: Delivery,
    /// Exactly-once into Postgres: the positions are the offsets stored with the rows.
    offsets_in_postgres: bool,
    tracker: Arc<OffsetTracker>,
    state: Mutex<String>,
    /// Paused through the admin API.
    paused: Arc<AtomicBool>,
    /// Commands to the source, while the pipeline runs.
    control: Mutex<Option<mpsc::UnboundedSender<source::Control>>>,
    /// What the workers are doing.
    progress: Arc<Progress>,
    /// Stalled partitions and why, as last found by the stall watch (empty: all moving).
    stalls: Mutex<Vec<String>>,
}

impl PipelineStatus {
    fn set(&self, state: impl Into<String>) {
        *self.state.lock().expect("state lock") = state.into();
    }

    /// Records behind the ends of the assigned partitions, as last reported (every 5 s).
    pub fn lag(&self) -> i64 {
        self.tracker.lag()
    }

    /// Ready: running, with an assignment from its consumer group, and no stalled partition.
    pub fn is_ready(&self) -> bool {
        *self.state.lock().expect("state lock") == "running"
            && self.tracker.has_assignment()
            && self.stalls.lock().expect("stalls lock").is_empty()
    }

    /// Stalled partitions with their causes (empty while every partition moves).
    pub fn stalls(&self) -> Vec<String> {
        self.stalls.lock().expect("stalls lock").clone()
    }

    /// Sends a command to the running source and waits for its reply.
    async fn command<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> source::Control,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .control
            .lock()
            .expect("control lock")
            .as_ref()
            .is_some_and(|c| c.send(make(tx)).is_ok());
        if !sent {
            return Err(format!("pipeline `{}` is not running", self.name));
        }
        rx.await
            .map_err(|_| format!("pipeline `{}` stopped", self.name))?
            .map_err(|e| format!("{e:#}"))
    }

    /// Pauses (or resumes) fetching; batches in flight finish and commit, offsets are kept.
    pub async fn set_paused(&self, pause: bool) -> Result<(), String> {
        self.command(|reply| source::Control::Pause(pause, reply))
            .await
    }

    /// Seeks every partition assigned in this process; returns where each one restarts.
    pub async fn replay(&self, from: ReplayFrom) -> Result<Vec<(TopicPartition, i64)>, String> {
        if self.offsets_in_postgres {
            return Err(format!(
                "pipeline `{}` is exactly-once: its positions are the offsets stored with its rows \
                 (table sluice_offsets), which a replay would skip; change them there instead",
                self.name
            ));
        }
        self.command(|reply| source::Control::Replay(from, reply))
            .await
    }

    /// True while paused through the admin API.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The pipeline as the admin API shows it: state, assignment, lag, live plugin versions.
    pub fn describe(&self) -> serde_json::Value {
        let mut v = self.snapshot();
        let Some(live) = &self.live else {
            v["plugins"] = serde_json::Value::Array(Vec::new());
            return v;
        };
        let current = live.current();
        v["paused"] = self.is_paused().into();
        v["delivery"] = match self.delivery {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        }
        .into();
        v["version"] = (*current.label).into();
        v["on_probation"] = current.on_probation().into();
        v["plugins"] = current
            .plugins
            .iter()
            .map(|p| serde_json::json!({ "name": &*p.name, "version": &*p.version }))
            .collect();
        v
    }

    /// The pipeline's state as JSON.
    pub fn snapshot(&self) -> serde_json::Value {
        let assigned: Vec<String> = self
            .tracker
            .assigned()
            .iter()
            .map(|(t, p)| format!("{t}[{p}]"))
            .collect();
        serde_json::json!({
            "name": self.name,
            "tenant": self.tenant,
            "state": *self.state.lock().expect("state lock"),
            "has_assignment": self.tracker.has_assignment(),
            "assigned": assigned,
            "lag": self.tracker.lag(),
            "ready": self.is_ready(),
            "stalled": self.stalls(),
        })
    }
}

/// Metric handles of one pipeline, made once so the record path only adds numbers.
struct PipelineMetrics {
    records_in: metrics::Counter,
    batches: metrics::Counter,
    batch_size: metrics::Histogram,
    /// By output index of the router.
    records_out: Vec<metrics::Counter>,
    /// By position in [`Reason::ALL`].
    dead_lettered: Vec<metrics::Counter>,
    commits: metrics::Counter,
    producer_queue: metrics::Gauge,
}

impl PipelineMetrics {
    fn new(pipeline: &str, tenant: &str, router: &Router) -> Self {
        let labels = [
            ("pipeline", pipeline.to_string()),
            ("tenant", tenant.to_string()),
        ];
        let with = |extra: (&'static str, String)| {
            let mut l: Vec<(&'static str, String)> = labels.to_vec();
            l.push(extra);
            l
        };
        PipelineMetrics {
            records_in: metrics::counter!("sluice_records_in_total", &labels),
            batches: metrics::counter!("sluice_batches_total", &labels),
            batch_size: metrics::histogram!("sluice_batch_size", &labels),
            records_out: router
                .names()
                .iter()
                .map(|o| {
                    metrics::counter!("sluice_records_out_total", &with(("output", o.clone())))
                })
                .collect(),
            dead_lettered: Reason::ALL
                .iter()
                .map(|r| {
                    metrics::counter!(
                        "sluice_records_dead_lettered_total",
                        &with(("reason", r.as_str().to_string()))
                    )
                })
                .collect(),
            commits: metrics::counter!("sluice_commits_total", &labels),
            producer_queue: metrics::gauge!("sluice_producer_queue_depth"),
        }
    }
}

/// Prints one line every two seconds, in place: records/s, lag and DLQ count per pipeline. For a
/// terminal; logs go on as usual.
pub async fn progress_line(
    stats: HostStats,
    status: Vec<Arc<PipelineStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    use std::io::Write;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last: Vec<u64> = vec![0; stats.len()];
    let mut at = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => {
                eprintln!();
                return;
            }
        }
        let secs = at.elapsed().as_secs_f64().max(0.001);
        at = std::time::Instant::now();
        let parts: Vec<String> = stats
            .iter()
            .zip(&status)
            .zip(last.iter_mut())
            .map(|(((name, s), st), last)| {
                let now = s.records_in.load(Ordering::Relaxed);
                let rate = (now - *last) as f64 / secs;
                *last = now;
                format!(
                    "{name}: {rate:.0}/s lag {} dlq {}",
                    st.lag(),
                    s.dead_lettered.load(Ordering::Relaxed)
                )
            })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", parts.join(" · "));
        let _ = err.flush();
    }
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
            tenant: pipeline.tenant.clone().unwrap_or_default(),
        })
        .collect()
}

/// One pipeline of a host, prepared.
struct Prepared {
    config: PipelineConfig,
    /// `None` when its plugins could not be loaded at start (the error is in its status).
    live: Option<Arc<LiveChain>>,
    stats: Arc<PipelineStats>,
    status: Arc<PipelineStatus>,
    rate: Option<Arc<RateLimit>>,
}

/// Loads every plugin and creates the producer: everything that can fail before a record is read.
pub struct Host {
    config: Config,
    runtime: Arc<Runtime>,
    pipelines: Vec<Prepared>,
    sink: Arc<KafkaSink>,
}

impl Host {
    /// Prepares every pipeline of `config`.
    pub fn prepare(config: Config, runtime: &Arc<Runtime>) -> Result<Host> {
        // Metric handles made before the recorder exists would be no-ops.
        crate::admin::metrics_handle()?;
        let tenant_rates: std::collections::HashMap<&str, Arc<RateLimit>> = config
            .tenants
            .iter()
            .filter_map(|t| Some((t.name.as_str(), RateLimit::new(t.max_records_per_second?))))
            .collect();
        let mut pipelines = Vec::new();
        let mut load_errors = Vec::new();
        for pipeline in &config.pipelines {
            let specs = plugin_specs(&config, pipeline);
            let loaded = specs
                .iter()
                .map(|spec| runtime.load(spec))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("pipeline `{}`", pipeline.name));
            let tenant = pipeline.tenant.clone().unwrap_or_default();
            // A pipeline whose plugins cannot load does not keep the others from starting: it
            // is reported as failed (and `/readyz` fails) while they run.
            let (live, state) = match loaded {
                Ok(plugins) => (
                    Some(LiveChain::new(
                        &pipeline.name,
                        specs,
                        plugins,
                        pipeline.reload.clone(),
                    )),
                    "starting".to_string(),
                ),
                Err(e) => {
                    let state = format!("failed: its plugins cannot load: {e:#}");
                    load_errors.push(e);
                    (None, state)
                }
            };
            pipelines.push(Prepared {
                live: live.clone(),
                stats: Arc::new(PipelineStats::default()),
                status: Arc::new(PipelineStatus {
                    name: pipeline.name.clone(),
                    tenant: tenant.clone(),
                    live,
                    delivery: pipeline.delivery,
                    offsets_in_postgres: pipeline.delivery == Delivery::ExactlyOnce
                        && !pipeline.kafka_transactions(),
                    tracker: Arc::new(OffsetTracker::default()),
                    state: Mutex::new(state),
                    paused: Arc::new(AtomicBool::new(false)),
                    control: Mutex::new(None),
                    progress: Arc::default(),
                    stalls: Mutex::new(Vec::new()),
                }),
                rate: tenant_rates.get(tenant.as_str()).cloned(),
                config: pipeline.clone(),
            });
        }
        if load_errors.len() == pipelines.len()
            && let Some(first) = load_errors.into_iter().next()
        {
            // Nothing could run: refuse to start, with the reason.
            return Err(first);
        }
        for p in pipelines.iter().filter(|p| p.live.is_none()) {
            tracing::error!(pipeline = %p.config.name, "pipeline not started ({}); the host's other pipelines start without it: fix its plugin, then restart the host", p.status.state.lock().expect("state lock"));
        }
        let sink = Arc::new(KafkaSink::new(&config.kafka)?);
        Ok(Host {
            config,
            runtime: runtime.clone(),
            pipelines,
            sink,
        })
    }

    /// Live counters, by pipeline.
    pub fn stats(&self) -> HostStats {
        self.pipelines
            .iter()
            .map(|p| (p.config.name.clone(), p.stats.clone()))
            .collect()
    }

    /// The live plugin chain of every pipeline, in config order.
    pub fn chains(&self) -> Vec<Arc<LiveChain>> {
        self.pipelines
            .iter()
            .filter_map(|p| p.live.clone())
            .collect()
    }

    /// The status of every pipeline, in config order.
    pub fn status(&self) -> Vec<Arc<PipelineStatus>> {
        self.pipelines.iter().map(|p| p.status.clone()).collect()
    }

    /// Runs every pipeline until `stop` turns true or every pipeline has ended; returns the first
    /// failure. A pipeline that fails stops alone.
    /// Plugin files are followed for hot reload (if enabled), a message on `recheck` re-checks
    /// every plugin file (SIGHUP), and the admin endpoints are served if configured.
    pub async fn run(
        self,
        stop: watch::Receiver<bool>,
        recheck: mpsc::UnboundedReceiver<()>,
    ) -> Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let watcher = {
            let watch = reload::watch(
                self.runtime.clone(),
                self.chains(),
                self.config.runtime.watch_plugins,
                Duration::from_millis(self.config.runtime.reload_debounce_ms),
                recheck,
                stop.clone(),
            );
            tokio::spawn(async move {
                let result = watch.await;
                if let Err(e) = &result {
                    tracing::error!("hot reload is off: {e:#}");
                }
                result
            })
        };
        let admin = match self.config.admin.listen {
            Some(listen) => {
                let listener = crate::admin::bind(listen).await?;
                Some(tokio::spawn(crate::admin::serve(
                    listener,
                    self.status(),
                    self.runtime.clone(),
                    crate::admin::Tokens::from_config(&self.config),
                    stop.clone(),
                )))
            }
            None => None,
        };
        let drain_timeout = Duration::from_millis(self.config.runtime.shutdown_timeout_ms);
        let stall_timeout = Duration::from_millis(self.config.runtime.stall_timeout_ms);
        let instance_id = self.config.runtime.instance_id();
        for prepared in self.pipelines {
            let instance_id = instance_id.clone();
            let kafka = self.config.kafka.clone();
            let sink = self.sink.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let name = prepared.config.name.clone();
                let status = prepared.status.clone();
                if prepared.live.is_none() {
                    // Not started: its status says why; the host reports it when it stops.
                    let state = status.state.lock().expect("state lock").clone();
                    return Err(anyhow::anyhow!("pipeline `{name}` {state}"));
                }
                let timeouts = (drain_timeout, stall_timeout);
                let result = run_pipeline(kafka, prepared, sink, timeouts, instance_id, stop).await;
                match &result {
                    Ok(()) => status.set("stopped"),
                    Err(e) => status.set(format!("failed: {e:#}")),
                }
                result.with_context(|| format!("pipeline `{name}` stopped"))
            });
        }
        // A pipeline that fails stops alone: the others (other tenants') keep running, and
        // `/readyz` names the failed one. The host ends when every pipeline has ended.
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.context("pipeline task panicked").and_then(|r| r) {
                if !tasks.is_empty() && !*stop.borrow() {
                    tracing::error!(
                        "{e:#}; the host's other pipelines keep running (fix the cause, then \
                         restart the host to start this pipeline again)"
                    );
                } else {
                    tracing::error!("{e:#}");
                }
                first_error.get_or_insert(e);
            }
        }
        watcher.abort();
        if let Ok(Err(e)) = watcher.await {
            first_error.get_or_insert(e);
        }
        if let Some(admin) = admin {
            admin.abort();
            if let Ok(Err(e)) = admin.await {
                first_error.get_or_insert(e);
            }
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
    metrics: PipelineMetrics,
    router: Router,
    dead_letter_topic: Option<String>,
    sink: Arc<KafkaSink>,
    /// The pipeline's Postgres outputs, if it has any.
    postgres: Option<Arc<PostgresSink>>,
    /// Runs the Postgres writes of the worker threads.
    handle: tokio::runtime::Handle,
    stats: Arc<PipelineStats>,
    failure: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
    /// What the workers are doing, for the stall watch.
    progress: Arc<Progress>,
    /// Input records whose outputs a sink refused (by partition and offset): when their batch
    /// is processed again they go to the dead-letter topic.
    refused: Mutex<std::collections::HashMap<(TopicPartition, i64), crate::offsets::Refusal>>,
    /// Commands to the source (to read a partition again after a refusal).
    control: mpsc::UnboundedSender<source::Control>,
    /// Exactly-once into Kafka: what the workers' transactions need.
    transactions: Option<Transactions>,
}

/// What the workers of an exactly-once Kafka pipeline share to commit their transactions.
struct Transactions {
    /// Held (shared) from a batch's ownership check to its transaction's end; a revoke takes it
    /// exclusively.
    gate: Arc<std::sync::RwLock<()>>,
    /// The pipeline's consumer, for the group metadata that fences zombie transactions.
    consumer: Arc<SourceConsumer>,
    tracker: Arc<OffsetTracker>,
    /// Rewinds a partition after an aborted transaction.
    control: mpsc::UnboundedSender<source::Control>,
    /// To replace a fenced producer.
    kafka: crate::config::KafkaConfig,
    aborted: metrics::Counter,
}

/// How a batch's transaction ended.
enum TxnOutcome {
    Committed,
    /// Aborted; the partition is read again from the batch.
    Aborted,
    /// Aborted, and the producer is unusable: fenced by a newer one with its transactional id
    /// (the broker timed the transaction out, or another process has the same instance id), or
    /// stuck in a call.
    Fenced(String),
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

    /// Remembers inputs of `tp` whose outputs a sink refused, for when they are read again.
    fn remember_refused(&self, tp: &TopicPartition, refusals: Vec<crate::offsets::Refusal>) {
        let mut refused = self.refused.lock().expect("refused lock");
        for r in refusals {
            refused.insert((tp.clone(), r.offset), r);
        }
    }

    /// Failures for the inputs of `batch` whose outputs a sink refused before.
    fn refused_earlier(
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
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sends every failed input to the dead-letter topic through `sink`, counted on `ticket`.
    fn dead_letter(
        &self,
        sink: &KafkaSink,
        input: &InputBatch,
        failures: &[Failure],
        ticket: &Arc<Ticket>,
    ) {
        let Some(dlq) = &self.dead_letter_topic else {
            return;
        };
        for failure in failures {
            let record = input.record(failure.input as usize);
            tracing::debug!(pipeline = %self.pipeline, topic = record.topic, partition = record.partition, offset = record.offset, reason = failure.reason.as_str(), "dead-lettering record: {}", failure.message);
            sink.dead_letter(dlq, &self.pipeline, &record, failure, ticket);
        }
    }
}

/// Refuses to go on when an input failed and the pipeline has no dead-letter topic.
fn require_dead_letter_topic(
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

async fn run_pipeline(
    kafka: crate::config::KafkaConfig,
    prepared: Prepared,
    sink: Arc<KafkaSink>,
    (drain_timeout, stall_timeout): (Duration, Duration),
    instance_id: String,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let Prepared {
        config: pipeline,
        live,
        stats,
        status,
        rate,
    } = prepared;
    let live = live.context("the pipeline's plugins were not loaded")?;
    let tracker = status.tracker.clone();
    let router = Router::new(&pipeline);
    // Tables are checked before joining the group, so a wrong mapping never holds partitions.
    let postgres = PostgresSink::connect(&pipeline, &router).await?;
    let stored_offsets = postgres
        .as_ref()
        .filter(|pg| pg.exactly_once())
        .map(|pg| pg.offset_store());
    let transactional = pipeline.kafka_transactions();
    let gate = transactional.then(Arc::default);
    // Exactly-once: one transactional producer per worker, initialised before the group is
    // joined, which aborts whatever a previous run of this instance left open.
    let transactional_id =
        |worker: usize| format!("{}-{}-{worker}", pipeline.group_id(), instance_id);
    let worker_sinks: Vec<Arc<KafkaSink>> = if transactional {
        let kafka = kafka.clone();
        let ids: Vec<String> = (0..pipeline.workers).map(transactional_id).collect();
        let stopping = stop.clone();
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| {
                    KafkaSink::transactional(&kafka, id, &|| *stopping.borrow()).map(Arc::new)
                })
                .collect::<Result<Vec<_>>>()
        })
        .await??
    } else {
        vec![sink.clone(); pipeline.workers]
    };
    let consumer = source::connect(
        &kafka,
        &pipeline,
        tracker.clone(),
        status.paused.clone(),
        gate.clone(),
    )?;
    let (control, control_rx) = mpsc::unbounded_channel();
    *status.control.lock().expect("control lock") = Some(control.clone());
    let (local_stop, source_stop) = watch::channel(false);
    let ctx = Arc::new(WorkerContext {
        pipeline: pipeline.name.clone(),
        metrics: PipelineMetrics::new(&pipeline.name, &status.tenant, &router),
        router,
        dead_letter_topic: pipeline.dead_letter_topic.clone(),
        sink: sink.clone(),
        postgres,
        handle: tokio::runtime::Handle::current(),
        stats,
        failure: Mutex::new(None),
        stop: local_stop,
        progress: status.progress.clone(),
        refused: Mutex::default(),
        control: control.clone(),
        transactions: gate.map(|gate| Transactions {
            gate,
            consumer: consumer.clone(),
            tracker: tracker.clone(),
            control,
            kafka: kafka.clone(),
            aborted: metrics::counter!("sluice_transactions_aborted_total", "pipeline" => pipeline.name.clone(), "tenant" => status.tenant.clone()),
        }),
    });
    status.set("running");
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = ctx.stop.send(true);
        });
    }

    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for (i, sink) in worker_sinks.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Batch>(2);
        senders.push(tx);
        let ctx = ctx.clone();
        let worker = Worker::new(live.clone());
        let id = transactional_id(i);
        workers.push(
            std::thread::Builder::new()
                .name(format!("{}-{i}", pipeline.name))
                .spawn(move || worker_loop(&ctx, worker, sink, &id, rx))
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

    let stall_watch = tokio::spawn(watch_stalls(
        status.clone(),
        stall_timeout,
        source_stop.clone(),
    ));

    tracing::info!(pipeline = %pipeline.name, inputs = ?pipeline.inputs, workers = pipeline.workers, "pipeline started");
    let source_result = source::run(
        source::Source {
            consumer: consumer.clone(),
            tracker: tracker.clone(),
            batch: pipeline.batch.clone(),
            rate,
            stored: stored_offsets,
        },
        senders,
        control_rx,
        source_stop,
    )
    .await;
    // The whole drain fits in runtime.shutdown_timeout_ms: past it the process exits anyway.
    let drain_started = std::time::Instant::now();
    *status.control.lock().expect("control lock") = None;
    if let Err(e) = &source_result {
        ctx.fail(format!("the Kafka source stopped: {e:#}"));
    }
    let _ = committer.await;
    stall_watch.abort();

    // Drain: workers finish what was dispatched, the producer delivers it, then a last commit.
    let drain_ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        for w in workers {
            if w.join().is_err() {
                drain_ctx.fail("a worker thread panicked; its batches are not committed".into());
            }
        }
    })
    .await?;
    // (Transactional producers have nothing left to flush: every batch ended its transaction.)
    let flush_sink = sink.clone();
    let flush_timeout = drain_timeout
        .saturating_sub(drain_started.elapsed())
        .saturating_sub(Duration::from_millis(500));
    let flushed = tokio::task::spawn_blocking(move || flush_sink.flush(flush_timeout)).await?;
    // Commit what was acknowledged even if the flush timed out.
    commit(&tracker, &consumer, &ctx, CommitMode::Sync);
    flushed.with_context(|| {
        format!(
            "records were still unacknowledged after runtime.shutdown_timeout_ms ({} ms); they \
             are not committed and will be processed again after a restart",
            drain_timeout.as_millis()
        )
    })?;
    source_result?;
    if let Some(failure) = ctx.failure.lock().expect("failure lock").take() {
        bail!(failure);
    }
    tracing::info!(pipeline = %pipeline.name, "pipeline stopped; acknowledged offsets committed");
    Ok(())
}

/// Checks every second for partitions that have not moved for `timeout`: a worker holding one
/// batch that long (a plugin that cannot start, a producer that cannot initialise its
/// transactions) or a batch whose records are not acknowledged. Logs an error naming each
/// partition and the cause, and keeps `/readyz` failing until it moves again.
async fn watch_stalls(
    status: Arc<PipelineStatus>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut reported: Vec<String> = Vec::new();
    let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let gauge = metrics::gauge!("sluice_stalled_partitions", "pipeline" => status.name.clone(), "tenant" => status.tenant.clone());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut stalls: Vec<String> = status
            .progress
            .stalled(timeout)
            .into_iter()
            .map(|s| {
                let at = s
                    .partition
                    .map_or("a batch".to_string(), |(t, p)| format!("{t}[{p}]"));
                format!(
                    "{at}: worker {} has held its batch for {} s: {}",
                    s.worker, s.for_secs, s.cause
                )
            })
            .collect();
        for ((topic, partition), age) in status.tracker.unacknowledged_for(timeout) {
            let at = format!("{topic}[{partition}]");
            if !stalls.iter().any(|s| s.starts_with(&format!("{at}:"))) {
                stalls.push(format!(
                    "{at}: its oldest batch has not been processed and acknowledged for {} s \
                     (the sinks do not acknowledge its records; see the warnings above)",
                    age.as_secs()
                ));
            }
        }
        let keys = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.split(':').next().unwrap_or_default().to_string())
                .collect()
        };
        let (now, before) = (keys(&stalls), keys(&reported));
        for (stall, key) in stalls.iter().zip(&now) {
            if !before.contains(key) {
                tracing::error!(pipeline = %status.name, "partition stalled (runtime.stall_timeout_ms = {} ms; /readyz fails until it moves): {stall}", timeout.as_millis());
            }
        }
        for key in before.iter().filter(|k| !now.contains(k)) {
            tracing::info!(pipeline = %status.name, "partition {key} moves again");
        }
        gauge.set(stalls.len() as f64);
        *status.stalls.lock().expect("stalls lock") = stalls.clone();
        reported = stalls;
    }
}

/// Commits acknowledged positions: those that advanced (`Async`, periodic), or all of them
/// (`Sync`, the last commit, in case an earlier asynchronous one failed).
fn commit(
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

    /// Runs the batch through the chain and fails unroutable inputs. On probation the last
    /// version that passed runs on the batch too (a shadow), and a batch on which the new version
    /// fails or diverges on inputs that the previous version handles is served by the previous
    /// version. Returns the result and the label of the version that produced it.
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
        self.live.state_failures(&out.state_failures);
        let (Some(previous), true) = (&self.version.previous, self.version.on_probation()) else {
            return Ok((out, self.version.label.clone()));
        };
        let fallback = self
            .fallback
            .get_or_insert_with(|| Chain::new(previous.plugins.clone()));
        let mut old = fallback.process(input)?;
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

/// A fenced producer is replaced, as Kafka Streams does, unless fencing repeats this often:
/// then another process most likely shares this one's instance id.
const MAX_FENCES: usize = 3;
const FENCE_WINDOW: Duration = Duration::from_secs(60);

/// Runs the batches of the partitions pinned to this worker through its chain, sending their
/// outputs through `sink` (its own transactional producer `transactional_id` when exactly-once).
fn worker_loop(
    ctx: &WorkerContext,
    mut worker: Worker,
    mut sink: Arc<KafkaSink>,
    transactional_id: &str,
    mut rx: mpsc::Receiver<Batch>,
) {
    let mut session = postgres::Session::default();
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
        let Some(txn) = &ctx.transactions else {
            let outcome = retry_plugin_start(ctx, || {
                process_batch(ctx, &mut worker, &mut session, &sink, &mut batch)
            });
            match outcome {
                Ok(Some(())) => batch.ticket.done(),
                // Stopping: unacknowledged, so processed again after a restart.
                Ok(None) => {}
                Err(e) => ctx.fail(format!("{e:#}")),
            }
            ctx.progress.finish(me);
            continue;
        };
        let outcome = retry_plugin_start(ctx, || {
            process_in_transaction(ctx, txn, &mut worker, &mut session, &sink, &mut batch)
        });
        batch.ticket.done();
        ctx.progress.finish(me);
        match outcome.map(|o| o.unwrap_or(TxnOutcome::Committed)) {
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
fn retry_plugin_start<T>(
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

/// Exactly-once into Kafka: the batch's outputs, dead letters and next offset commit in one
/// transaction. When it aborts, the partition is read again from the batch's first record (its
/// last committed position).
fn process_in_transaction(
    ctx: &WorkerContext,
    txn: &Transactions,
    worker: &mut Worker,
    session: &mut postgres::Session,
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
    if let Err(e) = process_batch(ctx, worker, session, sink, batch) {
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

/// The headers an output record is sent with: the plugin's, less any in Sluice's reserved
/// namespace (an input's forged `sluice.version` is not passed on), then `sluice.version`.
fn output_headers<'a>(
    record: &sluice_abi::OutputRecord<'a>,
    version: Header<'a>,
) -> impl Iterator<Item = Header<'a>> {
    record
        .headers
        .iter()
        .filter(|h| !is_reserved(h.name))
        .chain(std::iter::once(version))
}

/// The inputs with an output to a Kafka topic larger than the producer's `message.max.bytes`.
fn oversized_outputs(
    ctx: &WorkerContext,
    sink: &KafkaSink,
    out: &ChainOutput,
    version: Header<'_>,
    last_plugin: &Arc<crate::runtime::Plugin>,
) -> Vec<Failure> {
    let max = sink.max_message_bytes();
    let mut failures: Vec<Failure> = Vec::new();
    for (emitted, output) in ctx.router.routes(out) {
        let Some(topic) = ctx.router.topic(output) else {
            continue;
        };
        if failures.last().is_some_and(|f| f.input == emitted.input) {
            continue;
        }
        let r = &emitted.record;
        let size = crate::wire::record_size(r.key, r.value, output_headers(r, version));
        if size > max {
            failures.push(Failure {
                input: emitted.input,
                reason: Reason::SinkTooLarge,
                message: format!(
                    "an output record of {size} bytes for topic `{topic}` (output `{}`) is larger \
                     than the producer's message.max.bytes ({max}); emit smaller records, or raise \
                     message.max.bytes in [kafka.producer] together with the topic's \
                     max.message.bytes",
                    ctx.router.names()[output]
                ),
                plugin: Some(last_plugin.clone()),
            });
        }
    }
    failures
}

/// Runs one batch through the chain and the router, then sends its outputs and dead letters.
fn process_batch(
    ctx: &WorkerContext,
    worker: &mut Worker,
    session: &mut postgres::Session,
    sink: &KafkaSink,
    batch: &mut Batch,
) -> Result<()> {
    let (mut out, label) = worker.process(&ctx.router, &mut batch.input)?;
    let input = &batch.input;
    // Records the producer would refuse fail their input here, before anything of the batch is
    // sent, so the input goes to the dead-letter topic whole instead of stopping the pipeline.
    let label_header = Header {
        name: HEADER_VERSION,
        value: Some(label.as_bytes()),
    };
    let last_plugin = worker.chain.plugins().last().expect("a chain has plugins");
    for failure in oversized_outputs(ctx, sink, &out, label_header, last_plugin) {
        out.fail(failure);
    }
    for failure in ctx.refused_earlier(batch, last_plugin) {
        out.fail(failure);
    }
    // Rows first: an input whose row cannot be made sends nothing anywhere.
    let mut rows = postgres::Rows::default();
    if let Some(pg) = &ctx.postgres {
        let (encoded, failures) = pg.encode(&ctx.router, &out, input);
        for failure in failures {
            out.fail(failure);
        }
        rows = encoded;
        rows.retain_inputs(|i| !out.is_failed(i));
    }
    require_dead_letter_topic(ctx, input, &out.failures)?;
    let version = label_header;
    let mut sent = vec![0u64; ctx.metrics.records_out.len()];
    for (emitted, output) in ctx.router.routes(&out) {
        let Some(topic) = ctx.router.topic(output) else {
            continue;
        };
        sent[output] += 1;
        let record = &emitted.record;
        let timestamp = record
            .timestamp
            .or_else(|| input.record(emitted.input as usize).timestamp);
        sink.send(
            topic,
            OutgoingRecord {
                key: record.key,
                value: record.value,
                headers: output_headers(record, version),
                timestamp,
            },
            &batch.ticket,
            Some(input.record(emitted.input as usize).offset),
        );
    }
    let mut dead_lettered = false;
    if let Some(pg) = &ctx.postgres
        && (!rows.is_empty() || pg.exactly_once())
    {
        let stamp = pg.exactly_once().then(|| postgres::Stamp {
            tp: (batch.topic.clone(), batch.partition),
            first_offset: input.record(0).offset,
            next_offset: batch.ticket.next_offset(),
        });
        // Exactly-once: dead letters are acknowledged before the rows and offsets commit, so a
        // crash in between replays them (at least once) rather than losing them.
        let earlier = &out.failures;
        let mut before_commit = |refused: &[Failure]| -> Result<()> {
            require_dead_letter_topic(ctx, input, refused)?;
            let ticket = Ticket::untracked();
            ctx.dead_letter(sink, input, earlier, &ticket);
            ctx.dead_letter(sink, input, refused, &ticket);
            ticket.done();
            while !ticket.is_done() {
                std::thread::sleep(Duration::from_millis(1));
            }
            match ticket.failure() {
                Some(reason) => bail!("{reason}; the batch's rows are rolled back"),
                None => Ok(()),
            }
        };
        let written = ctx.handle.block_on(pg.write(
            session,
            &rows,
            stamp.as_ref(),
            &mut before_commit,
            &|| ctx.stopping(),
        ))?;
        dead_lettered = stamp.is_some();
        if written.skipped {
            tracing::warn!(pipeline = %ctx.pipeline, topic = %batch.topic, partition = batch.partition, "batch skipped: the stored offset is already past it (written before, or the partition moved to another member)");
            return Ok(());
        }
        if !dead_lettered {
            require_dead_letter_topic(ctx, input, &written.failures)?;
        }
        for failure in written.failures {
            out.fail(failure);
        }
        for (_, output) in ctx.router.routes(&out) {
            if pg.is_table(output) {
                sent[output] += 1;
            }
        }
    }
    if !dead_lettered {
        ctx.dead_letter(sink, input, &out.failures, &batch.ticket);
    }
    let stats = &ctx.stats;
    let total_sent: u64 = sent.iter().sum();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .records_in
        .fetch_add(input.len() as u64, Ordering::Relaxed);
    stats.records_out.fetch_add(total_sent, Ordering::Relaxed);
    stats
        .dead_lettered
        .fetch_add(out.failures.len() as u64, Ordering::Relaxed);
    let m = &ctx.metrics;
    m.batches.increment(1);
    m.records_in.increment(input.len() as u64);
    m.batch_size.record(input.len() as f64);
    for (counter, n) in m.records_out.iter().zip(&sent) {
        if *n > 0 {
            counter.increment(*n);
        }
    }
    for failure in &out.failures {
        let i = Reason::ALL
            .iter()
            .position(|r| *r == failure.reason)
            .expect("every reason is listed");
        m.dead_lettered[i].increment(1);
    }
    Ok(())
}
