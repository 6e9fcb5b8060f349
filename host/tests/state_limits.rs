//! State limits against a plugin that writes many small keys (issue 15): no single write is
//! large, so only the bytes kept in all counts. A pipeline's per-partition limit
//! (`limits.max_state_bytes`) and its tenant's quota across pipelines (`tenant.max_state_bytes`)
//! both hold; every record over them goes to the dead-letter topic as `limit:state`; none is
//! lost, and what is kept stays under both bounds on `/metrics`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Kafka, RunningHost, free_port, write_config};

const TOKEN: &str = "state-limits-operator-token";
const KEYS: usize = 400;
const PIPELINE_LIMIT: u64 = 1500;
const TENANT_QUOTA: u64 = 4000;

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[admin]
listen = "127.0.0.1:PORT"
operator_token = "TOKEN"

[[tenant]]
name = "acme"
topic_prefixes = ["acme."]
max_state_bytes = QUOTA

[[pipeline]]
name = "acme-a"
tenant = "acme"
inputs = ["acme.a"]
dead_letter_topic = "acme.dlq"
plugins = [{ path = "{plugin:key_counter}" }]
state = { changelog_topic = "acme.a-state" }
[pipeline.outputs.main]
kafka_topic = "acme.out-a"

[[pipeline]]
name = "acme-b"
tenant = "acme"
inputs = ["acme.b"]
dead_letter_topic = "acme.dlq"
plugins = [{ path = "{plugin:key_counter}" }]
state = { changelog_topic = "acme.b-state" }
limits = { max_state_bytes = LIMIT }
[pipeline.outputs.main]
kafka_topic = "acme.out-b"
"#;

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// The value of `sluice_state_bytes` for `pipeline`.
fn state_bytes(metrics: &str, pipeline: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("sluice_state_bytes{") && l.contains(&format!("pipeline=\"{pipeline}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no sluice_state_bytes for {pipeline} in:\n{metrics}")) as u64
}

#[test]
fn many_small_keys_stop_at_the_pipeline_limit_and_the_tenant_quota() {
    let kafka = Kafka::with_topics(&[
        ("acme.a", 1),
        ("acme.b", 1),
        ("acme.out-a", 1),
        ("acme.out-b", 1),
        ("acme.dlq", 1),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = CONFIG
        .replace("PORT", &port.to_string())
        .replace("TOKEN", TOKEN)
        .replace("QUOTA", &TENANT_QUOTA.to_string())
        .replace("LIMIT", &PIPELINE_LIMIT.to_string());
    let host = RunningHost::start(&write_config(dir.path(), &text, &kafka.bootstrap()));
    let keys: Vec<common::TestRecord> = (0..KEYS)
        .map(|i| (Some(format!("key-{i:04}")), Some(b"v".to_vec()), vec![]))
        .collect();
    // acme-b first, to its own limit; then acme-a, to what the tenant has left.
    kafka.produce("acme.b", None, &keys);
    let settled = kafka.read_until(&["acme.out-b", "acme.dlq"], Duration::from_secs(120), |r| {
        r.len() >= KEYS
    });
    assert_eq!(
        settled.len(),
        KEYS,
        "acme-b: one output or dead letter per input"
    );
    kafka.produce("acme.a", None, &keys);
    // Every input ends as an output (its count was kept) or a dead letter: none is lost.
    let all = kafka.read_until(
        &["acme.out-a", "acme.out-b", "acme.dlq"],
        Duration::from_secs(120),
        |r| r.len() >= 2 * KEYS,
    );
    assert_eq!(all.len(), 2 * KEYS, "one output or dead letter per input");
    let dead: Vec<_> = all.iter().filter(|r| r.topic == "acme.dlq").collect();
    assert!(!dead.is_empty(), "the limits were reached");
    for r in &dead {
        assert_eq!(
            r.header("sluice.error.reason"),
            Some("limit:state"),
            "{r:?}"
        );
        assert_eq!(r.value_str(), "v");
    }
    let dead_b = dead
        .iter()
        .filter(|r| r.header("sluice.pipeline") == Some("acme-b"))
        .count();
    assert!(dead_b > 0, "pipeline acme-b stopped at its own limit");
    let kept = |topic: &str| all.iter().filter(|r| r.topic == topic).count();
    assert!(
        kept("acme.out-a") > 0 && kept("acme.out-b") > 0,
        "keys were kept until the limits"
    );
    assert_eq!(
        kept("acme.out-b") + dead_b,
        KEYS,
        "acme-b: kept or dead-lettered"
    );
    // Every kept count is 1: a refused key left nothing behind to count on.
    assert!(
        all.iter()
            .filter(|r| r.topic != "acme.dlq")
            .all(|r| r.value_str() == "1")
    );

    // What is kept stays under the pipeline's limit and, for both, the tenant's quota.
    let metrics = scrape(port);
    let (a, b) = (
        state_bytes(&metrics, "acme-a"),
        state_bytes(&metrics, "acme-b"),
    );
    assert!(b > 0 && b <= PIPELINE_LIMIT, "acme-b keeps {b} bytes");
    assert!(a + b <= TENANT_QUOTA, "the tenant keeps {a} + {b} bytes");
    assert!(
        a + b > TENANT_QUOTA / 2,
        "the quota was used, not refused early: {a} + {b} bytes"
    );
    host.stop().unwrap();
}
