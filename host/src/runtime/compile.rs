//! Compiling a component with bounded memory and time.
//!
//! A small component can make Cranelift use gigabytes and minutes (many locals live across many
//! branches). So the host does not compile in its own process: it runs its own executable as
//! `sluice __compile IN OUT` (a hidden subcommand, [`child_main`]) under `RLIMIT_AS`
//! (`limits.compile_memory_mb`) and `RLIMIT_CPU`, and kills it after
//! `limits.compile_timeout_ms`. The child writes the precompiled artifact, which the host then
//! deserializes (the engine compatibility hash guarantees both engines agree).
//!
//! Compiles are serialised per scope (the tenant a plugin belongs to, else its pipeline), and at most
//! [`MAX_CONCURRENT_COMPILES`] run at once on the host, so that one tenant's uploads cannot
//! take every core.
//!
//! The compiler executable is the running `sluice` binary, or `$SLUICE_COMPILER`. A host
//! embedded in another program (a test harness) without either compiles in-process, unbounded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::Engine;

use super::cache::ComponentCache;
use super::limits::{Limits, MAX_CONCURRENT_COMPILES};

/// The engine configuration of the host (and of its compiler child: both must agree).
pub fn engine_config(fuel: bool, deadlines: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(deadlines);
    config.consume_fuel(fuel);
    config
}

/// How components are compiled.
#[derive(Clone, Debug)]
pub enum Compiler {
    /// In a child process running this executable (`sluice __compile`).
    Child(PathBuf),
    /// In this process, without memory or time bounds (embedded hosts without a `sluice`
    /// executable).
    InProcess,
}

impl Compiler {
    /// `$SLUICE_COMPILER` if set, else this executable if it is `sluice`, else in-process.
    pub fn detect() -> Compiler {
        if let Some(exe) = std::env::var_os("SLUICE_COMPILER") {
            return Compiler::Child(exe.into());
        }
        match std::env::current_exe() {
            Ok(exe) if exe.file_stem().is_some_and(|s| s == "sluice") => Compiler::Child(exe),
            _ => Compiler::InProcess,
        }
    }
}

/// Why a compile failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The component is invalid (the compiler's message).
    #[error("{0}")]
    Invalid(String),
    /// The compiler needed more memory than allowed.
    #[error(
        "compiling it needs more than limits.compile_memory_mb = {0} MB of memory (a compile bomb?); simplify the component or raise the limit"
    )]
    Memory(u64),
    /// The compiler ran out of time.
    #[error(
        "compiling it takes longer than limits.compile_timeout_ms = {0} ms (a compile bomb?); simplify the component or raise the limit"
    )]
    Timeout(u64),
    /// The compiler could not run.
    #[error("cannot run the compiler: {0:#}")]
    Failed(anyhow::Error),
}

/// Scopes compiling now, and how many compiles run.
struct Slots {
    scopes: BTreeSet<String>,
    running: usize,
}

static SLOTS: Mutex<Slots> = Mutex::new(Slots {
    scopes: BTreeSet::new(),
    running: 0,
});
static FREED: Condvar = Condvar::new();

/// A compile slot, released on drop.
struct Slot(String);

impl Slot {
    fn acquire(scope: &str) -> Slot {
        let mut slots = SLOTS.lock().expect("compile slots lock");
        while slots.running >= MAX_CONCURRENT_COMPILES
            || (!scope.is_empty() && slots.scopes.contains(scope))
        {
            slots = FREED.wait(slots).expect("compile slots lock");
        }
        slots.running += 1;
        slots.scopes.insert(scope.to_string());
        Slot(scope.to_string())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = SLOTS.lock().expect("compile slots lock");
        slots.running -= 1;
        slots.scopes.remove(&self.0);
        FREED.notify_all();
    }
}

/// Compiles `bytes` for `engine` (configured with `fuel` and `deadlines`) within `limits`;
/// returns the precompiled artifact.
pub fn compile(
    compiler: &Compiler,
    engine: &Engine,
    (fuel, deadlines): (bool, bool),
    cache: &ComponentCache,
    bytes: &[u8],
    scope: &str,
    limits: &Limits,
) -> Result<Vec<u8>, CompileError> {
    let _slot = Slot::acquire(scope);
    let exe = match compiler {
        Compiler::InProcess => {
            return engine
                .precompile_component(bytes)
                .map_err(|e| CompileError::Invalid(format!("{e:#}")));
        }
        Compiler::Child(exe) => exe,
    };
    let input = cache.temp_path(".wasm").map_err(CompileError::Failed)?;
    let output = cache.temp_path(".cwasm").map_err(CompileError::Failed)?;
    let errors = cache.temp_path(".err").map_err(CompileError::Failed)?;
    let result = run_child(
        exe,
        (fuel, deadlines),
        bytes,
        &input,
        &output,
        &errors,
        limits,
    );
    for p in [&input, &output, &errors] {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn run_child(
    exe: &Path,
    (fuel, deadlines): (bool, bool),
    bytes: &[u8],
    input: &Path,
    output: &Path,
    errors: &Path,
    limits: &Limits,
) -> Result<Vec<u8>, CompileError> {
    let failed = |e: anyhow::Error| CompileError::Failed(e);
    std::fs::write(input, bytes)
        .with_context(|| format!("writing {}", input.display()))
        .map_err(failed)?;
    let stderr = std::fs::File::create(errors)
        .with_context(|| format!("creating {}", errors.display()))
        .map_err(failed)?;
    let mut cmd = Command::new(exe);
    cmd.arg("__compile")
        .arg(input)
        .arg(output)
        .arg("--memory-mb")
        .arg(limits.compile_memory_mb.to_string())
        .arg("--cpu-seconds")
        // A backstop: parallel compilation uses several cores, the wall-clock timeout rules.
        .arg((limits.compile_timeout_ms.div_ceil(1000) * 4).to_string())
        // glibc reserves 64 MB of address space per thread arena: keep RLIMIT_AS for the heap.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    if fuel {
        cmd.arg("--fuel");
    }
    if !deadlines {
        cmd.arg("--no-deadlines");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))
        .map_err(failed)?;
    let timeout = Duration::from_millis(limits.compile_timeout_ms);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CompileError::Timeout(limits.compile_timeout_ms));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(failed(e.into())),
        }
    };
    if status.success() {
        return std::fs::read(output)
            .with_context(|| format!("reading {}", output.display()))
            .map_err(failed);
    }
    let message = std::fs::read_to_string(errors).unwrap_or_default();
    let message = message.trim();
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        // RLIMIT_CPU sends SIGXCPU, then SIGKILL.
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
            Err(CompileError::Timeout(limits.compile_timeout_ms))
        }
        // An allocation failure aborts.
        Some(_) if message.contains("memory allocation") => {
            Err(CompileError::Memory(limits.compile_memory_mb))
        }
        _ if message.contains(OUT_OF_MEMORY) || message.contains("memory allocation") => {
            Err(CompileError::Memory(limits.compile_memory_mb))
        }
        _ => match message.split_once(INVALID) {
            Some((_, reason)) => Err(CompileError::Invalid(reason.trim().to_string())),
            None => Err(failed(anyhow::anyhow!(
                "the compiler exited with {status}: {message}"
            ))),
        },
    }
}

/// Marks the compiler's message for an invalid component.
const INVALID: &str = "invalid component:";
/// Marks the compiler's message when it ran out of memory without aborting.
const OUT_OF_MEMORY: &str = "out of memory";

/// The hidden `sluice __compile` subcommand: compiles `input` into `output` under the given
/// limits. Exits non-zero with a message on stderr.
pub fn child_main(
    input: &Path,
    output: &Path,
    memory_mb: u64,
    cpu_seconds: u64,
    fuel: bool,
    deadlines: bool,
) -> Result<()> {
    set_limit(libc::RLIMIT_AS, memory_mb.saturating_mul(1 << 20))?;
    set_limit(libc::RLIMIT_CPU, cpu_seconds.max(1))?;
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let engine = Engine::new(&engine_config(fuel, deadlines))?;
    let artifact = match engine.precompile_component(&bytes) {
        Ok(a) => a,
        Err(e) => {
            let text = format!("{e:#}");
            if text.contains("Cannot allocate memory") || text.contains("out of memory") {
                bail!("{OUT_OF_MEMORY}: {text}");
            }
            bail!("{INVALID} {text}");
        }
    };
    std::fs::write(output, artifact).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit only reads the struct passed by reference.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        bail!(
            "setrlimit({resource}, {value}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
