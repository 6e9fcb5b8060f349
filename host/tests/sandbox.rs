//! Hostile plugins and tenants, against the mock cluster with the host in-process: every limit is
//! enforced as a per-record error with its reason, the sandbox grants nothing, the host stays up
//! with bounded memory, and one tenant's spinning plugin does not stop another tenant's records.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Kafka, Record, RunningHost, TestRecord, write_config};

/// The hostile modes, the limits their pipeline runs with, the DLQ reason expected for the bad
/// record, and a piece of the message.
const CASES: &[(&str, &str, &str, &str)] = &[
    ("panic", "", "trap", "panic on a bad record"),
    ("loop", "", "limit:deadline", "deadline"),
    ("grow", "", "limit:memory", "memory limit"),
    ("recurse", "", "trap", ""),
    ("flood", "", "limit:memory", "memory limit"),
    (
        "burst",
        "max_output_records = 10,",
        "limit:output",
        "produced 100 records",
    ),
    ("loop", "fuel = 5000000,", "limit:fuel", "fuel"),
    ("read-file", "", "plugin-error", "read /etc/passwd: Err("),
    ("tcp", "", "plugin-error", "connect 127.0.0.1:9: Err("),
    ("env", "", "plugin-error", "HOME: Err(NotPresent)"),
    (
        "partial-words",
        "",
        "trap",
        "bytes, which is not a whole number of 4-byte words",
    ),
    (
        "span-outside",
        "",
        "trap",
        "record 0 points outside the data buffer",
    ),
];

const RECORDS: usize = 20;
const BAD: usize = 7;

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024
}

#[test]
fn every_hostile_plugin_is_contained_and_only_its_bad_record_is_dead_lettered() {
    let kafka = Kafka::new(1);
    let mut text = String::from("[kafka]\nbootstrap_servers = \"{bootstrap}\"\n");
    for (i, (mode, limits, _, _)) in CASES.iter().enumerate() {
        for t in ["in", "out", "dlq"] {
            kafka.topic(&format!("{t}-{i}"), 1);
        }
        text += &format!(
            r#"
            [[pipeline]]
            name = "hostile-{i}"
            inputs = ["in-{i}"]
            dead_letter_topic = "dlq-{i}"
            plugins = [{{ path = "{{plugin:hostile}}", config = {{ mode = "{mode}" }} }}]
            limits = {{ {limits} memory_mb = 32, timeout_ms = 300 }}
            batch = {{ max_records = {RECORDS}, linger_ms = 200 }}
            workers = 1
            [pipeline.outputs.main]
            kafka_topic = "out-{i}"
            "#
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &text, &kafka.bootstrap());
    let rss_before = rss_mb();
    let host = RunningHost::start(&config);
    for i in 0..CASES.len() {
        let records: Vec<TestRecord> = (0..RECORDS)
            .map(|n| {
                let value = if n == BAD {
                    "bad".to_string()
                } else {
                    format!("ok-{n}")
                };
                (Some(format!("k{n}")), Some(value.into_bytes()), vec![])
            })
            .collect();
        kafka.produce(&format!("in-{i}"), Some(0), &records);
    }
    let mut failures = Vec::new();
    for (i, (mode, limits, reason, message)) in CASES.iter().enumerate() {
        let dlq = kafka.read_count(&[&format!("dlq-{i}")], 1, Duration::from_secs(60));
        let out = kafka.read_count(&[&format!("out-{i}")], RECORDS - 1, Duration::from_secs(60));
        let case = format!("{mode} {limits}");
        let values: Vec<&str> = out.iter().map(Record::value_str).collect();
        let expected: Vec<String> = (0..RECORDS)
            .filter(|n| *n != BAD)
            .map(|n| format!("ok-{n}"))
            .collect();
        if values != expected {
            failures.push(format!(
                "{case}: neighbours not all delivered in order: {values:?}"
            ));
        }
        match dlq.as_slice() {
            [d] => {
                let got_reason = d.header("sluice.error.reason").unwrap_or_default();
                let got_message = d.header("sluice.error.message").unwrap_or_default();
                if d.value_str() != "bad" || got_reason != *reason || !got_message.contains(message)
                {
                    failures.push(format!(
                        "{case}: dead letter `{}` with reason `{got_reason}` / `{got_message}`, expected `{reason}` / `…{message}…`",
                        d.value_str()
                    ));
                }
                if d.header("sluice.source.offset") != Some(&BAD.to_string()) {
                    failures.push(format!(
                        "{case}: wrong source offset {:?}",
                        d.header("sluice.source.offset")
                    ));
                }
            }
            other => failures.push(format!(
                "{case}: expected exactly the bad record in the DLQ, got {other:?}"
            )),
        }
    }
    let rss_after = rss_mb();
    host.stop().expect("the host stays up and stops cleanly");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        rss_after < rss_before + 1024,
        "host memory stays bounded: {rss_before} MB before, {rss_after} MB after 1 GiB floods"
    );
}

#[test]
fn a_plugin_that_panics_in_init_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9"
        [[pipeline]]
        name = "p"
        inputs = ["in"]
        plugins = [{ path = "{plugin:hostile}", config = { mode = "init-panic" } }]
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        "",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        text.contains("failed in init: trap") && text.contains("panic in init"),
        "{text}"
    );
}

const TENANTS: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[tenant]]
name = "acme"
topic_prefixes = ["acme."]
[[tenant]]
name = "globex"
topic_prefixes = ["globex."]
max_records_per_second = RATE

[[pipeline]]
name = "spinner"
tenant = "acme"
inputs = ["acme.in"]
dead_letter_topic = "acme.dlq"
plugins = [{ path = "{plugin:hostile}", config = { mode = "loop" } }]
limits = { timeout_ms = 100 }
batch = { max_records = 5, linger_ms = 20 }
workers = 1
[pipeline.outputs.main]
kafka_topic = "acme.out"

[[pipeline]]
name = "steady"
tenant = "globex"
inputs = ["globex.in"]
dead_letter_topic = "globex.dlq"
plugins = [{ path = "{plugin:passthrough}" }]
[pipeline.outputs.main]
kafka_topic = "OUTPUT"
"#;

#[test]
fn a_spinning_tenant_does_not_stop_another_and_lands_in_its_own_dlq() {
    let kafka = Kafka::new(1);
    for t in [
        "acme.in",
        "acme.out",
        "acme.dlq",
        "globex.in",
        "globex.out",
        "globex.dlq",
    ] {
        kafka.topic(t, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = TENANTS
        .replace("RATE", "1000")
        .replace("OUTPUT", "globex.out");
    let config = write_config(dir.path(), &text, &kafka.bootstrap());
    let host = RunningHost::start(&config);
    let bad: Vec<TestRecord> = (0..10)
        .map(|n| (Some(format!("a{n}")), Some(b"bad".to_vec()), vec![]))
        .collect();
    kafka.produce("acme.in", None, &bad);
    const B: usize = 1500;
    let good: Vec<TestRecord> = (0..B)
        .map(|n| {
            (
                Some(format!("b{n}")),
                Some(format!("g-{n}").into_bytes()),
                vec![],
            )
        })
        .collect();
    let started = Instant::now();
    kafka.produce("globex.in", None, &good);
    let out = kafka.read_count(&["globex.out"], B, Duration::from_secs(60));
    let b_took = started.elapsed();
    let dlq = kafka.read_count(&["acme.dlq"], 10, Duration::from_secs(120));
    host.stop().expect("clean stop");

    assert_eq!(
        out.len(),
        B,
        "all of tenant B's records arrive while A spins"
    );
    assert_eq!(dlq.len(), 10, "all of A's records land in A's DLQ");
    assert!(
        dlq.iter()
            .all(|r| r.header("sluice.error.reason") == Some("limit:deadline"))
    );
    assert!(
        kafka
            .read_until(
                &["acme.out", "globex.dlq"],
                Duration::from_millis(300),
                |r| !r.is_empty()
            )
            .is_empty()
    );
    // globex's quota is 1000 records/s with a one-second burst: 1500 records need ≥ 0.5 s.
    assert!(
        b_took >= Duration::from_millis(450),
        "the records-per-second quota is enforced: {b_took:?}"
    );
}

#[test]
fn a_pipeline_naming_another_tenants_topic_is_rejected_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = TENANTS
        .replace("RATE", "1000")
        .replace("OUTPUT", "acme.stolen");
    let config = write_config(dir.path(), &text, "127.0.0.1:9");
    for command in ["check", "run"] {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg(command)
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{command} must refuse");
        assert!(
            text.contains("pipeline[1].outputs.main.kafka_topic")
                && text.contains("topic `acme.stolen` belongs to tenant `acme`, not to this pipeline's tenant `globex`"),
            "{command}: {text}"
        );
    }
}
