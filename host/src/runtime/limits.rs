//! Every sandbox limit in one place: what it bounds, its default, how it is validated, and what a
//! plugin that hits it gets.
//!
//! Per-plugin limits are the [`Limits`] of a pipeline (`pipeline[N].limits` in the config);
//! host-wide limits are plain constants. Where a limit is hit while records are processed, the
//! input records concerned go to the dead-letter topic with the reason below in the
//! `sluice.error.reason` header.
//!
//! | Limit | Bounds | Default | A hit gives |
//! |---|---|---|---|
//! | `limits.memory_mb` | linear memories and tables of one instance | 128 MB | `limit:memory` |
//! | `limits.timeout_ms` | wall-clock time of one plugin call (a batch) | 2000 ms | `limit:deadline` |
//! | `limits.fuel` | instructions of one call | unmetered | `limit:fuel` |
//! | `limits.max_output_records` | output records of one input | 10000 | `limit:output` |
//! | `limits.max_output_bytes` | output bytes of one input | 900000 | `limit:output` |
//! | `limits.log_bytes_per_second` | the plugin's log bytes | 32768 B/s | dropped log bytes |
//! | `limits.max_state_bytes` | keys and values of one partition's state store (stateful plugins) | 1 GiB | `limit:state` |
//! | `tenants[N].max_state_bytes` | keys and values of a tenant's stores in one process | unlimited | `limit:state` |
//! | `limits.compile_memory_mb` | address space of the compiler child | 2048 MB | load refused |
//! | `limits.compile_timeout_ms` | wall-clock time of a compile | 60000 ms | load refused |
//! | [`MAX_INSTANCES`], [`MAX_TABLES`], [`MAX_MEMORIES`] | core instances, tables, memories of a store | 100, 100, 16 | `limit:memory` |
//! | [`MAX_WASI_RESOURCES`] | WASI resources held at once | 10000 | `limit:memory` |
//! | [`MAX_TABLE_ELEMENTS`] | elements of one table | 2^20 | `table.grow` returns -1 |
//! | [`EPOCH_TICK`] | granularity of deadlines | 5 ms | (`limit:deadline`) |
//! | [`MAX_LINE`], [`LINE_OVERHEAD`], [`BURST_SECONDS`] | the log budget's lines and bursts | 4096 B, 200 B, 8 s | dropped log bytes |
//! | [`MAX_CACHE_BYTES`], [`MAX_CACHE_ENTRIES`] | the compiled-component cache on disk | 1 GiB, 256 | LRU eviction |
//! | [`MAX_CONCURRENT_COMPILES`] | compiles running at once on the host | 2 | compiles wait |
//! | `limits.memory_mb` (at most [`MAX_JSON_CALL_BYTES`]) | host memory of one `json` host call | 128 MB | `limit:memory` |
//! | `limits.timeout_ms`, read every [`CHECK_WORK_UNITS`] | time of one `json` host call | 2000 ms | `limit:deadline` |
//! | [`FALLBACK_BYTES_PER_BYTE`] | what serde_json's fallback is charged per document byte | 32 | `limit:memory` |
//! | [`STATE_CACHE_BYTES`] | the read cache of one partition's state store | 64 MiB | emptied |
//! | [`MAX_STATE_SCAN`] | entries one `state.scan` returns | 10000 | fewer entries |
//! | [`MAX_TIMERS_PER_BATCH`] | timers of one plugin fired after one batch | 10000 | the rest fire after the next |
//!
//! A limit hit while an instance is created or runs `init` fails with `LoadError::InitFailed`
//! and the same reason. Enforcement lives where the resource is used: the memory cap in the
//! runtime's resource limiter, deadlines in the epoch ticker and in blocking host calls, output
//! limits in `over_output_limits` (called by the chain), the log budget in the guest log, the
//! compile limits in the compiler child.

use std::time::Duration;

use serde::Deserialize;
use sluice_abi::OutputBatch;

/// Sandbox limits applied to each plugin instance.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Cap on each plugin instance's linear memory and tables (a table element counts 8 bytes).
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock deadline for one plugin call, i.e. one whole batch.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Fuel, roughly WebAssembly instructions, for one plugin call (one whole batch). Unset = not
    /// metered.
    pub fuel: Option<u64>,
    /// Most output records one input may produce.
    #[serde(default = "default_max_output_records")]
    pub max_output_records: u64,
    /// Most output bytes one input may produce, counted as Kafka encodes the records. Keys,
    /// values, headers with their length fields and the record overhead all count.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u64,
    /// Guest log budget per plugin (all its instances, surviving traps): this many bytes per
    /// second with an 8-second burst. It covers the plugin's `log` import, stdout and stderr;
    /// lines are cut at 4096 bytes, and each line costs 200 bytes more. What is over is dropped
    /// and counted in `sluice_guest_log_dropped_bytes_total` (default 32768).
    #[serde(default = "default_log_bytes_per_second")]
    pub log_bytes_per_second: u64,
    /// Address-space limit of the child process that compiles a plugin for `sluice run`/`check`,
    /// in MB. The child runs under `RLIMIT_AS` (default 2048).
    #[serde(default = "default_compile_memory_mb")]
    pub compile_memory_mb: u64,
    /// Wall-clock limit of the compile, in ms (default 60000; an 18 MB Python component takes
    /// about 8 s). A CPU-time limit backs it.
    #[serde(default = "default_compile_timeout_ms")]
    pub compile_timeout_ms: u64,
    /// Most bytes of keys and values one partition's state store may hold (all the
    /// pipeline's stateful plugins together); a write beyond it fails its input with
    /// `limit:state` (default 1073741824).
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: default_memory_mb(),
            timeout_ms: default_timeout_ms(),
            fuel: None,
            max_output_records: default_max_output_records(),
            max_output_bytes: default_max_output_bytes(),
            log_bytes_per_second: default_log_bytes_per_second(),
            compile_memory_mb: default_compile_memory_mb(),
            compile_timeout_ms: default_compile_timeout_ms(),
            max_state_bytes: default_max_state_bytes(),
        }
    }
}

fn default_max_state_bytes() -> u64 {
    1 << 30
}
fn default_compile_memory_mb() -> u64 {
    2048
}
fn default_compile_timeout_ms() -> u64 {
    60_000
}

fn default_log_bytes_per_second() -> u64 {
    32 * 1024
}

fn default_max_output_records() -> u64 {
    10_000
}
/// Below librdkafka's default `message.max.bytes` (1,000,000), so that an output within the limit
/// can be produced.
fn default_max_output_bytes() -> u64 {
    900_000
}
fn default_memory_mb() -> u64 {
    128
}
fn default_timeout_ms() -> u64 {
    2000
}

impl Limits {
    /// Checks every field: on error, the key under `limits` (`memory_mb`) and what is expected.
    /// The config reports it with its file and key path (`pipeline[0].limits.memory_mb`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=65_536).contains(&self.memory_mb) {
            return Err(("memory_mb".into(), "expected 1 to 65536".into()));
        }
        if !(1..=3_600_000).contains(&self.timeout_ms) {
            return Err(("timeout_ms".into(), "expected 1 to 3600000".into()));
        }
        if !(256..=1 << 20).contains(&self.compile_memory_mb) {
            return Err(("compile_memory_mb".into(), "expected 256 to 1048576".into()));
        }
        if !(100..=3_600_000).contains(&self.compile_timeout_ms) {
            return Err((
                "compile_timeout_ms".into(),
                "expected 100 to 3600000".into(),
            ));
        }
        if !(1..=1 << 30).contains(&self.log_bytes_per_second) {
            return Err((
                "log_bytes_per_second".into(),
                "expected 1 to 1073741824".into(),
            ));
        }
        if self.fuel == Some(0) {
            return Err((
                "fuel".into(),
                "expected at least 1 (or leave it unset for no metering)".into(),
            ));
        }
        if self.max_output_records == 0 {
            return Err(("max_output_records".into(), "expected at least 1".into()));
        }
        if self.max_output_bytes == 0 {
            return Err(("max_output_bytes".into(), "expected at least 1".into()));
        }
        if self.max_state_bytes == 0 {
            return Err(("max_state_bytes".into(), "expected at least 1".into()));
        }
        Ok(())
    }
}

/// Inputs of `out` whose outputs exceed `limits.max_output_records` or `max_output_bytes` (bytes
/// as Kafka encodes the records); the chain dead-letters each with `limit:output`.
pub(crate) fn over_output_limits(out: &OutputBatch, limits: &Limits) -> Vec<(u32, String)> {
    let mut over = Vec::new();

    let mut current = (u32::MAX, 0u64, 0u64);
    let mut check = |(input, records, bytes): (u32, u64, u64)| {
        if input != u32::MAX
            && (records > limits.max_output_records || bytes > limits.max_output_bytes)
        {
            over.push((
                input,
                format!(
                    "one input produced {records} records / {bytes} bytes, above limits.max_output_records = {} / max_output_bytes = {}",
                    limits.max_output_records, limits.max_output_bytes
                ),
            ));
        }
    };
    for r in out.iter() {
        if r.input != current.0 {
            check(current);
            current = (r.input, 0, 0);
        }
        current.1 += 1;
        // What the record weighs on the wire, header overhead included: empty headers are not
        // free (see `wire`).
        current.2 += crate::wire::record_size(r.key, r.value, r.headers.iter());
    }
    check(current);
    over
}

/// How often the epoch advances: deadlines (`limits.timeout_ms`) are rounded up to whole ticks
/// (default 5 ms). A call past its deadline fails with `limit:deadline`.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most elements one table may grow to (default 2^20): a `table.grow` beyond it returns -1 to
/// the plugin, which decides what to do (no dead-letter reason by itself). Table bytes also count
/// against `limits.memory_mb`.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most core instances a plugin's store may hold (default 100; a Rust component has about five).
/// Instantiating more fails with `limit:memory`.
pub const MAX_INSTANCES: usize = 100;
/// Most tables a plugin's store may hold (default 100). More fail with `limit:memory`.
pub const MAX_TABLES: usize = 100;
/// Most linear memories a plugin's store may hold (default 16; each reserves address space).
/// More fail with `limit:memory`.
pub const MAX_MEMORIES: usize = 16;
/// Most WASI resources (pollables, streams…) an instance may hold at once (default 10000); each
/// costs host memory outside the plugin's cap. Hitting it is `limit:memory`.
pub const MAX_WASI_RESOURCES: usize = 10_000;

/// Longest line forwarded, in bytes (default 4096): a longer line (a `log` message, or
/// stdout/stderr without a newline) is cut here and the rest is dropped (counted in
/// `sluice_guest_log_dropped_bytes_total`; no record is dead-lettered).
pub const MAX_LINE: usize = 4096;
/// What a line costs beyond its text against `limits.log_bytes_per_second` (default 200 bytes,
/// about what the host log adds: timestamp, level, target, plugin tag and colours or JSON keys),
/// so that many empty lines are limited too. What is over the budget is dropped, not
/// dead-lettered.
pub const LINE_OVERHEAD: u64 = 200;
/// Seconds of `limits.log_bytes_per_second` a plugin may log in one burst (default 8). What is
/// over is dropped, not dead-lettered.
pub const BURST_SECONDS: u64 = 8;

/// Most bytes of compiled components kept on disk (default 1 GiB); the least recently used are
/// removed first (host-wide, no dead-letter reason).
pub const MAX_CACHE_BYTES: u64 = 1 << 30;
/// Most compiled components kept on disk (default 256); the least recently used are removed
/// first (host-wide, no dead-letter reason).
pub const MAX_CACHE_ENTRIES: usize = 256;

/// Most compiles running at once on the host (default 2; compiles are also serialised per
/// tenant, else per pipeline). A compile over the limit waits for a slot (no dead-letter reason).
pub const MAX_CONCURRENT_COMPILES: usize = 2;

/// Units of work (bytes scanned or written, nodes visited) a `json` host call does between two
/// readings of the clock (default 65536, tens of microseconds): the call's deadline
/// (`limits.timeout_ms`) is checked that often, and a call past it traps with `limit:deadline`.
pub const CHECK_WORK_UNITS: u64 = 1 << 16;

/// Host memory a `json` host call may hold at most, whatever `limits.memory_mb` says (default
/// 2 GiB, so that every offset fits a WIT `u32`). Below it, a call holds at most
/// `limits.memory_mb` of host memory (results, parsed documents, re-encoded text); over, it traps
/// with `limit:memory`.
pub const MAX_JSON_CALL_BYTES: u64 = 1 << 31;

/// Host bytes charged per document byte when serde_json parses a document the fast path is not
/// sure of (default 32, above what a `serde_json::Value` takes for the densest JSON, `[0,0,…]`).
/// A fallback whose charge does not fit `limits.memory_mb` traps with `limit:memory`.
pub const FALLBACK_BYTES_PER_BYTE: u64 = 32;

/// Bytes of the read cache of one partition's state store (default 64 MiB): past it the cache is
/// emptied and refills with what is read (no dead-letter reason).
pub const STATE_CACHE_BYTES: usize = 64 << 20;
/// Most entries one `state.scan` call returns (default 10000), whatever limit the plugin asks
/// for: it pages on with `after` (no dead-letter reason).
pub const MAX_STATE_SCAN: usize = 10_000;
/// How often each idle partition of a stateful at-least-once pipeline is checked for
/// processing-time timers that are due (default 1 s): on a partition with no new records such a
/// timer fires at most this late. Exactly-once pipelines fire them after batches only.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Most timers of one plugin fired after one batch (default 10000); the rest fire after the next
/// batch (no dead-letter reason).
pub const MAX_TIMERS_PER_BATCH: usize = 10_000;
