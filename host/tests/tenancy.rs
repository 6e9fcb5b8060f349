//! Tenants own names, not patterns: a tenant cannot subscribe to a regular expression that
//! reaches another tenant's topics, nor join another tenant's consumer group. `sluice check` and
//! `sluice run` refuse such configs naming the file, the key and the fix, and a pattern inside
//! the tenant's prefix reads that tenant's topics only.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Kafka, RunningHost, write_config};

/// Tenant `acme` copies `acme.in`; tenant `evil` (prefix `EVIL_PREFIX`) has a pipeline reading
/// `EVIL_INPUT` into `evil.out`, with `EVIL_EXTRA` keys.
const TENANTS: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[[tenant]]
name = "acme"
topic_prefixes = ["acme."]

[[tenant]]
name = "evil"
topic_prefixes = ["EVIL_PREFIX"]

[[pipeline]]
name = "acme-copy"
tenant = "acme"
inputs = ["acme.in"]
plugins = [{ path = "{plugin:passthrough}" }]
batch = { max_records = 10, linger_ms = 10 }
[pipeline.outputs.main]
kafka_topic = "acme.out"

[[pipeline]]
name = "evil-copy"
tenant = "evil"
inputs = ['EVIL_INPUT']
EVIL_EXTRA
plugins = [{ path = "{plugin:passthrough}" }]
batch = { max_records = 10, linger_ms = 10 }
[pipeline.outputs.main]
kafka_topic = "EVIL_OUTPUT"
"#;

fn tenants(prefix: &str, input: &str, extra: &str, output: &str) -> String {
    TENANTS
        .replace("EVIL_PREFIX", prefix)
        .replace("EVIL_INPUT", input)
        .replace("EVIL_EXTRA", extra)
        .replace("EVIL_OUTPUT", output)
}

#[test]
fn a_tenant_cannot_subscribe_to_a_pattern_or_group_outside_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // The attack of the issue: prefix `^`, then any pattern "starts with" it.
        (
            tenants("^", r"^acme\..*", "", "^out"),
            "tenant[1].topic_prefixes",
            "`^` is not a literal topic-name prefix",
        ),
        // A literal prefix, and a pattern outside it.
        (
            tenants("evil.", r"^acme\..*", "", "evil.out"),
            "pipeline[1].inputs[0]",
            "does not start with one of the tenant's prefixes",
        ),
        // Inside it, then out again through an alternative.
        (
            tenants("evil.", r"^evil\.in|^acme\.in", "", "evil.out"),
            "pipeline[1].inputs[0]",
            "has an alternative",
        ),
        // Joining acme's consumer group.
        (
            tenants(
                "evil.",
                "evil.in",
                r#"group_id = "acme.sluice-acme-copy""#,
                "evil.out",
            ),
            "pipeline[1].group_id",
            "consumer group `acme.sluice-acme-copy` is not in tenant `evil`'s namespace",
        ),
    ];
    for (text, key, message) in cases {
        let config = write_config(dir.path(), &text, "127.0.0.1:9");
        for command in ["check", "run"] {
            let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg(command)
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{command} must refuse: {text}");
            assert!(
                stderr.contains(&format!("{}: {key}: ", config.display()))
                    && stderr.contains(message)
                    && stderr.contains("e.g."),
                "{command}: {stderr}"
            );
        }
    }
}

#[test]
fn a_pattern_inside_the_tenants_prefix_reads_only_its_topics() {
    let kafka = Kafka::with_topics(&[
        ("acme.in", 2),
        ("acme.out", 1),
        ("evil.in", 1),
        ("evil.in2", 1),
        ("evil.out", 1),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &tenants("evil.", r"^evil\.in.*", "", "evil.out"),
        &kafka.bootstrap(),
    );
    let value = |topic: &str, i: usize| (None, Some(format!("{topic}-{i}").into_bytes()), vec![]);
    for topic in ["acme.in", "evil.in", "evil.in2"] {
        let records: Vec<common::TestRecord> = (0..30).map(|i| value(topic, i)).collect();
        kafka.produce(topic, None, &records);
    }
    let host = RunningHost::start(&config);
    let acme = kafka.read_count(&["acme.out"], 30, Duration::from_secs(60));
    let evil = kafka.read_count(&["evil.out"], 60, Duration::from_secs(60));
    // The group ids are the tenants' own: evil's is under its prefix.
    common::wait_until("evil's offsets are committed in its own group", || {
        kafka.committed("evil.sluice-evil-copy", "evil.in", 1) == vec![30]
    });
    host.stop().unwrap();
    assert_eq!(acme.len(), 30, "acme's records all reach acme's output");
    assert_eq!(evil.len(), 60, "evil's pattern reads both of its topics");
    assert!(
        evil.iter().all(|r| r.value_str().starts_with("evil.in")),
        "evil read another tenant's records: {:?}",
        evil.iter()
            .map(|r| r.value_str())
            .filter(|v| !v.starts_with("evil."))
            .collect::<Vec<_>>()
    );
}
