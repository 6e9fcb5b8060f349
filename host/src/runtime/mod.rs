//! The WebAssembly runtime: one engine for the host, plugins compiled once (and cached on disk),
//! and sandboxed instances that run batches.
//!
//! - [`Runtime`] owns the [`Engine`], the [`Linker`] (WASI p2 with zero ambient authority plus the
//!   Sluice `host` interface) and the precompiled-component cache. A background thread advances
//!   the engine's epoch; deadlines are counted in its ticks. Plugins with a fuel limit run on a
//!   second engine that meters fuel, so that the others do not pay for it.
//! - [`Plugin`] is a loaded, validated component (`InstancePre`), its version (content hash),
//!   config and limits. Loading instantiates it once and runs `init`, so a plugin that refuses
//!   its config never reaches the record path.
//! - [`PluginInstance`] is one store + instance, owned by one worker and reused across batches.
//!   Every call gets a fresh deadline; a trap or limit hit is classified into a [`Reason`].

mod blocking;
mod cache;
mod compile;
mod guest_log;
pub mod limits;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sha2::{Digest, Sha256};
use sluice_abi::{InputBatch, OutputBatch};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use cache::ComponentCache;
pub use compile::{Compiler, child_main as compile_child_main};
pub use guest_log::{GuestLog, Level, LogBudget};
pub use limits::{
    EPOCH_TICK, Limits, MAX_CACHE_BYTES, MAX_CACHE_ENTRIES, MAX_CONCURRENT_COMPILES, MAX_INSTANCES,
    MAX_MEMORIES, MAX_TABLES, MAX_WASI_RESOURCES,
};

use limits::MAX_TABLE_ELEMENTS;

/// Host bindings generated from `wit/sluice.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
    });
}

use bindings::sluice::plugin::host as wit_host;
use bindings::sluice::plugin::types as wit;
use bindings::{Transform, TransformPre};

/// The world every plugin must implement.
pub const WORLD: &str = "sluice:plugin/transform@0.1.0";

/// The engines, linkers and component caches shared by every plugin of the host.
pub struct Runtime {
    plain: EngineParts,
    metered: EngineParts,
    enforce_limits: bool,
    compiler: Compiler,
}

/// One engine with its linker and cache.
struct EngineParts {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: ComponentCache,
    /// The engine's `fuel` and `deadlines` settings, for the compiler child.
    flags: (bool, bool),
}

impl EngineParts {
    fn new(cache_dir: &std::path::Path, fuel: bool, deadlines: bool) -> Result<Self> {
        let engine = Engine::new(&compile::engine_config(fuel, deadlines))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        blocking::bound_blocking_calls(&mut linker)?;
        Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let cache = ComponentCache::new(cache_dir.to_path_buf(), &engine);
        Ok(EngineParts {
            engine,
            linker,
            cache,
            flags: (fuel, deadlines),
        })
    }
}

/// Everything needed to load one plugin.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// Name used in logs and dead-letter headers.
    pub name: String,
    /// Path of the component file.
    pub path: PathBuf,
    /// Passed to `init`.
    pub config: Vec<(String, String)>,
    /// Sandbox limits.
    pub limits: Limits,
    /// Prefix of the plugin's log tag (the pipeline name), empty outside a pipeline.
    pub scope: String,
    /// The tenant owning the plugin (empty without tenants): compiles are serialised per tenant
    /// (per scope without one), so one tenant's uploads cannot take every compile slot.
    pub tenant: String,
}

/// Why a plugin could not be loaded. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    // Not a `source`: the message already says it, and `{:#}` would say it twice.
    #[error("cannot read plugin file {path}: {error} (check the plugin's `path` in the config)")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error(
        "{path} is not a WebAssembly file (it does not start with the `\\0asm` magic bytes); expected a component built for {WORLD}"
    )]
    NotWasm {
        /// The plugin file.
        path: PathBuf,
    },
    /// A core module rather than a component.
    #[error(
        "{path} is a core WebAssembly module, not a component: build it with `cargo build --target wasm32-wasip2` or wrap it with `wasm-tools component new`"
    )]
    CoreModule {
        /// The plugin file.
        path: PathBuf,
    },
    /// The component does not compile (invalid, or over the compile limits).
    #[error("{path} cannot be compiled: {message}")]
    Compile {
        /// The plugin file.
        path: PathBuf,
        /// The compiler's reason.
        message: String,
    },
    /// The component does not implement the `transform` world.
    #[error("{path} does not implement {WORLD}: {message}")]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// What is missing or mismatched.
        message: String,
    },
    /// `init` returned an error.
    #[error("plugin `{name}` ({path}) refused its config: {message}")]
    InitRefused {
        /// The plugin name.
        name: String,
        /// The plugin file.
        path: PathBuf,
        /// The plugin's message.
        message: String,
    },
    /// `init` trapped or hit a limit.
    #[error("plugin `{name}` ({path}) failed in init: {failure}")]
    InitFailed {
        /// The plugin name.
        name: String,
        /// The plugin file.
        path: PathBuf,
        /// What happened.
        failure: CallFailure,
    },
}

/// Why one input record failed: the value of the `sluice.error.reason` dead-letter header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The plugin returned an error for the record.
    PluginError,
    /// The plugin trapped (panic, unreachable, stack overflow, malformed output…).
    Trap,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The plugin tried to grow its memory past the cap.
    Memory,
    /// The call used up its fuel.
    Fuel,
    /// One input produced more output records or bytes than allowed.
    Output,
    /// The record was routed to an output the pipeline does not declare.
    UndeclaredOutput,
    /// An output record could not be converted to a row of its Postgres table.
    RowConversion,
    /// The database refused the record's row (constraint violation, value out of range…).
    RowRejected,
    /// An output record is larger than the Kafka producer or broker accepts (`message.max.bytes`).
    SinkTooLarge,
    /// The broker refused an output record as invalid (for example a null key on a compacted
    /// topic).
    SinkInvalidRecord,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 11] = [
        Reason::PluginError,
        Reason::Trap,
        Reason::Deadline,
        Reason::Memory,
        Reason::Fuel,
        Reason::Output,
        Reason::UndeclaredOutput,
        Reason::RowConversion,
        Reason::RowRejected,
        Reason::SinkTooLarge,
        Reason::SinkInvalidRecord,
    ];

    /// The reason as written in dead-letter headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PluginError => "plugin-error",
            Reason::Trap => "trap",
            Reason::Deadline => "limit:deadline",
            Reason::Memory => "limit:memory",
            Reason::Fuel => "limit:fuel",
            Reason::Output => "limit:output",
            Reason::UndeclaredOutput => "undeclared-output",
            Reason::RowConversion => "row:conversion",
            Reason::RowRejected => "row:rejected",
            Reason::SinkTooLarge => "sink:too-large",
            Reason::SinkInvalidRecord => "sink:invalid-record",
        }
    }
}

/// A failed plugin call: its reason and a message for people.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} ({message})", reason.as_str())]
pub struct CallFailure {
    /// The class of failure.
    pub reason: Reason,
    /// Details.
    pub message: String,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker; compiled components are cached in
    /// `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> Result<Arc<Runtime>> {
        Self::build(cache_dir, true, Compiler::detect())
    }

    /// As [`Runtime::new`], compiling with `compiler` (for example the `sluice` executable from
    /// a program that is not `sluice`).
    pub fn with_compiler(cache_dir: PathBuf, compiler: Compiler) -> Result<Arc<Runtime>> {
        Self::build(cache_dir, true, compiler)
    }

    /// A runtime that enforces no deadline and no memory cap (fuel still applies to plugins that
    /// set it). Only for measuring what the limits cost: a plugin can hang or exhaust it.
    pub fn without_limits_for_benchmarks(cache_dir: PathBuf) -> Result<Arc<Runtime>> {
        Self::build(cache_dir, false, Compiler::detect())
    }

    fn build(cache_dir: PathBuf, enforce_limits: bool, compiler: Compiler) -> Result<Arc<Runtime>> {
        let plain = EngineParts::new(&cache_dir, false, enforce_limits)?;
        let metered = EngineParts::new(&cache_dir, true, enforce_limits)?;
        // One ticker thread for the whole host.
        let weak = [plain.engine.weak(), metered.engine.weak()];
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                loop {
                    for w in &weak {
                        match w.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Arc::new(Runtime {
            plain,
            metered,
            enforce_limits,
            compiler,
        }))
    }

    /// Loads, compiles (or fetches from the cache), links and validates a plugin: it is
    /// instantiated once and its `init` must accept `spec.config`.
    pub fn load(self: &Arc<Self>, spec: &PluginSpec) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(&spec.path).map_err(|error| LoadError::Read {
            path: spec.path.clone(),
            error,
        })?;
        self.load_bytes(spec, &bytes)
    }

    /// As [`Runtime::load`], from bytes already read from `spec.path`.
    pub fn load_bytes(
        self: &Arc<Self>,
        spec: &PluginSpec,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, LoadError> {
        let path = &spec.path;
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(LoadError::CoreModule { path: path.clone() });
            }
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { path: path.clone() }),
        }
        let hash = content_hash(bytes);
        let started = Instant::now();
        let parts = if spec.limits.fuel.is_some() {
            &self.metered
        } else {
            &self.plain
        };
        let compile_failed = |message: String| LoadError::Compile {
            path: path.clone(),
            message,
        };
        let (component, artifact) = match parts.cache.load(&parts.engine, &hash) {
            Some(component) => (component, None),
            None => {
                let artifact = compile::compile(
                    &self.compiler,
                    &parts.engine,
                    parts.flags,
                    &parts.cache,
                    bytes,
                    &compile_scope(spec),
                    &spec.limits,
                )
                .map_err(|e| compile_failed(e.to_string()))?;
                // SAFETY: the artifact was just produced by this host's compiler (in this process
                // or its own executable in a child) for this engine's configuration;
                // deserialize checks the compatibility header.
                let component = unsafe { Component::deserialize(&parts.engine, &artifact) }
                    .map_err(|e| compile_failed(format!("{e:#}")))?;
                (component, Some(artifact))
            }
        };
        let cached = artifact.is_none();
        tracing::debug!(plugin = %spec.name, path = %path.display(), cached, elapsed_ms = started.elapsed().as_millis() as u64, "compiled plugin");
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let pre = parts
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = TransformPre::new(pre).map_err(wrong_world)?;
        let tag: Arc<str> = if spec.scope.is_empty() {
            spec.name.as_str().into()
        } else {
            format!("{}/{}", spec.scope, spec.name).into()
        };
        let plugin = Arc::new(Plugin {
            log_budget: LogBudget::new(tag, spec.limits.log_bytes_per_second),
            name: spec.name.as_str().into(),
            version: hash[..12].into(),
            path: path.clone(),
            config: spec.config.clone(),
            limits: spec.limits.clone(),
            pre,
            engine: parts.engine.clone(),
            enforce_limits: self.enforce_limits,
            call_seconds: metrics::histogram!("sluice_plugin_call_seconds", "pipeline" => spec.scope.clone(), "plugin" => spec.name.clone()),
        });
        // Validate now, off the record path: a plugin that cannot start is never used, and only
        // a plugin that starts is cached.
        plugin.instantiate()?;
        if let Some(artifact) = artifact {
            parts.cache.store(&hash, &artifact);
        }
        Ok(plugin)
    }
}

/// What compiles are serialised by: the tenant, else the pipeline.
fn compile_scope(spec: &PluginSpec) -> String {
    if spec.tenant.is_empty() {
        spec.scope.clone()
    } else {
        format!("tenant:{}", spec.tenant)
    }
}

fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The version of a plugin with this content: the first 12 hex digits of its SHA-256.
pub fn content_version(bytes: &[u8]) -> String {
    content_hash(bytes)[..12].to_string()
}

/// A loaded and validated plugin; instances are created from it cheaply.
pub struct Plugin {
    /// Name used in logs and dead-letter headers.
    pub name: Arc<str>,
    /// Version: the first 12 hex digits of the component's SHA-256.
    pub version: Arc<str>,
    /// The component file.
    pub path: PathBuf,
    config: Vec<(String, String)>,
    limits: Limits,
    pre: TransformPre<PluginState>,
    engine: Engine,
    enforce_limits: bool,
    call_seconds: metrics::Histogram,
    /// Shared by every instance, so that a trap does not renew it.
    log_budget: LogBudget,
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

impl Plugin {
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
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| init_failed(classify(e, store.data())))?;
        self.set_deadline(&mut store);
        self.refuel(&mut store);
        match bindings.call_init(&mut store, &self.config) {
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
    bindings: Transform,
    plugin: Arc<Plugin>,
}

impl PluginInstance {
    /// Runs one batch. On `Err` the instance must be replaced (it may be poisoned). The batch's
    /// buffers are lent to the call and given back unchanged.
    pub fn process(&mut self, batch: &mut InputBatch) -> Result<OutputBatch, CallFailure> {
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
        let result = self.bindings.call_process(&mut self.store, &wit_batch);
        self.plugin
            .call_seconds
            .record(started.elapsed().as_secs_f64());
        batch.data = wit_batch.data;
        batch.records = wit_batch.records;
        batch.headers = wit_batch.headers;
        batch.topics = wit_batch.topics;
        let out = result.map_err(|e| classify(e, self.store.data()))?;
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
    table: ResourceTable,
    memory: MemoryCap,
    log: GuestLog,
    /// When the current call must end; host calls that wait give up then.
    deadline: Option<Instant>,
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
    let reason = if state.memory.hit
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
