//! Hostile plugins against the runtime itself: waiting in host calls (sleep, poll), store
//! resources outside linear memory (tables), log floods, `exit()`, refused uploads in the compile
//! cache and compile bombs. Each test asserts on records and on a resource (wall time, RSS, log
//! bytes, files on disk).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kafka, RunningHost, TestRecord, write_config};
use sluice::testing::chain::Chain;
use sluice::testing::config::Limits;
use sluice::testing::runtime::{LoadError, Plugin, PluginSpec, Reason, Runtime};
use sluice_abi::InputBatch;

const RECORDS: usize = 20;
const BAD: usize = 7;

/// The values of a test batch: `ok-N`, with `bad` at `BAD`.
fn values() -> Vec<String> {
    (0..RECORDS)
        .map(|n| {
            if n == BAD {
                "bad".to_string()
            } else {
                format!("ok-{n}")
            }
        })
        .collect()
}

fn batch(values: &[String]) -> InputBatch {
    let mut b = InputBatch::default();
    let topic = b.topic_index("in");
    for (n, v) in values.iter().enumerate() {
        b.push(
            Some(format!("k{n}").as_bytes()),
            Some(v.as_bytes()),
            std::iter::empty(),
            None,
            topic,
            0,
            n as i64,
        );
    }
    b
}

fn spec(plugin: &str, mode: &str, limits: Limits) -> PluginSpec {
    PluginSpec {
        name: plugin.replace('-', "_"),
        path: common::plugin(&plugin.replace('-', "_")),
        config: vec![("mode".into(), mode.into())],
        limits,
        scope: "test".into(),
        tenant: String::new(),
    }
}

fn limits(timeout_ms: u64) -> Limits {
    Limits {
        timeout_ms,
        ..Limits::default()
    }
}

fn load(runtime: &Arc<Runtime>, spec: &PluginSpec) -> Arc<Plugin> {
    runtime
        .load(spec)
        .unwrap_or_else(|e| panic!("loading {}: {e}", spec.path.display()))
}

/// Writes `values` as a `sluice test` JSON-lines input file.
fn jsonl(dir: &Path, name: &str, values: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text: String = values
        .iter()
        .enumerate()
        .map(|(n, v)| format!("{{\"key\": \"k{n}\", \"value\": \"{v}\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `sluice test` with a private compile cache; returns stdout lines, stderr and wall time.
fn sluice_test(
    cache: &Path,
    plugin: &str,
    input: &Path,
    config: &[&str],
) -> (Vec<serde_json::Value>, String, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env("SLUICE_CACHE_DIR", cache)
        .env("RUST_LOG", "info")
        .arg("test")
        .arg(common::plugin(plugin))
        .arg("--input")
        .arg(input);
    for kv in config {
        cmd.args(["--config", kv]);
    }
    let started = Instant::now();
    let o = cmd.output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "sluice test failed: {stderr}");
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr, took)
}

// ---------------------------------------------------------------------------------------------
// Item 3: waiting in a host call does not dodge the deadline.

#[test]
fn a_plugin_sleeping_in_a_host_call_is_cut_at_its_deadline_in_sluice_test() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Compile once (not timed).
    let good = jsonl(dir.path(), "good.jsonl", &["ok".to_string()]);
    sluice_test(&cache, "hostile_runtime", &good, &["mode=sleep"]);

    let input = jsonl(dir.path(), "in.jsonl", &values());
    let (lines, stderr, took) = sluice_test(&cache, "hostile_runtime", &input, &["mode=sleep"]);
    let failures: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    let outputs: Vec<_> = lines.iter().filter(|l| l.get("error").is_none()).collect();
    assert_eq!(failures.len(), 1, "{lines:?} {stderr}");
    assert_eq!(failures[0]["input"], BAD);
    assert_eq!(failures[0]["reason"], "limit:deadline", "{:?}", failures[0]);
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("waited in a host call"),
        "{:?}",
        failures[0]
    );
    assert_eq!(outputs.len(), RECORDS - 1);
    // The default deadline is 2 s: the batch hits it once, the bad record alone once more.
    assert!(
        took < Duration::from_secs(3 * 2 + 3),
        "one sleeping record among {RECORDS} held `sluice test` for {took:?}"
    );
}

#[test]
fn a_plugin_sleeping_in_a_host_call_is_dead_lettered_in_sluice_run() {
    let kafka = Kafka::new(1);
    for t in ["in", "out", "dlq"] {
        kafka.topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [[pipeline]]
        name = "sleeper"
        inputs = ["in"]
        dead_letter_topic = "dlq"
        plugins = [{ path = "{plugin:hostile_runtime}", config = { mode = "sleep" } }]
        limits = { timeout_ms = 2000 }
        batch = { max_records = 20, linger_ms = 200 }
        workers = 1
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    let records: Vec<TestRecord> = values()
        .into_iter()
        .enumerate()
        .map(|(n, v)| (Some(format!("k{n}")), Some(v.into_bytes()), vec![]))
        .collect();
    let started = Instant::now();
    kafka.produce("in", Some(0), &records);
    let dlq = kafka.read_count(&["dlq"], 1, Duration::from_secs(60));
    let out = kafka.read_count(&["out"], RECORDS - 1, Duration::from_secs(60));
    let took = started.elapsed();
    // Stop while the worker sleeps in another bad record: the stop waits for the deadline at
    // most, not for the hour.
    kafka.produce("in", Some(0), &records[BAD..=BAD]);
    std::thread::sleep(Duration::from_millis(1000));
    let stopping = Instant::now();
    host.stop().expect("the host stops cleanly");
    let stop_took = stopping.elapsed();

    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value_str(), "bad");
    assert_eq!(
        dlq[0].header("sluice.error.reason"),
        Some("limit:deadline"),
        "{:?}",
        dlq[0].header("sluice.error.message")
    );
    assert_eq!(out.len(), RECORDS - 1);
    assert!(
        took < Duration::from_secs(3 * 2 + 4),
        "one sleeping record held the pipeline for {took:?}"
    );
    assert!(
        stop_took < Duration::from_secs(5),
        "stop took {stop_took:?}"
    );
}

#[test]
fn a_plugin_sleeping_in_init_fails_to_load_at_the_init_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().to_path_buf()).unwrap();
    // Compile once (not timed).
    load(&runtime, &spec("hostile-runtime", "sleep", limits(1000)));
    let started = Instant::now();
    let err = runtime
        .load(&spec("hostile-runtime", "sleep-init", limits(1000)))
        .expect_err("a plugin sleeping in init is refused");
    let took = started.elapsed();
    match &err {
        LoadError::InitFailed { failure, .. } => {
            assert_eq!(failure.reason, Reason::Deadline, "{err}")
        }
        other => panic!("expected an init failure, got {other}"),
    }
    assert!(
        took < Duration::from_secs(4),
        "init with a 1 s deadline took {took:?}"
    );
}

#[test]
fn bisection_runs_a_record_past_its_deadline_once_more_not_once_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().to_path_buf()).unwrap();
    let plugin = load(&runtime, &spec("hostile-runtime", "sleep", limits(500)));
    let mut chain = Chain::new(vec![plugin]);
    // 1000 records, two of them sleep: halving would cost ~2 × 10 deadlines.
    let mut values: Vec<String> = (0..1000).map(|n| format!("ok-{n}")).collect();
    values[100] = "bad".into();
    values[900] = "bad".into();
    let mut input = batch(&values);
    let started = Instant::now();
    let out = chain.process(&mut input).unwrap();
    let took = started.elapsed();
    let failed: Vec<(u32, Reason)> = out.failures.iter().map(|f| (f.input, f.reason)).collect();
    assert_eq!(
        failed,
        vec![(100, Reason::Deadline), (900, Reason::Deadline)]
    );
    assert_eq!(out.emitted().count(), 998);
    // One deadline for the batch, one for each sleeping record alone.
    assert!(
        took < Duration::from_millis(3 * 500 + 2500),
        "bisection took {took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 6: tables count against the memory cap.

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// A component implementing the transform world in raw WebAssembly: `init` accepts any config,
/// `process` returns an empty output batch, and when the batch's data contains `bad` it first
/// runs `attack` (a core function body). It declares `tables` funcref tables, `$t0`…, and
/// instantiates `extra` more core instances of a module with `extra_tables` tables.
fn transform_component(tables: usize, attack: &str, extra: usize, extra_tables: usize) -> Vec<u8> {
    let table_decls: String = (0..tables)
        .map(|i| format!("(table $t{i} 0 funcref)\n"))
        .collect();
    let extra_module = format!(
        "(core module $extra {})",
        "(table 1 funcref) ".repeat(extra_tables)
    );
    let extra_instances: String = (0..extra)
        .map(|_| "(core instance (instantiate $extra))\n")
        .collect();
    let text = format!(
        r#"
(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    {table_decls}
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.const 1) (i32.shr_u
          (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
          (i32.const 16)))))))
      (local.get $p))
    (func (export "init") (param i32 i32) (result i32)
      (i32.store (i32.const 1024) (i32.const 0))
      (i32.const 1024))
    (func $attack {attack})
    (func (export "process") (param $data i32) (param $len i32) (param i32 i32 i32 i32 i32 i32) (result i32)
      (local $i i32)
      (global.set $heap (i32.const 4096))
      (block $done
        (loop $scan
          (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 2)) (local.get $len)))
          (if (i32.and
                (i32.and
                  (i32.eq (i32.load8_u (i32.add (local.get $data) (local.get $i))) (i32.const 98))
                  (i32.eq (i32.load8_u offset=1 (i32.add (local.get $data) (local.get $i))) (i32.const 97)))
                (i32.eq (i32.load8_u offset=2 (i32.add (local.get $data) (local.get $i))) (i32.const 100)))
            (then (call $attack) (br $done)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $scan)))
      (memory.fill (i32.const 2048) (i32.const 0) (i32.const 64))
      (i32.const 2048)))
  (core instance $i (instantiate $m))
  {extra_module}
  {extra_instances}
  (type $input-batch' (record (field "data" (list u8)) (field "records" (list u8))
    (field "headers" (list u8)) (field "topics" (list string))))
  (export $input-batch "input-batch" (type $input-batch'))
  (type $input-error' (record (field "input" u32) (field "message" string)))
  (export $input-error "input-error" (type $input-error'))
  (type $output-batch' (record (field "data" (list u8)) (field "records" (list u8))
    (field "headers" (list u8)) (field "outputs" (list string)) (field "errors" (list $input-error))))
  (export $output-batch "output-batch" (type $output-batch'))
  (func (export "init") (param "config" (list (tuple string string))) (result (result (error string)))
    (canon lift (core func $i "init") (memory $i "memory") (realloc (func $i "realloc"))))
  (func (export "process") (param "batch" $input-batch) (result $output-batch)
    (canon lift (core func $i "process") (memory $i "memory") (realloc (func $i "realloc")))))
"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn raw_spec(dir: &Path, name: &str, bytes: &[u8], limits: Limits) -> PluginSpec {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    PluginSpec {
        name: name.into(),
        path,
        config: vec![],
        limits,
        scope: "test".into(),
        tenant: String::new(),
    }
}

#[test]
fn tables_count_against_the_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().join("cache")).unwrap();
    // 100 tables, each grown to 2^20 entries (8 MiB each in wasmtime): 800 MiB uncapped.
    let attack: String = (0..100)
        .map(|i| format!("(drop (table.grow $t{i} (ref.null func) (i32.const 1048576)))\n"))
        .collect();
    let bytes = transform_component(100, &attack, 0, 0);
    let memory = Limits {
        memory_mb: 32,
        ..Limits::default()
    };
    let plugin = load(&runtime, &raw_spec(dir.path(), "tables", &bytes, memory));
    let mut chain = Chain::new(vec![plugin]);
    let rss_before = status_kb("VmRSS:");
    let mut input = batch(&values());
    let out = chain.process(&mut input).unwrap();
    let rss_after = status_kb("VmRSS:");
    let failed: Vec<(u32, Reason)> = out.failures.iter().map(|f| (f.input, f.reason)).collect();
    assert_eq!(
        failed,
        vec![(BAD as u32, Reason::Memory)],
        "{:?}",
        out.failures
    );
    assert!(
        out.failures[0].message.contains("table"),
        "{}",
        out.failures[0].message
    );
    assert!(
        rss_after < rss_before + 100 * 1024,
        "tables took the host from {rss_before} kB to {rss_after} kB under a 32 MiB cap"
    );
}

#[test]
fn too_many_tables_or_instances_are_refused_as_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().join("cache")).unwrap();
    // A module may declare at most 100 tables (the parser's limit), but instances multiply them:
    // 12 × 10 tables; and 150 instances of an empty module.
    let cases = [
        ("many-tables", transform_component(0, "", 12, 10), "table"),
        (
            "many-instances",
            transform_component(0, "", 150, 0),
            "instance",
        ),
    ];
    for (name, bytes, what) in cases {
        let err = runtime
            .load(&raw_spec(dir.path(), name, &bytes, Limits::default()))
            .expect_err(name);
        match &err {
            LoadError::InitFailed { failure, .. } => {
                assert_eq!(failure.reason, Reason::Memory, "{err}");
                assert!(failure.message.contains(what), "{err}");
            }
            other => panic!("{name}: expected an init failure, got {other}"),
        }
    }
}

/// The transform world's types and exports, lifted from core instance `$i` with memory and
/// realloc from `$mem` (shared by the raw components below).
const TRANSFORM_EXPORTS: &str = r#"
  (type $input-batch' (record (field "data" (list u8)) (field "records" (list u8))
    (field "headers" (list u8)) (field "topics" (list string))))
  (export $input-batch "input-batch" (type $input-batch'))
  (type $input-error' (record (field "input" u32) (field "message" string)))
  (export $input-error "input-error" (type $input-error'))
  (type $output-batch' (record (field "data" (list u8)) (field "records" (list u8))
    (field "headers" (list u8)) (field "outputs" (list string)) (field "errors" (list $input-error))))
  (export $output-batch "output-batch" (type $output-batch'))
  (func (export "init") (param "config" (list (tuple string string))) (result (result (error string)))
    (canon lift (core func $i "init") (memory $mem "memory") (realloc (func $mem "realloc"))))
  (func (export "process") (param "batch" $input-batch) (result $output-batch)
    (canon lift (core func $i "process") (memory $mem "memory") (realloc (func $mem "realloc"))))
"#;

/// A raw component that imports `wasi:clocks/monotonic-clock.subscribe-duration` and
/// `wasi:io/poll.poll` (as core functions `$subscribe: i64 -> handle` and
/// `$poll: (list ptr, len, result ptr)`), and runs `attack` on a batch containing `bad`.
fn wasi_component(attack: &str) -> Vec<u8> {
    let text = format!(
        r#"
(component $C
  (import "wasi:io/poll@0.2.0" (instance $io
    (export "pollable" (type $p (sub resource)))
    (export "poll" (func (param "in" (list (borrow $p))) (result (list u32))))))
  (alias export $io "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $p))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p))))))
  (core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.const 1) (i32.shr_u
          (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
          (i32.const 16)))))))
      (local.get $p)))
  (core instance $mem (instantiate $libc))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $poll (canon lower (func $io "poll") (memory $mem "memory") (realloc (func $mem "realloc"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "wasi" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "wasi" "poll" (func $poll (param i32 i32 i32)))
    (func (export "init") (param i32 i32) (result i32)
      (i32.store (i32.const 1024) (i32.const 0))
      (i32.const 1024))
    (func $attack (local $n i32) {attack})
    (func (export "process") (param $data i32) (param $len i32) (param i32 i32 i32 i32 i32 i32) (result i32)
      (local $i i32)
      (block $done
        (loop $scan
          (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 2)) (local.get $len)))
          (if (i32.and
                (i32.and
                  (i32.eq (i32.load8_u (i32.add (local.get $data) (local.get $i))) (i32.const 98))
                  (i32.eq (i32.load8_u offset=1 (i32.add (local.get $data) (local.get $i))) (i32.const 97)))
                (i32.eq (i32.load8_u offset=2 (i32.add (local.get $data) (local.get $i))) (i32.const 100)))
            (then (call $attack) (br $done)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $scan)))
      (memory.fill (i32.const 2048) (i32.const 0) (i32.const 64))
      (i32.const 2048)))
  (core instance $i (instantiate $m
    (with "libc" (instance $mem))
    (with "wasi" (instance (export "subscribe" (func $subscribe)) (export "poll" (func $poll))))))
  {TRANSFORM_EXPORTS})
"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn polling_a_pollable_that_never_becomes_ready_is_cut_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().join("cache")).unwrap();
    // `poll` on a clock pollable for u64::MAX nanoseconds (the other path Rust's `sleep` does not
    // take: `poll` rather than `pollable.block`).
    let bytes = wasi_component(
        "(i32.store (i32.const 512) (call $subscribe (i64.const -1)))
         (call $poll (i32.const 512) (i32.const 1) (i32.const 520))",
    );
    let plugin = load(
        &runtime,
        &raw_spec(dir.path(), "poller", &bytes, limits(500)),
    );
    let mut chain = Chain::new(vec![plugin]);
    let started = Instant::now();
    let out = chain.process(&mut batch(&values())).unwrap();
    let took = started.elapsed();
    let failed: Vec<(u32, Reason)> = out.failures.iter().map(|f| (f.input, f.reason)).collect();
    assert_eq!(
        failed,
        vec![(BAD as u32, Reason::Deadline)],
        "{:?}",
        out.failures
    );
    assert!(took < Duration::from_millis(3 * 500 + 2000), "{took:?}");
}

#[test]
fn a_plugin_leaking_wasi_resources_hits_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().join("cache")).unwrap();
    // 200,000 clock pollables, never dropped (below wasmtime's own default cap of a million).
    let bytes = wasi_component(
        "(loop $l
           (drop (call $subscribe (i64.const 1000000000)))
           (local.set $n (i32.add (local.get $n) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $n) (i32.const 200000))))",
    );
    let plugin = load(
        &runtime,
        &raw_spec(dir.path(), "leaker", &bytes, limits(5000)),
    );
    let mut chain = Chain::new(vec![plugin]);
    let rss_before = status_kb("VmRSS:");
    let out = chain.process(&mut batch(&values())).unwrap();
    let rss_after = status_kb("VmRSS:");
    let failed: Vec<(u32, Reason)> = out.failures.iter().map(|f| (f.input, f.reason)).collect();
    assert_eq!(
        failed,
        vec![(BAD as u32, Reason::Memory)],
        "{:?}",
        out.failures
    );
    assert!(
        out.failures[0].message.contains(&format!(
            "more than {} WASI resources",
            sluice::testing::runtime::MAX_WASI_RESOURCES
        )),
        "{}",
        out.failures[0].message
    );
    assert!(
        rss_after < rss_before + 100 * 1024,
        "{rss_before} kB → {rss_after} kB"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 7: log budgets in bytes, per plugin, surviving traps.

/// Default `limits.log_bytes_per_second` and its burst (8 s).
const LOG_RATE: u64 = 32 * 1024;
const LOG_BURST: u64 = 8 * LOG_RATE;

/// The bytes of host log a run of `took` may carry: the burst, the rate, and 64 KiB for the
/// host's own lines.
fn log_bound(took: Duration) -> u64 {
    LOG_BURST + (LOG_RATE as f64 * took.as_secs_f64()) as u64 + 64 * 1024
}

#[test]
fn one_call_writing_152_mb_of_log_reaches_the_log_as_a_bounded_number_of_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = jsonl(dir.path(), "in.jsonl", &values());
    let (lines, stderr, took) = sluice_test(
        &cache,
        "hostile_runtime",
        &input,
        &["mode=log-flood", "mb=152"],
    );
    assert_eq!(lines.len(), RECORDS, "{lines:?}");
    assert!(
        (stderr.len() as u64) < log_bound(took),
        "{} bytes of log in {took:?}",
        stderr.len()
    );
    assert!(stderr.contains("more bytes dropped"), "{stderr}");
}

#[test]
fn a_plugin_that_logs_then_traps_on_every_record_gets_one_budget_for_all_its_instances() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let many: Vec<String> = (0..1000).map(|n| format!("ok-{n}")).collect();
    let input = jsonl(dir.path(), "in.jsonl", &many);
    let (lines, stderr, took) =
        sluice_test(&cache, "hostile_runtime", &input, &["mode=log-then-trap"]);
    assert_eq!(lines.len(), 1000);
    assert!(
        lines.iter().all(|l| l["reason"] == "trap"),
        "{:?}",
        lines[0]
    );
    // Bisection ran ~2000 calls of 200 lines each (~30 MB of log without a shared budget).
    assert!(
        (stderr.len() as u64) < log_bound(took),
        "{} bytes of log in {took:?}",
        stderr.len()
    );
    assert!(stderr.contains("dropped by the plugin's log budget"));
}

// ---------------------------------------------------------------------------------------------
// Item 15: exit() says so.

#[test]
fn a_plugin_calling_exit_is_a_trap_that_says_exit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().to_path_buf()).unwrap();
    let plugin = load(
        &runtime,
        &spec("hostile-runtime", "exit", Limits::default()),
    );
    let mut chain = Chain::new(vec![plugin]);
    let out = chain.process(&mut batch(&values())).unwrap();
    assert_eq!(out.failures.len(), 1);
    let f = &out.failures[0];
    assert_eq!((f.input, f.reason), (BAD as u32, Reason::Trap));
    // `std::process::exit(3)`: WASI 0.2's `exit` only carries success or failure (1).
    assert!(f.message.contains("called exit(1)"), "{}", f.message);
    assert_eq!(out.emitted().count(), RECORDS - 1);
}

// ---------------------------------------------------------------------------------------------
// Item 12: refused components are not cached.

fn cached_files(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("components")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn refused_components_leave_nothing_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = Runtime::new(cache.clone()).unwrap();
    let wrong = PluginSpec {
        name: "wrong".into(),
        path: common::plugin("wrong_world"),
        config: vec![],
        limits: Limits::default(),
        scope: "test".into(),
        tenant: String::new(),
    };
    assert!(matches!(
        runtime.load(&wrong),
        Err(LoadError::WrongWorld { .. })
    ));
    assert!(matches!(
        runtime.load(&spec("hostile", "init-panic", Limits::default())),
        Err(LoadError::InitFailed { .. })
    ));
    assert!(matches!(
        runtime.load(&spec("hostile-runtime", "sleep-init", limits(200))),
        Err(LoadError::InitFailed { .. })
    ));
    assert_eq!(cached_files(&cache), Vec::<PathBuf>::new());
    // An accepted one is cached, and a later refusal of the same component (another config)
    // keeps it.
    load(&runtime, &spec("hostile-runtime", "sleep", limits(200)));
    assert_eq!(cached_files(&cache).len(), 1);
    assert!(
        runtime
            .load(&spec("hostile-runtime", "sleep-init", limits(200)))
            .is_err()
    );
    assert_eq!(cached_files(&cache).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Item 5: compile bombs.

/// A component whose core module has `functions` functions, each with `locals` i64 locals all
/// live around a loop with `locals` back edges: a few hundred KB that takes Cranelift gigabytes.
fn compile_bomb(functions: usize, locals: usize) -> Vec<u8> {
    let mut body = String::new();
    for k in 1..=locals {
        body += &format!(
            "(local.set {k} (i64.add (local.get {k}) (i64.const 1))) (br_if $l (local.get 0))\n"
        );
    }
    let sum: String = (1..=locals)
        .map(|k| format!("(local.get {k}) i64.add\n"))
        .collect();
    let func = format!(
        "(func (param i32) (result i64) (local {}) (loop $l {body}) (i64.const 0) {sum})\n",
        "i64 ".repeat(locals)
    );
    let text = format!("(component (core module {}))", func.repeat(functions));
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_compile_bomb_is_refused_within_the_compile_limits_outside_the_host_process() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = compile_bomb(BOMB.0, BOMB.1);
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());
    let runtime = Runtime::with_compiler(
        dir.path().join("cache"),
        sluice::testing::runtime::Compiler::Child(env!("CARGO_BIN_EXE_sluice").into()),
    )
    .unwrap();
    let limits = Limits {
        compile_memory_mb: 512,
        compile_timeout_ms: 10_000,
        ..Limits::default()
    };
    let hwm_before = status_kb("VmHWM:");
    let started = Instant::now();
    let err = runtime
        .load(&raw_spec(dir.path(), "bomb", &bytes, limits))
        .expect_err("a compile bomb is refused");
    let took = started.elapsed();
    let hwm_after = status_kb("VmHWM:");
    let text = err.to_string();
    assert!(matches!(err, LoadError::Compile { .. }), "{text}");
    assert!(
        text.contains("limits.compile_memory_mb") || text.contains("limits.compile_timeout_ms"),
        "{text}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        hwm_after < hwm_before + 200 * 1024,
        "the host's peak memory went from {hwm_before} kB to {hwm_after} kB"
    );
    assert_eq!(
        cached_files(&dir.path().join("cache")),
        Vec::<PathBuf>::new()
    );
}

/// Functions and locals of the test's compile bomb.
const BOMB: (usize, usize) = (8, 2000);

#[test]
fn sluice_check_refuses_a_compile_bomb_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bomb.wasm"), compile_bomb(BOMB.0, BOMB.1)).unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9"
        [runtime]
        cache_dir = "cache"
        [[pipeline]]
        name = "p"
        inputs = ["in"]
        plugins = [{ path = "bomb.wasm" }]
        limits = { compile_memory_mb = 512, compile_timeout_ms = 10000 }
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        "",
    );
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("cannot be compiled"), "{text}");
    assert!(
        text.contains("limits.compile_memory_mb") || text.contains("limits.compile_timeout_ms"),
        "{text}"
    );
    assert!(took < Duration::from_secs(25), "{took:?}");
}
