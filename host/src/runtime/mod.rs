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
mod instance;
mod json;
pub mod limits;
mod stateful;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

pub use cache::ComponentCache;
pub use compile::{Compiler, child_main as compile_child_main};
pub use guest_log::{GuestLog, Level, LogBudget};
pub use instance::{FiredTimers, Plugin, PluginInstance, PluginState, TIMER_BYTES};
pub use limits::{EPOCH_TICK, Limits, MAX_WASI_RESOURCES};

pub use crate::failure::Reason;

/// Host bindings generated from `wit/sluice.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        // The json calls trap when they hit a limit (see `json`).
        imports: { "sluice:plugin/json": trappable },
    });
}

/// Host bindings of the `stateful-transform` world: its own `state` and `timers`, the rest
/// shared with [`bindings`].
mod stateful_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "stateful-transform",
        imports: {
            "sluice:plugin/state": trappable,
            "sluice:plugin/timers": trappable,
        },
        with: {
            "sluice:plugin/types": super::bindings::sluice::plugin::types,
            "sluice:plugin/host": super::bindings::sluice::plugin::host,
            "sluice:plugin/json": super::bindings::sluice::plugin::json,
        },
    });
}

use bindings::TransformPre;
use stateful_bindings::{StatefulTransform, StatefulTransformPre};

/// The world every plugin must implement.
pub const WORLD: &str = "sluice:plugin/transform@0.3.0";

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
        // The stateful world's imports are a superset of the plain one's: one linker serves both.
        StatefulTransform::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
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
        let stateful = stateful::uses_state(&component, &parts.engine);
        let pre = if stateful {
            instance::PluginPre::Stateful(StatefulTransformPre::new(pre).map_err(wrong_world)?)
        } else {
            instance::PluginPre::Plain(TransformPre::new(pre).map_err(wrong_world)?)
        };
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
            stateful,
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
