//! Plugins in every language, side by side: ns/record at batch 1000 for each language's
//! `mask-pii` and identity (through its SDK), the floor each is held to, component size, the time
//! to compile and validate a component cold, and the time to load it from the compiled-plugin
//! cache.
//!
//! Floors: Rust, C and C++ against the boundary itself (the Rust passthrough plugin); Python and
//! JavaScript against an identity on the raw batch layout in that language (no SDK), Go against
//! its SDK identity (it has no raw-layout twin). Builds come from the same cache as
//! host/tests/languages.rs.
//!
//! `cargo bench -p sluice --bench languages` (or `make bench-languages`); prints a Markdown table.
//! `SLUICE_BENCH_LANGS=rust,c,cpp` limits it to those languages. `SLUICE_BENCH_PLUGINS=LANG:DIR,
//! X.wasm,...` measures only those plugins (a bare DIR is built as Python), in wall-clock and
//! thread CPU time; `SLUICE_BENCH_EXTRA=LANG:DIR,...` measures them the same way after the table
//! (profiling an SDK's per-record path piece by piece).

#![allow(dead_code)]

#[path = "../tests/languages.rs"]
mod languages;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use languages::{Lang, build, identity, mask_pii, signups};
use sluice::testing::config::Limits;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice_abi::InputBatch;

/// ns/record of `path` on `batch`, over at least `min` of calls after a warm-up.
fn per_record(
    runtime: &std::sync::Arc<Runtime>,
    path: &Path,
    batch: &mut InputBatch,
    min: Duration,
) -> f64 {
    let plugin = runtime.load(&spec(path)).unwrap();
    let mut instance = plugin.instantiate().unwrap();
    for _ in 0..3 {
        instance.process(batch).unwrap();
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < min || calls < 5 {
        let out = instance.process(batch).unwrap();
        assert!(out.errors.is_empty());
        calls += 1;
    }
    started.elapsed().as_nanos() as f64 / (calls as f64 * batch.len() as f64)
}

fn spec(path: &Path) -> PluginSpec {
    PluginSpec {
        name: path.file_stem().unwrap().to_string_lossy().into(),
        path: path.to_path_buf(),
        config: vec![],
        limits: Limits {
            memory_mb: 1024,
            ..Limits::default()
        },
        scope: String::new(),
        tenant: String::new(),
    }
}

/// (cold compile + validate, load from the compiled-plugin cache), each with a fresh runtime.
fn load_times(path: &Path) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cold = {
        let rt = Runtime::new(dir.path().to_path_buf()).unwrap();
        let t = Instant::now();
        rt.load(&spec(path)).unwrap();
        t.elapsed()
    };
    let warm = {
        let rt = Runtime::new(dir.path().to_path_buf()).unwrap();
        let t = Instant::now();
        rt.load(&spec(path)).unwrap();
        t.elapsed()
    };
    (cold, warm)
}

fn floor(lang: Lang) -> (PathBuf, &'static str) {
    match lang {
        Lang::Rust | Lang::C | Lang::Cpp => (
            build(Lang::Rust, Path::new("examples/plugins/rust-passthrough")),
            "boundary (Rust passthrough)",
        ),
        Lang::Python => (
            build(lang, Path::new("plugins/testing/python-raw-identity")),
            "raw-layout Python identity",
        ),
        Lang::Js => (
            build(lang, Path::new("plugins/testing/js-raw-identity")),
            "raw-layout JS identity",
        ),
        Lang::Go => (identity(lang), "Go SDK identity (no raw twin)"),
    }
}

fn main() {
    let runtime = Runtime::new(ComponentCache::default_dir()).unwrap();
    let mut batch = signups(1000);
    let min = Duration::from_secs(2);
    // `SLUICE_BENCH_PLUGINS=LANG:DIR|DIR|FILE.wasm,...`: ns/record of just these, in wall-clock
    // time and in this thread's CPU time. On the shared, loaded machine the CPU time is the figure
    // to compare: wall time there is often twice it.
    if let Ok(plugins) = std::env::var("SLUICE_BENCH_PLUGINS") {
        measure_plugins(&runtime, &plugins, &mut batch, min);
        return;
    }
    println!(
        "| language | mask-pii ns/record | identity ns/record | floor ns/record | identity / floor | floor | component (mask-pii) | cold compile + validate | precompiled load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // `SLUICE_BENCH_LANGS=rust,c,cpp` measures only those languages.
    let only = std::env::var("SLUICE_BENCH_LANGS").ok();
    for lang in languages::LANGS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|l| l.trim() == lang.name()))
        {
            continue;
        }
        let mask = mask_pii(lang);
        let id = identity(lang);
        let (floor_path, floor_name) = floor(lang);
        let m = per_record(&runtime, &mask, &mut batch, min);
        let i = per_record(&runtime, &id, &mut batch, min);
        let f = per_record(&runtime, &floor_path, &mut batch, min);
        let size = std::fs::metadata(&mask).unwrap().len();
        let (cold, warm) = load_times(&mask);
        println!(
            "| {} | {m:.0} | {i:.0} | {f:.0} | {:.2} | {floor_name} | {:.1} MB | {:.2} s | {:.0} ms |",
            lang.name(),
            i / f,
            size as f64 / 1e6,
            cold.as_secs_f64(),
            warm.as_secs_f64() * 1e3
        );
    }
    if let Ok(extra) = std::env::var("SLUICE_BENCH_EXTRA") {
        println!();
        measure_plugins(&runtime, &extra, &mut batch, min);
    }
}

/// Measures each plugin of a comma-separated list: `LANG:DIR` (built with that language's SDK),
/// `FILE.wasm`, or a bare `DIR` (a Python plugin).
fn measure_plugins(
    runtime: &std::sync::Arc<Runtime>,
    list: &str,
    batch: &mut InputBatch,
    min: Duration,
) {
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let path = if p.ends_with(".wasm") {
            PathBuf::from(p)
        } else if let Some((name, dir)) = p.split_once(':') {
            let lang = languages::LANGS
                .into_iter()
                .find(|l| l.name() == name)
                .unwrap_or_else(|| panic!("unknown language `{name}` in `{p}`"));
            build(lang, Path::new(dir))
        } else {
            build(Lang::Python, Path::new(p))
        };
        let (wall, cpu) = wall_and_cpu(runtime, &path, batch, min);
        println!("{p}: {wall:.0} ns/record wall-clock, {cpu:.0} ns/record thread CPU");
    }
}

/// (wall-clock, thread CPU) ns/record of `path` on `batch`, as `per_record`, with the CPU time of
/// this thread (which runs the plugin) from /proc.
fn wall_and_cpu(
    runtime: &std::sync::Arc<Runtime>,
    path: &Path,
    batch: &mut InputBatch,
    min: Duration,
) -> (f64, f64) {
    let plugin = runtime.load(&spec(path)).unwrap();
    let mut instance = plugin.instantiate().unwrap();
    for _ in 0..3 {
        instance.process(batch).unwrap();
    }
    let cpu0 = thread_cpu_seconds();
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < min || calls < 5 {
        let out = instance.process(batch).unwrap();
        assert!(out.errors.is_empty());
        calls += 1;
    }
    let records = calls as f64 * batch.len() as f64;
    (
        started.elapsed().as_nanos() as f64 / records,
        (thread_cpu_seconds() - cpu0) * 1e9 / records,
    )
}

/// User + system CPU seconds of the calling thread (fields 14 and 15 of /proc/thread-self/stat,
/// in clock ticks of 1/100 s: over the 2 s of a measurement, 0.5% resolution).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}
