//! Hot-swap benchmark (not a test): against the mock cluster, with the host in-process.
//!
//! 1. Swap latency: under a light steady load, the time from writing a new plugin file to the
//!    first output record carrying the new version (includes the reload debounce).
//! 2. Throughput around a swap: with a backlog the host works through flat out, records/s in the
//!    10 s around a swap divided by records/s in the 10 s before it.
//!
//! `cargo bench -p sluice --bench reload` (plugins are built first).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Kafka, Load, RunningHost, plugin, write_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::testing::runtime::content_version;

const PARTITIONS: i32 = 4;

fn config(kafka: &Kafka, dir: &Path, live: &Path, debounce_ms: u64) -> std::path::PathBuf {
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "{{bootstrap}}"
        [runtime]
        reload_debounce_ms = {debounce_ms}
        [[pipeline]]
        name = "bench"
        inputs = ["in"]
        dead_letter_topic = "dlq"
        plugins = [{{ path = "{}" }}]
        batch = {{ max_records = 1000, linger_ms = 5 }}
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        live.display()
    );
    write_config(dir, &text, &kafka.bootstrap())
}

fn label(path: &Path) -> String {
    format!("live@{}", content_version(&std::fs::read(path).unwrap()))
}

fn swap_latency(a: &Path, b: &Path) {
    let kafka = Kafka::with_topics(&[("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(a, &live).unwrap();
    let debounce = 100;
    let host = RunningHost::start(&config(&kafka, dir.path(), &live, debounce));
    let load = Load::start(
        &kafka.bootstrap(),
        "in",
        PARTITIONS,
        10,
        Duration::from_millis(5),
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", "bench-tail")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("out", p, Offset::End).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut samples = Vec::new();
    let mut publish = Vec::new();
    let mut files = [b, a].into_iter().cycle();
    std::thread::sleep(Duration::from_secs(5)); // group joined, steady flow
    for _ in 0..6 {
        let next = files.next().unwrap();
        let want = label(next);
        let bytes = std::fs::read(next).unwrap();
        let written = Instant::now();
        let swaps_before = host.chains[0].stats.swaps.load(Ordering::Relaxed);
        std::fs::write(&live, &bytes).unwrap();
        let mut published = None;
        loop {
            if published.is_none()
                && host.chains[0].stats.swaps.load(Ordering::Relaxed) > swaps_before
            {
                published = Some(written.elapsed());
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10))
                && m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "sluice.version")
                        .and_then(|h| h.value)
                }) == Some(want.as_bytes())
            {
                samples.push(written.elapsed());
                publish.push(published.expect("published before its first output"));
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(60),
                "swap never seen"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    load.stop();
    host.stop().unwrap();
    samples.sort();
    publish.sort();
    println!(
        "swap published (file written → new version live in the workers), debounce {debounce} ms: median {:.0} ms",
        publish[publish.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "swap latency (file written → first output of the new version), debounce {debounce} ms: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} swaps",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

/// `bytes` with a custom section appended: the same code under another version (content hash),
/// so a swap between the two costs a full compile without changing behaviour.
fn other_version(bytes: &[u8]) -> Vec<u8> {
    let name = b"sluice-bench";
    let payload = Instant::now().elapsed().as_nanos().to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // fits one LEB128 byte
    out.extend_from_slice(&section);
    out
}

fn throughput_around_swap(name: &str, a: &Path) {
    let kafka = Kafka::with_topics(&[("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    let bytes = std::fs::read(a).unwrap();
    std::fs::write(&live, &bytes).unwrap();
    let host = RunningHost::start(&config(&kafka, dir.path(), &live, 100));
    let chain = host.chains[0].clone();
    let swaps = || chain.stats.swaps.load(Ordering::Relaxed);
    let stats = host.stats.clone();
    let out = || stats.records_out.load(Ordering::Relaxed);
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = common::saturate(kafka.bootstrap(), "in", stats.clone(), stop_load.clone());
    // Warm up until the flow is steady (group joined, every worker busy).
    while out() < 20_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    let o0 = out();
    std::thread::sleep(Duration::from_secs(10));
    let steady = (out() - o0) as f64 / t0.elapsed().as_secs_f64();
    // Around the swap: from 5 s before the file is written to 5 s after the new version is
    // published (10 s plus the time it takes to prepare the new version).
    let t1 = Instant::now();
    let o1 = out();
    std::thread::sleep(Duration::from_secs(5));
    let written = t1.elapsed();
    std::fs::write(&live, other_version(&bytes)).unwrap();
    while swaps() < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let published = t1.elapsed() - written;
    std::thread::sleep(Duration::from_secs(5));
    let window = t1.elapsed();
    let around = (out() - o1) as f64 / window.as_secs_f64();
    stop_load.store(true, Ordering::Release);
    let produced = load.join().unwrap();
    host.stop().unwrap();
    println!(
        "{name} ({:.1} MB): steady {steady:.0} records/s; {:.1} s around the swap {around:.0} records/s; ratio {:.3}; new version published {:.2} s after the write ({produced} records offered)",
        bytes.len() as f64 / 1e6,
        window.as_secs_f64(),
        around / steady,
        published.as_secs_f64()
    );
}

/// Builds the Python identity plugin of plugins/testing/python-raw-identity with componentize-py
/// (installed from PyPI when missing).
fn python_identity() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let src = repo.join("plugins/testing/python-raw-identity");
    let out = std::env::temp_dir().join("sluice-bench-py_identity.wasm");
    let have = std::process::Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        let ok = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "componentize-py==0.25.1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "installing componentize-py from PyPI failed");
    }
    let status = std::process::Command::new("componentize-py")
        .current_dir(&src)
        .args([
            "-d",
            repo.join("wit").to_str().unwrap(),
            "-w",
            "transform",
            "componentize",
            "app",
            "-o",
            out.to_str().unwrap(),
        ])
        .status()
        .expect("running componentize-py");
    assert!(status.success(), "building the Python identity plugin");
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`: nothing to list
    }
    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let a = plugin("passthrough");
    let b = plugin("poison");
    swap_latency(&a, &b);
    throughput_around_swap("Rust passthrough", &a);
    throughput_around_swap("Python identity", &python_identity());
}
