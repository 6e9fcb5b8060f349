//! Pipelines: source → batch → plugin chain → router → sinks → offset commit, wired together.
//!
//! Each pipeline has its own consumer, worker threads (each with its own plugin instances) and
//! offset tracker, so one pipeline's slow or failing plugin never holds up another's records.
//! The runtime (engine, compiled plugins) and the Kafka producer are shared by the host.

mod batch;
mod delivery;
mod meters;
mod stalls;
mod status;
mod timers;
pub(crate) use timers::{after_last, due_timers, late_records};
mod worker;

pub use status::{HostStats, PipelineStats, PipelineStatus};

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::CommitMode;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Delivery, PipelineConfig};
use crate::offsets::OffsetTracker;
use crate::reload::{self, LiveChain};
use crate::runtime::{PluginSpec, Runtime};
use crate::sinks::KafkaSink;
use crate::source::{self, Batch, RateLimit};

use self::delivery::at_least_once::commit;
use self::delivery::kafka_transactions::Transactions;
use self::meters::PipelineMetrics;
use self::stalls::watch_stalls;
use self::worker::{Worker, WorkerContext, worker_loop};

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
pub(crate) struct Prepared {
    pub(crate) config: PipelineConfig,
    /// `None` when its plugins could not be loaded at start (the error is in its status).
    pub(crate) live: Option<Arc<LiveChain>>,
    pub(crate) stats: Arc<PipelineStats>,
    pub(crate) status: Arc<PipelineStatus>,
    pub(crate) rate: Option<Arc<RateLimit>>,
    /// This process's state directory (the pipeline's stores go in a subdirectory named after
    /// it), if its plugins are stateful.
    pub(crate) state_root: Arc<crate::state::StateRoot>,
    /// The tenant's state quota, shared with its other pipelines.
    pub(crate) quota: Option<Arc<crate::state::Quota>>,
}

/// Loads every plugin and creates the producer: everything that can fail before a record is read.
pub struct Host {
    pub(crate) config: Config,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) pipelines: Vec<Prepared>,
    pub(crate) sink: Arc<KafkaSink>,
}

impl Host {
    /// Prepares every pipeline of `config`.
    pub fn prepare(config: Config, runtime: &Arc<Runtime>) -> Result<Host> {
        // Metric handles made before the recorder exists would be no-ops.
        crate::telemetry::metrics_handle()?;
        let tenant_rates: std::collections::HashMap<&str, Arc<RateLimit>> = config
            .tenants
            .iter()
            .filter_map(|t| Some((t.name.as_str(), RateLimit::new(t.max_records_per_second?))))
            .collect();
        let quotas: std::collections::HashMap<&str, Arc<crate::state::Quota>> = config
            .tenants
            .iter()
            .filter_map(|t| {
                Some((
                    t.name.as_str(),
                    crate::state::Quota::new(&t.name, t.max_state_bytes?),
                ))
            })
            .collect();
        // Each process keeps its own files: stores are rebuilt from the changelog on
        // assignment, so nothing there is shared or reused across runs.
        let state_root = Arc::new(crate::state::StateRoot::new(
            &config
                .runtime
                .state_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("sluice-state")),
            &format!("{}-{}", config.runtime.instance_id(), std::process::id()),
        ));
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
                    offsets_in_sink: pipeline.delivery == Delivery::ExactlyOnce
                        && !pipeline.kafka_transactions(),
                    tracker: Arc::new(OffsetTracker::default()),
                    state: Mutex::new(state),
                    paused: Arc::new(AtomicBool::new(false)),
                    control: Mutex::new(None),
                    progress: Arc::default(),
                    stalls: Mutex::new(Vec::new()),
                    stores: Mutex::new(None),
                }),
                rate: tenant_rates.get(tenant.as_str()).cloned(),
                state_root: state_root.clone(),
                quota: quotas.get(tenant.as_str()).cloned(),
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

    /// The configuration the host was prepared from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime the host's plugins run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
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
    /// every plugin file (SIGHUP). The admin endpoints are the caller's to serve beside it
    /// (the admin module's `AdminServer`).
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
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

pub(crate) async fn run_pipeline(
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
        state_root,
        quota,
    } = prepared;
    let live = live.context("the pipeline's plugins were not loaded")?;
    let stores = if live.current().plugins.iter().any(|p| p.is_stateful()) {
        if pipeline.delivery == Delivery::ExactlyOnce && !pipeline.kafka_transactions() {
            bail!(
                "a stateful pipeline under exactly-once needs Kafka outputs only: its state \
                 changelog commits in the Kafka transaction with the outputs and offsets, which a \
                 database sink's own transaction cannot join. Use at-least-once, or Kafka outputs"
            );
        }
        let changelog = pipeline.changelog_topic();
        // A changelog is partitioned like the inputs: wait for them to exist (a producer may
        // create them, or an upstream pipeline of this host) rather than guess its size.
        let mut warned: Option<std::time::Instant> = None;
        loop {
            use crate::state::changelog::{Changelog, ensure_topic};
            if *stop.borrow() {
                return Ok(());
            }
            let Changelog::InputsMissing(missing) =
                ensure_topic(&kafka, &changelog, &pipeline.inputs).await?
            else {
                break;
            };
            let why = format!(
                "waiting for input topic(s) {} to exist: the state changelog `{changelog}` is \
                 partitioned like the inputs (create them; a `^pattern` input needs the \
                 changelog created by hand with as many partitions as the largest match, \
                 cleanup.policy=compact)",
                missing.join(", ")
            );
            status.set(why.clone());
            if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                tracing::warn!(pipeline = %pipeline.name, "{why}");
                warned = Some(std::time::Instant::now());
            }
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let stores = crate::state::Stores::new(crate::state::StoresConfig {
            pipeline: pipeline.name.clone(),
            tenant: status.tenant.clone(),
            dir: Some(state_root.claim()?.join(&pipeline.name)),
            changelog,
            kafka: Some(kafka.clone()),
            max_bytes: pipeline.limits.max_state_bytes,
            quota,
            lateness_ms: pipeline.state.allowed_lateness_ms.min(i64::MAX as u64) as i64,
        });
        *status.stores.lock().expect("stores lock") = Some(stores.clone());
        Some(stores)
    } else {
        None
    };
    let tracker = status.tracker.clone();
    let router = pipeline.router();
    // Sinks connect (tables are checked, files opened) before the group is joined, so a wrong
    // output never holds partitions.
    let sinks = crate::sinks::connect(&pipeline.sink_spec(), &router).await?;
    let transactional = pipeline.kafka_transactions();
    // Exactly-once into a sink that stores offsets: the source starts where it says.
    let offsets_sink = (pipeline.delivery == Delivery::ExactlyOnce && !transactional)
        .then(|| sinks.iter().position(|s| s.offset_store().is_some()))
        .flatten();
    let stored_offsets = offsets_sink.and_then(|i| sinks[i].offset_store());
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
        stores.clone(),
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
        sinks,
        offsets_sink,
        stats,
        failure: Mutex::new(None),
        stop: local_stop,
        progress: status.progress.clone(),
        refused: Mutex::default(),
        control: control.clone(),
        state: stores.clone(),
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
            idle_ticks: (stores.is_some() && !transactional)
                .then_some(crate::runtime::limits::IDLE_TICK),
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
    if let Some(stores) = status.stores.lock().expect("stores lock").take() {
        stores.close_all();
    }
    source_result?;
    if let Some(failure) = ctx.failure.lock().expect("failure lock").take() {
        bail!(failure);
    }
    tracing::info!(pipeline = %pipeline.name, "pipeline stopped; acknowledged offsets committed");
    Ok(())
}
