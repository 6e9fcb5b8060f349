//! Loaded plugins and their sandboxed instances: [`Plugin`] (a validated component, its config
//! and limits), [`PluginInstance`] (one store, reused across batches until it traps), the
//! per-instance host state, the memory cap (a wasmtime resource limiter) and the classification of
//! a failed call into a [`Reason`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_abi::{InputBatch, OutputBatch};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::sluice::plugin::host as wit_host;
use super::bindings::sluice::plugin::types as wit;
use super::bindings::{Transform, TransformPre};
use super::limits::{
    EPOCH_TICK, Limits, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES,
    MAX_WASI_RESOURCES,
};
use super::stateful_bindings::sluice::plugin::timers as wit_timers;
use super::stateful_bindings::{StatefulTransform, StatefulTransformPre};
use super::{CallFailure, GuestLog, Level, LoadError, LogBudget, Reason, blocking};
use crate::state::{CallState, PartitionStore};

/// A loaded and validated plugin; instances are created from it cheaply.
pub struct Plugin {
    /// Name used in logs and dead-letter headers.
    pub name: Arc<str>,
    /// Version: the first 12 hex digits of the component's SHA-256.
    pub version: Arc<str>,
    /// The component file.
    pub path: PathBuf,
    pub(super) config: Vec<(String, String)>,
    pub(super) limits: Limits,
    pub(super) pre: PluginPre,
    /// Imports Sluice's state or timers: it runs with its partition's store.
    pub(super) stateful: bool,
    pub(super) engine: Engine,
    pub(super) enforce_limits: bool,
    pub(super) call_seconds: metrics::Histogram,
    /// Shared by every instance, so that a trap does not renew it.
    pub(super) log_budget: LogBudget,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A validated component of either world.
pub(super) enum PluginPre {
    Plain(TransformPre<PluginState>),
    Stateful(StatefulTransformPre<PluginState>),
}

/// An instance's exports, by world.
enum Bindings {
    Plain(Transform),
    Stateful(StatefulTransform),
}

impl Plugin {
    /// True for a plugin of the `stateful-transform` world (it imports state or timers).
    pub fn is_stateful(&self) -> bool {
        self.stateful
    }

    /// A fresh instance with its own store, initialised with the plugin's config.
    pub fn instantiate(self: &Arc<Self>) -> Result<PluginInstance, LoadError> {
        let log = GuestLog::new(self.log_budget.clone());
        let wasi = WasiCtx::builder()
            .stdout(log.stream(false))
            .stderr(log.stream(true))
            // Zero ambient authority: no preopens, env or args (the builder's defaults), and no
            // network at all.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_WASI_RESOURCES);
        let state = PluginState {
            wasi,
            table,
            memory: MemoryCap {
                limit: (self.limits.memory_mb as usize).saturating_mul(1 << 20),
                memories: 0,
                tables: 0,
                hit: false,
            },
            log,
            deadline: None,
            json: Default::default(),
            state: None,
        };
        let mut store = Store::new(&self.engine, state);
        if self.enforce_limits {
            store.limiter(|s| &mut s.memory);
        }
        self.refuel(&mut store);
        let init_failed = |failure| LoadError::InitFailed {
            name: self.name.to_string(),
            path: self.path.clone(),
            failure,
        };
        self.set_deadline(&mut store);
        let bindings = match &self.pre {
            PluginPre::Plain(pre) => pre.instantiate(&mut store).map(Bindings::Plain),
            PluginPre::Stateful(pre) => pre.instantiate(&mut store).map(Bindings::Stateful),
        }
        .map_err(|e| init_failed(classify(e, store.data())))?;
        self.set_deadline(&mut store);
        self.refuel(&mut store);
        let init = match &bindings {
            Bindings::Plain(b) => b.call_init(&mut store, &self.config),
            Bindings::Stateful(b) => b.call_init(&mut store, &self.config),
        };
        match init {
            Ok(Ok(())) => Ok(PluginInstance {
                store,
                bindings,
                plugin: self.clone(),
            }),
            Ok(Err(message)) => Err(LoadError::InitRefused {
                name: self.name.to_string(),
                path: self.path.clone(),
                message,
            }),
            Err(e) => Err(init_failed(classify(e, store.data()))),
        }
    }

    /// The sandbox limits of this plugin.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Gives a store the fuel for one call, if the plugin is metered.
    fn refuel(&self, store: &mut Store<PluginState>) {
        if let Some(fuel) = self.limits.fuel {
            store
                .set_fuel(fuel)
                .expect("fuel is enabled on the metered engine");
        }
    }

    /// Gives a store the wall-clock deadline for one call: in WebAssembly code (epoch ticks) and
    /// in host calls that wait (see [`blocking`]).
    fn set_deadline(&self, store: &mut Store<PluginState>) {
        if self.enforce_limits {
            let tick = EPOCH_TICK.as_millis() as u64;
            // +1: the current tick may be about to end.
            store.set_epoch_deadline(self.limits.timeout_ms.div_ceil(tick) + 1);
            store.data_mut().deadline =
                Some(Instant::now() + Duration::from_millis(self.limits.timeout_ms));
        }
    }
}

/// One instance of a plugin, reused across batches until it traps.
pub struct PluginInstance {
    store: Store<PluginState>,
    bindings: Bindings,
    plugin: Arc<Plugin>,
}

/// Fired timers, as `on-timer` takes them (see `timers.fired-timers` in the WIT).
pub type FiredTimers = wit_timers::FiredTimers;

/// Bytes per timer in [`FiredTimers::timers`]: 5 little-endian words (key span, domain, time).
pub const TIMER_BYTES: usize = 5 * sluice_abi::WORD_BYTES;

impl PluginInstance {
    /// Runs one batch. On `Err` the instance must be replaced (it may be poisoned). The batch's
    /// buffers are lent to the call and given back unchanged.
    pub fn process(&mut self, batch: &mut InputBatch) -> Result<OutputBatch, CallFailure> {
        self.process_with_state(batch, None)
    }

    /// Runs a call of a stateful plugin with `store` (a plain plugin ignores it): the call's
    /// changes join the store's pending ones only if it returns.
    fn with_state<T>(
        &mut self,
        store: Option<&Arc<PartitionStore>>,
        call: impl FnOnce(&mut Self) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        if !self.plugin.stateful {
            return call(self);
        }
        self.store.data_mut().state =
            store.map(|s| CallState::new(s.clone(), self.plugin.name.clone()));
        let result = call(self);
        if let Some(state) = self.store.data_mut().state.take() {
            state.finish(result.is_ok());
        }
        result
    }

    /// Hands fired timers to the plugin's `on-timer`; the output batch's input index is the
    /// timer's index. `Err` as for [`PluginInstance::process`].
    pub fn on_timer(
        &mut self,
        fired: &FiredTimers,
        store: Option<&Arc<PartitionStore>>,
    ) -> Result<OutputBatch, CallFailure> {
        let inputs = fired.timers.len() / TIMER_BYTES;
        self.with_state(store, |this| {
            let Bindings::Stateful(bindings) = &this.bindings else {
                return Err(CallFailure {
                    reason: Reason::Trap,
                    message: "the plugin has no on-timer export".into(),
                });
            };
            this.plugin.set_deadline(&mut this.store);
            this.plugin.refuel(&mut this.store);
            this.store.data().log.start_call();
            let started = Instant::now();
            let result = bindings.call_on_timer(&mut this.store, fired);
            this.plugin
                .call_seconds
                .record(started.elapsed().as_secs_f64());
            let out = result.map_err(|e| classify(e, this.store.data()))?;
            convert(out, inputs)
        })
    }

    /// As [`PluginInstance::process`], with the batch partition's state `store` for a stateful
    /// plugin.
    pub fn process_with_state(
        &mut self,
        batch: &mut InputBatch,
        store: Option<&Arc<PartitionStore>>,
    ) -> Result<OutputBatch, CallFailure> {
        self.with_state(store, |this| this.call_process(batch))
    }

    fn call_process(&mut self, batch: &mut InputBatch) -> Result<OutputBatch, CallFailure> {
        let inputs = batch.len();
        let wit_batch = wit::InputBatch {
            data: std::mem::take(&mut batch.data),
            records: std::mem::take(&mut batch.records),
            headers: std::mem::take(&mut batch.headers),
            topics: std::mem::take(&mut batch.topics),
        };
        self.plugin.set_deadline(&mut self.store);
        self.plugin.refuel(&mut self.store);
        self.store.data().log.start_call();
        let started = Instant::now();
        let result = match &self.bindings {
            Bindings::Plain(b) => b.call_process(&mut self.store, &wit_batch),
            Bindings::Stateful(b) => b.call_process(&mut self.store, &wit_batch),
        };
        self.plugin
            .call_seconds
            .record(started.elapsed().as_secs_f64());
        batch.data = wit_batch.data;
        batch.records = wit_batch.records;
        batch.headers = wit_batch.headers;
        batch.topics = wit_batch.topics;
        let out = result.map_err(|e| classify(e, self.store.data()))?;
        convert(out, inputs)
    }
}

/// The WIT output batch as the ABI's, validated against `inputs` inputs.
fn convert(out: wit::OutputBatch, inputs: usize) -> Result<OutputBatch, CallFailure> {
    {
        let out = OutputBatch {
            data: out.data,
            records: out.records,
            headers: out.headers,
            outputs: out.outputs,
            errors: out
                .errors
                .into_iter()
                .map(|e| sluice_abi::InputError {
                    input: e.input,
                    message: e.message,
                })
                .collect(),
        };
        out.validate(inputs).map_err(|e| CallFailure {
            reason: Reason::Trap,
            message: e.to_string(),
        })?;
        Ok(out)
    }
}

/// The per-instance host state.
pub struct PluginState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    memory: MemoryCap,
    log: GuestLog,
    /// When the current call must end; host calls that wait give up then.
    pub(super) deadline: Option<Instant>,
    /// The `json` host calls' working state.
    pub(super) json: super::json::JsonState,
    /// A stateful plugin's call: its partition's store and the call's changes.
    pub(super) state: Option<CallState>,
}

impl PluginState {
    /// The plugin's memory cap (`limits.memory_mb`) in bytes: what the host may also spend on
    /// its behalf in one host call.
    pub(super) fn memory_cap(&self) -> usize {
        self.memory.limit
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for PluginState {}

impl wit_host::Host for PluginState {
    fn log(&mut self, level: wit_host::Level, message: String) {
        use wit_host::Level as L;
        let level = match level {
            L::Trace => Level::Trace,
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
        };
        self.log.log(level, &message);
    }
}

/// Bytes wasmtime keeps per table element (a pointer), counted against the memory cap.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Caps the linear memories *and tables* of one instance together (`limits.memory_mb`), and the
/// number of instances, tables and memories; remembers whether a cap was hit, so that the
/// resulting trap is reported as `limit:memory`.
struct MemoryCap {
    limit: usize,
    /// Bytes of linear memory.
    memories: usize,
    /// Bytes of table elements.
    tables: usize,
    hit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit: growing {what} would bring the plugin's memory and tables to {desired} bytes, above its cap of {limit} bytes"
)]
struct MemoryLimitHit {
    what: &'static str,
    desired: usize,
    limit: usize,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let memories = self.memories - current.min(self.memories) + desired;
        if memories.saturating_add(self.tables) > self.limit {
            self.hit = true;
            return Err(MemoryLimitHit {
                what: "linear memory",
                desired: memories.saturating_add(self.tables),
                limit: self.limit,
            }
            .into());
        }
        self.memories = memories;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let current = current.saturating_mul(TABLE_ELEMENT_BYTES);
        let desired = desired.saturating_mul(TABLE_ELEMENT_BYTES);
        let tables = self.tables - current.min(self.tables) + desired;
        if tables.saturating_add(self.memories) > self.limit {
            self.hit = true;
            return Err(MemoryLimitHit {
                what: "a table",
                desired: tables.saturating_add(self.memories),
                limit: self.limit,
            }
            .into());
        }
        self.tables = tables;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

fn classify(error: wasmtime::Error, state: &PluginState) -> CallFailure {
    let table_full = matches!(
        error.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    );
    // Instance, table and memory counts: wasmtime fails instantiation with this message.
    let over_count = !state.memory.hit && format!("{error:#}").contains("resource limit exceeded");
    let exit = error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
    if let Some(hit) = error.downcast_ref::<super::json::JsonLimitHit>() {
        let reason = match hit.limit {
            super::json::Limit::Memory { .. } => Reason::Memory,
            super::json::Limit::Deadline => Reason::Deadline,
        };
        return CallFailure {
            reason,
            message: hit.to_string(),
        };
    }
    let reason = if error
        .downcast_ref::<crate::state::StateLimitHit>()
        .is_some()
    {
        Reason::StateLimit
    } else if state.memory.hit
        || error.downcast_ref::<MemoryLimitHit>().is_some()
        || table_full
        || over_count
    {
        Reason::Memory
    } else {
        match error.downcast_ref::<Trap>() {
            _ if error.downcast_ref::<blocking::HostCallDeadline>().is_some() => Reason::Deadline,
            Some(Trap::Interrupt) => Reason::Deadline,
            Some(Trap::OutOfFuel) => Reason::Fuel,
            _ => Reason::Trap,
        }
    };
    let message = match reason {
        Reason::StateLimit => error.to_string(),
        Reason::Deadline => match error.downcast_ref::<blocking::HostCallDeadline>() {
            Some(hit) => format!("{hit} (limits.timeout_ms)"),
            None => "the call ran past its deadline (limits.timeout_ms)".to_string(),
        },
        Reason::Fuel => "the call used up its fuel (limits.fuel)".to_string(),
        Reason::Memory if table_full => format!(
            "memory limit: the plugin holds more than {MAX_WASI_RESOURCES} WASI resources (pollables, streams) at once"
        ),
        Reason::Memory if over_count => format!(
            "memory limit: {} (a plugin may hold at most {MAX_INSTANCES} instances, {MAX_TABLES} tables and {MAX_MEMORIES} memories)",
            error.root_cause()
        ),
        Reason::Memory => match error.downcast_ref::<MemoryLimitHit>() {
            Some(hit) => format!("{hit} (limits.memory_mb)"),
            None => {
                "memory limit: the plugin tried to grow its memory or tables past limits.memory_mb"
                    .to_string()
            }
        },
        _ => {
            tracing::debug!("plugin call failed: {error:?}");
            let what = match (exit, error.downcast_ref::<Trap>()) {
                (Some(code), _) => format!(
                    "the plugin called exit({code}): a plugin must return an error for the record instead of exiting"
                ),
                (None, Some(trap)) => trap.to_string(),
                (None, None) => error.to_string(),
            };
            // A Rust panic prints its message on stderr before trapping: it says why.
            match state.log.call_stderr() {
                Some(stderr) => format!("{what} (plugin stderr: {stderr})"),
                None => what,
            }
        }
    };
    CallFailure { reason, message }
}
