//! Hostile plugins against the host's `json` interface, whose calls run in the host: outside the
//! guest's epoch deadline and memory cap. Each attack must be stopped with `limit:memory` or
//! `limit:deadline` (the one record dead-lettered, its neighbours through), within the plugin's
//! deadline and without the host's memory growing past the plugin's cap.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::testing::chain::Chain;
use sluice::testing::config::Limits;
use sluice::testing::runtime::{Plugin, PluginSpec, Reason, Runtime};
use sluice_abi::InputBatch;

const RECORDS: usize = 20;
const BAD: usize = 7;

fn batch() -> InputBatch {
    let mut b = InputBatch::default();
    let topic = b.topic_index("in");
    for n in 0..RECORDS {
        let v = if n == BAD {
            "bad".to_string()
        } else {
            format!("ok-{n}")
        };
        b.push(
            None,
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

fn load(runtime: &Arc<Runtime>, mode: &str, limits: Limits) -> Arc<Plugin> {
    let spec = PluginSpec {
        name: "hostile_json".into(),
        path: common::plugin("hostile_json"),
        config: vec![("mode".into(), mode.into())],
        limits,
        scope: "test".into(),
        tenant: String::new(),
    };
    runtime.load(&spec).unwrap()
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `mode` on a batch with one `bad` record: only that record fails, with `reason`, within
/// `within`, and the host's peak memory stays below `cap_mb` more than before.
fn attack(mode: &str, limits: Limits, reason: Reason, within: Duration) -> String {
    // One attack at a time: the memory bound is read off the process's RSS, which the test
    // threads share.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().to_path_buf()).unwrap();
    let cap_mb = limits.memory_mb;
    let plugin = load(&runtime, mode, limits);
    let mut chain = Chain::new(vec![plugin]);
    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let out = chain.process(&mut batch()).unwrap();
    let took = started.elapsed();
    let rss_after = status_kb("VmRSS:");
    let failed: Vec<(u32, Reason)> = out.failures.iter().map(|f| (f.input, f.reason)).collect();
    assert_eq!(
        failed,
        vec![(BAD as u32, reason)],
        "{mode}: {:?}",
        out.failures
    );
    assert_eq!(
        out.emitted().count(),
        RECORDS - 1,
        "{mode}: the neighbours are forwarded"
    );
    assert!(took < within, "{mode} took {took:?}");
    assert!(
        rss_after < rss_before + 3 * cap_mb * 1024,
        "{mode} took the host from {rss_before} kB to {rss_after} kB under a {cap_mb} MB cap"
    );
    out.failures[0].message.clone()
}

#[test]
fn a_read_with_a_million_paths_is_a_memory_limit() {
    let limits = Limits {
        memory_mb: 64,
        ..Limits::default()
    };
    let message = attack("paths", limits, Reason::Memory, Duration::from_secs(20));
    assert!(message.contains("json.read"), "{message}");
    assert!(message.contains("limits.memory_mb"), "{message}");
}

#[test]
fn a_write_of_a_terabyte_is_a_memory_limit() {
    let limits = Limits {
        memory_mb: 64,
        ..Limits::default()
    };
    let message = attack(
        "write-bytes",
        limits,
        Reason::Memory,
        Duration::from_secs(20),
    );
    assert!(message.contains("json.write"), "{message}");
}

#[test]
fn reading_one_document_millions_of_times_stops_at_the_deadline() {
    let limits = Limits {
        timeout_ms: 300,
        ..Limits::default()
    };
    // Bisection runs the bad record about twice more (see sandbox_runtime.rs): a few deadlines.
    let message = attack(
        "spin-read",
        limits,
        Reason::Deadline,
        Duration::from_secs(10),
    );
    assert!(message.contains("json.read"), "{message}");
    assert!(message.contains("limits.timeout_ms"), "{message}");
}

#[test]
fn writing_one_document_millions_of_times_stops_at_the_deadline() {
    let limits = Limits {
        timeout_ms: 300,
        ..Limits::default()
    };
    let message = attack(
        "spin-write",
        limits,
        Reason::Deadline,
        Duration::from_secs(10),
    );
    assert!(message.contains("json.write"), "{message}");
}

#[test]
fn a_document_nested_a_million_deep_is_invalid_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path().to_path_buf()).unwrap();
    let plugin = load(&runtime, "deep", Limits::default());
    let out = plugin.instantiate().unwrap().process(&mut batch()).unwrap();
    assert_eq!(out.len(), RECORDS);
    assert_eq!(out.record(BAD).value, Some(&b"0"[..]));
}
