//! Exactly-once and scale-out benchmark (not a test), with `sluice run` as separate processes on a
//! mock cluster: throughput of an exactly-once pipeline divided by the same pipeline
//! at-least-once, and of two processes in one group divided by one, on an 8-partition topic of
//! 100-byte records through a passthrough plugin, batches of 1000.
//! `cargo bench -p sluice --bench exactly_once`.
//!
//! Throughput is read from the group's committed offsets (the transactions' offsets in
//! exactly-once mode), between 20% and 90% of a preloaded backlog, so process start and the
//! group join do not count.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{HostProcess, Kafka, TestRecord, write_config};

const PARTITIONS: i32 = 8;
/// Per partition: below the mock cluster's 5 MB per partition, which it would trim.
const PER_PARTITION: usize = 25_000;

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[pipeline]]
name = "bench"
inputs = ["in"]
delivery = "DELIVERY"
dead_letter_topic = "dlq"
plugins = [{ path = "{plugin:passthrough}" }]
batch = { max_records = 1000, linger_ms = 20 }
commit_interval_ms = 100
workers = 2
[pipeline.outputs.main]
kafka_topic = "out"
"#;

/// Records per second for `processes` processes in `delivery` mode.
fn throughput(delivery: &str, processes: usize) -> f64 {
    let kafka = Kafka::new(1);
    for (t, p) in [("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)] {
        kafka.topic(t, p);
    }
    let value = vec![b'x'; 100];
    for p in 0..PARTITIONS {
        let records: Vec<TestRecord> = (0..PER_PARTITION)
            .map(|i| (Some(format!("k{i}")), Some(value.clone()), vec![]))
            .collect();
        kafka.produce("in", Some(p), &records);
    }
    let total = (PER_PARTITION * PARTITIONS as usize) as i64;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &CONFIG.replace("DELIVERY", delivery),
        &kafka.bootstrap(),
    );
    let hosts: Vec<HostProcess> = (0..processes)
        .map(|i| HostProcess::start(&config, &format!("bench-{i}")))
        .collect();
    let committed = || -> i64 {
        kafka
            .committed("sluice-bench", "in", PARTITIONS)
            .iter()
            .map(|o| (*o).max(0))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mark = |share: f64| -> (Instant, i64) {
        loop {
            let c = committed();
            if c as f64 >= share * total as f64 {
                return (Instant::now(), c);
            }
            assert!(
                Instant::now() < deadline,
                "{delivery} × {processes}: only {c} of {total} committed within 300 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (t0, c0) = mark(0.2);
    let (t1, c1) = mark(0.9);
    let rate = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    for host in hosts {
        host.terminate();
    }
    println!("{delivery}, {processes} process(es): {rate:.0} records/s");
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let at_least_once = throughput("at-least-once", 1);
    let exactly_once = throughput("exactly-once", 1);
    let two = throughput("at-least-once", 2);
    println!(
        "exactly-once / at-least-once: {:.3}",
        exactly_once / at_least_once
    );
    println!(
        "two processes / one (at-least-once; both share this machine's 2 cores with the mock \
         cluster): {:.3}",
        two / at_least_once
    );
}
