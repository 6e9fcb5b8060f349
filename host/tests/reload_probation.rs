//! Probation that sees more than rejections, and rollbacks that only ever return to a version
//! that passed probation, against the mock cluster with the host in-process:
//! - A → B (rejects 30%, on probation) → C (bad): C is rolled back to A, never to B, and B never
//!   runs without its shadow (nothing is dead-lettered);
//! - a version that passed is kept until its successor passes, and the operator can roll back to
//!   it through the admin API (`409` when there is nothing before);
//! - a version that drops every record, or sends records to another output, is a regression:
//!   rolled back, with every record served by the previous version meanwhile;
//! - a plugin whose in-memory state goes bad (it traps once it has seen N records, whatever the
//!   record) is reported, never blamed on a record, and fails its probation.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Kafka, Load, Record, RunningHost, free_port, plugin, wait_until, write_config};
use sluice::testing::runtime::content_version;

const PARTITIONS: i32 = 3;
const OPERATOR: &str = "operator-secret-0123456789";
const ACME: &str = "acme-secret-0123456789abcd";
const GLOBEX: &str = "globex-secret-0123456789ab";

fn label_of(path: &Path) -> String {
    format!("live@{}", content_version(&std::fs::read(path).unwrap()))
}

/// A pipeline `hot` of tenant `acme` reading `acme.in`, whose only plugin is `dir/live.wasm`, a
/// copy of `initial`, with `plugin_config` (TOML inline table body) and `reload` (the
/// `reload = {...}` body); outputs `main` (`acme.out`, the default) and `other` (`acme.other`).
/// Returns the config path and the admin port.
fn setup(
    kafka: &Kafka,
    dir: &Path,
    initial: &Path,
    plugin_config: &str,
    reload: &str,
) -> (PathBuf, u16) {
    for (t, p) in [
        ("acme.in", PARTITIONS),
        ("acme.out", PARTITIONS),
        ("acme.other", 1),
        ("acme.dlq", 1),
    ] {
        kafka.topic(t, p);
    }
    let live = dir.join("live.wasm");
    std::fs::copy(initial, &live).unwrap();
    let port = free_port();
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "{{bootstrap}}"
        [runtime]
        reload_debounce_ms = 100
        [admin]
        listen = "127.0.0.1:{port}"
        operator_token = "{OPERATOR}"
        [[tenant]]
        name = "acme"
        topic_prefixes = ["acme."]
        admin_token = "{ACME}"
        [[tenant]]
        name = "globex"
        topic_prefixes = ["globex."]
        admin_token = "{GLOBEX}"
        [[pipeline]]
        name = "hot"
        tenant = "acme"
        inputs = ["acme.in"]
        dead_letter_topic = "acme.dlq"
        default_output = "main"
        plugins = [{{ path = "{}", config = {{ {plugin_config} }} }}]
        batch = {{ max_records = 50, linger_ms = 10 }}
        reload = {{ {reload} }}
        [pipeline.outputs.main]
        kafka_topic = "acme.out"
        [pipeline.outputs.other]
        kafka_topic = "acme.other"
        "#,
        live.display()
    );
    (write_config(dir, &text, &kafka.bootstrap()), port)
}

fn start_under_load(kafka: &Kafka, config: &Path, label: &str) -> (RunningHost, Load) {
    let host = RunningHost::start(config);
    let load = Load::start(
        &kafka.bootstrap(),
        "acme.in",
        PARTITIONS,
        20,
        Duration::from_millis(10),
    );
    let seen = kafka.read_until(&["acme.out"], Duration::from_secs(60), |r| {
        r.iter().any(|r| r.header("sluice.version") == Some(label))
    });
    assert!(
        seen.iter()
            .any(|r| r.header("sluice.version") == Some(label)),
        "no output of {label} within 60 s"
    );
    (host, load)
}

/// Stops the load, checks that every input has exactly one output on `acme.out` (none lost,
/// none duplicated), that nothing went to `acme.other` or the DLQ, and returns the outputs.
fn finish(kafka: &Kafka, host: RunningHost, load: Load) -> Vec<Record> {
    let produced = load.stop();
    let total: u64 = produced.iter().sum();
    let outputs = kafka.read_count(&["acme.out"], total as usize, Duration::from_secs(60));
    host.stop().expect("clean stop");
    assert_eq!(outputs.len() as u64, total, "one output per input");
    let mut by_partition: HashMap<usize, Vec<u64>> = HashMap::new();
    for r in &outputs {
        let p: usize = r.header("p").unwrap().parse().unwrap();
        by_partition
            .entry(p)
            .or_default()
            .push(r.header("seq").unwrap().parse().unwrap());
    }
    for (p, seqs) in by_partition.iter_mut() {
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..produced[*p]).collect();
        assert_eq!(*seqs, expected, "partition {p}: every input once");
    }
    let stray = kafka.read_until(
        &["acme.other", "acme.dlq"],
        Duration::from_millis(500),
        |r| !r.is_empty(),
    );
    assert!(
        stray.is_empty(),
        "nothing reached the other output or the DLQ: {:?}",
        stray.first()
    );
    outputs
}

/// The last output of every source partition carries `label`.
fn assert_last_served_by(outputs: &[Record], label: &str) {
    let mut last: HashMap<&str, (u64, &str)> = HashMap::new();
    for r in outputs {
        let seq: u64 = r.header("seq").unwrap().parse().unwrap();
        let entry = last.entry(r.header("p").unwrap()).or_insert((0, ""));
        if seq >= entry.0 {
            *entry = (seq, r.header("sluice.version").unwrap());
        }
    }
    for (p, (_, v)) in last {
        assert_eq!(
            v, label,
            "partition {p}: the last records are served by {label}"
        );
    }
}

#[test]
fn a_rollback_never_returns_to_a_version_that_did_not_pass_probation() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    // B rejects 30% (tolerated by max_failure_ratio 0.5 over a window the test never reaches);
    // C drops every record (no divergence tolerated).
    let (config, _) = setup(
        &kafka,
        dir.path(),
        &a,
        r#"reload_mode = "reject-share""#,
        "probation_records = 1000000, max_failure_ratio = 0.5, max_divergence_ratio = 0.0",
    );
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, &label_a);
    let chain = host.chains[0].clone();

    std::fs::write(&live, std::fs::read(plugin("hostile_reload")).unwrap()).unwrap();
    wait_until("B published", || {
        chain.stats.swaps.load(Ordering::Relaxed) >= 1
    });
    assert!(chain.current().on_probation(), "B is on probation");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        chain.stats.rollbacks.load(Ordering::Relaxed),
        0,
        "B is tolerated"
    );

    std::fs::write(&live, std::fs::read(plugin("drop_all")).unwrap()).unwrap();
    wait_until("C rolled back", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    let current = chain.current();
    assert_eq!(
        current.label.as_ref(),
        label_a,
        "C is rolled back to A, the last version that passed probation, not to B"
    );
    assert!(!current.on_probation());
    // Keep records flowing on A: B, had it been restored without probation, would now
    // dead-letter 30% of them.
    std::thread::sleep(Duration::from_secs(1));
    let outputs = finish(&kafka, host, load);
    let label_b = label_of(&plugin("hostile_reload"));
    for r in &outputs {
        let v = r.header("sluice.version").unwrap();
        assert!(
            v == label_a || v == label_b,
            "outputs come from A, or from B on batches it served cleanly: {v}"
        );
    }
    assert_last_served_by(&outputs, &label_a);
}

#[test]
fn a_passed_version_is_kept_for_rollbacks_and_the_operator_can_roll_back() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let b = plugin("poison"); // forwards every record (nothing is `poison` or `trap`)
    let (config, port) = setup(
        &kafka,
        dir.path(),
        &a,
        r#"poison = "never""#,
        "probation_records = 300",
    );
    let live = dir.path().join("live.wasm");
    let (label_a, label_b) = (label_of(&a), label_of(&b));
    let (host, load) = start_under_load(&kafka, &config, &label_a);
    let chain = host.chains[0].clone();
    let rollback =
        |token: Option<&str>| common::http(port, "POST", "/api/pipelines/hot/rollback", token, b"");

    // Nothing before the version loaded at start.
    let (status, body) = rollback(Some(OPERATOR));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("nothing to roll back to"), "{body}");

    std::fs::write(&live, std::fs::read(&b).unwrap()).unwrap();
    wait_until("B published", || {
        chain.stats.swaps.load(Ordering::Relaxed) >= 1
    });
    wait_until("B passed probation", || !chain.current().on_probation());
    assert_eq!(chain.current().label.as_ref(), label_b);

    // C drops everything: rolled back to B, which passed, not to A.
    std::fs::write(&live, std::fs::read(plugin("drop_all")).unwrap()).unwrap();
    wait_until("C rolled back", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(chain.current().label.as_ref(), label_b, "back to B");

    // Refused callers change nothing.
    assert_eq!(rollback(None).0, 401);
    assert_eq!(rollback(Some(GLOBEX)).0, 403, "another tenant's token");
    assert_eq!(chain.current().label.as_ref(), label_b);

    // B passed, but the operator (here the tenant) wants A back.
    let (status, body) = rollback(Some(ACME));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["version"], label_a.as_str(), "{body}");
    assert_eq!(chain.current().label.as_ref(), label_a);
    assert_eq!(chain.stats.rollbacks.load(Ordering::Relaxed), 2);
    let (status, body) = rollback(Some(OPERATOR));
    assert_eq!(status, 409, "A is the first version: {body}");

    // Records keep flowing, on A.
    std::thread::sleep(Duration::from_millis(500));
    let outputs = finish(&kafka, host, load);
    for r in &outputs {
        let v = r.header("sluice.version").unwrap();
        assert!(v == label_a || v == label_b, "unexpected version {v}");
    }
    assert_last_served_by(&outputs, &label_a);
}

#[test]
fn a_version_that_drops_every_record_is_rolled_back_and_no_record_is_lost() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let (config, _) = setup(
        &kafka,
        dir.path(),
        &a,
        r#"reload_mode = "drop-all""#,
        "probation_records = 600",
    );
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, &label_a);
    let chain = host.chains[0].clone();
    std::fs::write(&live, std::fs::read(plugin("hostile_reload")).unwrap()).unwrap();
    wait_until("rollback", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(chain.stats.swaps.load(Ordering::Relaxed), 1);
    assert_eq!(chain.current().label.as_ref(), label_a);
    let outputs = finish(&kafka, host, load);
    assert!(
        outputs
            .iter()
            .all(|r| r.header("sluice.version") == Some(label_a.as_str())),
        "every record was served by the previous version"
    );
}

#[test]
fn a_version_that_sends_records_to_another_output_is_rolled_back() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    // `other` is declared, so the new version's records are routable: only the comparison with
    // the previous version sees that they go elsewhere.
    let (config, _) = setup(
        &kafka,
        dir.path(),
        &a,
        r#"reload_mode = "reroute", reroute_to = "other""#,
        "probation_records = 600",
    );
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, &label_a);
    let chain = host.chains[0].clone();
    std::fs::write(&live, std::fs::read(plugin("hostile_reload")).unwrap()).unwrap();
    wait_until("rollback", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(chain.current().label.as_ref(), label_a);
    let outputs = finish(&kafka, host, load);
    assert!(
        outputs
            .iter()
            .all(|r| r.header("sluice.version") == Some(label_a.as_str())),
        "every record was served by the previous version"
    );
}

fn state_failure_metric() -> f64 {
    let text = sluice::testing::telemetry::metrics_handle()
        .unwrap()
        .render();
    text.lines()
        .filter(|l| {
            l.starts_with("sluice_plugin_state_failures_total{")
                && l.contains("pipeline=\"stateful\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_plugin_whose_state_goes_bad_is_reported_not_blamed_on_a_record() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    // Traps on every record once an instance has seen 30, whatever the record; no probation.
    let bad = plugin("hostile_reload");
    let (config, _) = setup(
        &kafka,
        dir.path(),
        &bad,
        r#"reload_mode = "trap-after", after_records = "30""#,
        "probation_records = 0",
    );
    // A name of its own: the metric is process-wide, shared with the other tests.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(r#"name = "hot""#, r#"name = "stateful""#),
    )
    .unwrap();
    let (host, load) = start_under_load(&kafka, &config, &label_of(&bad));
    let chain = host.chains[0].clone();
    wait_until("state failures reported", || {
        chain.stats.state_failures.load(Ordering::Relaxed) >= 3
    });
    assert!(state_failure_metric() >= 3.0, "counted in the metric");
    // No record is dead-lettered for it (finish checks the DLQ) and none is lost.
    finish(&kafka, host, load);
}

#[test]
fn a_version_whose_state_goes_bad_fails_its_probation() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let (config, _) = setup(
        &kafka,
        dir.path(),
        &a,
        r#"reload_mode = "trap-after", after_records = "30""#,
        "probation_records = 5000",
    );
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, &label_a);
    let chain = host.chains[0].clone();
    std::fs::write(&live, std::fs::read(plugin("hostile_reload")).unwrap()).unwrap();
    wait_until("rollback", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    assert!(chain.stats.state_failures.load(Ordering::Relaxed) >= 1);
    assert_eq!(chain.current().label.as_ref(), label_a);
    let outputs = finish(&kafka, host, load);
    let label_bad = label_of(&plugin("hostile_reload"));
    for r in &outputs {
        let v = r.header("sluice.version").unwrap();
        assert!(v == label_a || v == label_bad, "unexpected version {v}");
    }
    assert_last_served_by(&outputs, &label_a);
}
