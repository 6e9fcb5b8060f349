//! Tenant isolation benchmark (not a test): tenant B's throughput (passthrough, host saturated)
//! alone, then with tenant A's plugin spinning to its deadline on every record beside it, on the
//! same host. `cargo bench -p sluice --bench tenants`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Kafka, RunningHost, TestRecord, write_config};

const B_PIPELINE: &str = r#"
[[pipeline]]
name = "steady"
tenant = "globex"
inputs = ["globex.in"]
dead_letter_topic = "globex.dlq"
plugins = [{ path = "{plugin:passthrough}" }]
batch = { max_records = 1000, linger_ms = 5 }
[pipeline.outputs.main]
kafka_topic = "globex.out"
"#;

const A_PIPELINE: &str = r#"
[[pipeline]]
name = "spinner"
tenant = "acme"
inputs = ["acme.in"]
dead_letter_topic = "acme.dlq"
plugins = [{ path = "{plugin:hostile}", config = { mode = "loop" } }]
limits = { timeout_ms = 100 }
batch = { max_records = 100, linger_ms = 5 }
[pipeline.outputs.main]
kafka_topic = "acme.out"
"#;

fn b_throughput(with_spinner: bool) -> f64 {
    let kafka = Kafka::new(1);
    for t in [
        "acme.in",
        "acme.out",
        "acme.dlq",
        "globex.in",
        "globex.out",
        "globex.dlq",
    ] {
        kafka.topic(t, 4);
    }
    let mut text = String::from(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\n[[tenant]]\nname = \"acme\"\ntopic_prefixes = [\"acme.\"]\n[[tenant]]\nname = \"globex\"\ntopic_prefixes = [\"globex.\"]\n",
    );
    // B first: RunningHost's stats are the first pipeline's.
    text += B_PIPELINE;
    if with_spinner {
        text += A_PIPELINE;
        let bad: Vec<TestRecord> = (0..2000)
            .map(|n| (Some(format!("a{n}")), Some(b"bad".to_vec()), vec![]))
            .collect();
        kafka.produce("acme.in", None, &bad);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::start(&write_config(dir.path(), &text, &kafka.bootstrap()));
    let stats = host.stats.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let load = common::saturate(kafka.bootstrap(), "globex.in", stats.clone(), stop.clone());
    let out = || stats.records_out.load(Ordering::Relaxed);
    while out() < 20_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (t0, o0) = (Instant::now(), out());
    std::thread::sleep(Duration::from_secs(10));
    let rate = (out() - o0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    load.join().unwrap();
    let cpu_start = cpu_seconds();
    host.stop().unwrap();
    let a_dead = if with_spinner {
        kafka
            .read_until(&["acme.dlq"], Duration::from_secs(2), |r| r.len() >= 2000)
            .len()
    } else {
        0
    };
    println!(
        "tenant B{}: {rate:.0} records/s; process CPU {cpu_start:.1} s; tenant A records dead-lettered (limit:deadline): {a_dead}",
        if with_spinner {
            " with tenant A spinning"
        } else {
            " alone"
        }
    );
    rate
}

/// User + system CPU time of this process, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let alone = b_throughput(false);
    let beside = b_throughput(true);
    println!("tenant B with A spinning / B alone: {:.3}", beside / alone);
}
