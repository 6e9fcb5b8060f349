//! Hot reload under load, against the mock cluster with the host in-process: swaps lose and
//! duplicate nothing and never go back in time on a partition; bad files leave the running version
//! serving; a version that fails on its probation is rolled back with no record dead-lettered.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Kafka, Load, Record, RunningHost, plugin, wait_until, write_config};
use sluice::testing::reload::Offer;
use sluice::testing::runtime::content_version;

const PARTITIONS: i32 = 3;

fn label_of(path: &Path) -> String {
    format!("live@{}", content_version(&std::fs::read(path).unwrap()))
}

/// A pipeline whose only plugin is `dir/live.wasm`, a copy of `initial`.
fn setup(kafka: &Kafka, dir: &Path, initial: &Path, extra: &str) -> std::path::PathBuf {
    for (t, p) in [("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)] {
        kafka.topic(t, p);
    }
    let live = dir.join("live.wasm");
    std::fs::copy(initial, &live).unwrap();
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "{{bootstrap}}"
        [runtime]
        reload_debounce_ms = 100
        [[pipeline]]
        name = "hot"
        inputs = ["in"]
        dead_letter_topic = "dlq"
        plugins = [{{ path = "{}", config = {{ mode = "error-all", poison = "never" }} }}]
        batch = {{ max_records = 50, linger_ms = 10 }}
        {extra}
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        live.display()
    );
    write_config(dir, &text, &kafka.bootstrap())
}

fn wait_for_label(kafka: &Kafka, label: &str) {
    let seen = kafka.read_until(&["out"], Duration::from_secs(60), |r| {
        r.iter().any(|r| r.header("sluice.version") == Some(label))
    });
    assert!(
        seen.iter()
            .any(|r| r.header("sluice.version") == Some(label)),
        "no output with version {label} within 60 s"
    );
}

/// Every input `(p, seq)` has exactly one output; returns the outputs by source partition in
/// source order.
fn exactly_once(outputs: &[Record], produced: &[u64]) -> HashMap<usize, Vec<Record>> {
    let total: u64 = produced.iter().sum();
    assert_eq!(outputs.len() as u64, total, "one output per input");
    let mut by_partition: HashMap<usize, Vec<Record>> = HashMap::new();
    for r in outputs {
        let p: usize = r.header("p").unwrap().parse().unwrap();
        by_partition.entry(p).or_default().push(r.clone());
    }
    for (p, records) in by_partition.iter_mut() {
        records.sort_by_key(|r| r.header("seq").unwrap().parse::<u64>().unwrap());
        let seqs: Vec<u64> = records
            .iter()
            .map(|r| r.header("seq").unwrap().parse().unwrap())
            .collect();
        let expected: Vec<u64> = (0..produced[*p]).collect();
        assert_eq!(seqs, expected, "partition {p}: every input once");
    }
    by_partition
}

/// Starts the host on `config` with records flowing into `in`, and waits until `label` serves.
fn start_under_load(
    kafka: &Kafka,
    config: &Path,
    per_tick: usize,
    label: &str,
) -> (RunningHost, Load) {
    let host = RunningHost::start(config);
    let load = Load::start(
        &kafka.bootstrap(),
        "in",
        PARTITIONS,
        per_tick,
        Duration::from_millis(10),
    );
    wait_for_label(kafka, label);
    (host, load)
}

/// Stops the load, reads every output, stops the host, and checks each input has exactly one
/// output; returns the outputs by source partition in source order, and all of them.
fn finish(
    kafka: &Kafka,
    host: RunningHost,
    load: Load,
) -> (HashMap<usize, Vec<Record>>, Vec<Record>) {
    let produced = load.stop();
    let total: u64 = produced.iter().sum();
    let outputs = kafka.read_count(&["out"], total as usize, Duration::from_secs(60));
    host.stop().expect("clean stop");
    (exactly_once(&outputs, &produced), outputs)
}

fn replace_file(path: &Path, bytes: &[u8]) {
    // Written in place, the way `cp` or a linker would: the watcher must wait for it to settle.
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn swaps_under_load_lose_nothing_duplicate_nothing_and_never_go_back() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let b = plugin("poison"); // forwards every record too, as another version
    let config = setup(&kafka, dir.path(), &a, "");
    let live = dir.path().join("live.wasm");
    let (label_a, label_b) = (label_of(&a), label_of(&b));
    let (host, load) = start_under_load(&kafka, &config, 30, &label_a);
    let swaps = [&b, &a, &b, &a];
    for (i, next) in swaps.iter().enumerate() {
        replace_file(&live, &std::fs::read(next).unwrap());
        // Version labels repeat (A, B, A…), so wait on the swap count, then for the label.
        let chain = &host.chains[0];
        wait_until(&format!("swap {} published", i + 1), || {
            chain.stats.swaps.load(Ordering::Relaxed) > i as u64
        });
        wait_for_label(&kafka, &label_of(next));
    }
    let (by_partition, _) = finish(&kafka, host, load);
    let expected_runs = [&label_a, &label_b, &label_a, &label_b, &label_a];
    for (p, records) in by_partition {
        let mut runs: Vec<&str> = Vec::new();
        for r in &records {
            let label = r.header("sluice.version").unwrap();
            if runs.last() != Some(&label) {
                runs.push(label);
            }
        }
        assert!(
            runs.len() <= expected_runs.len()
                && runs.iter().zip(expected_runs).all(|(r, e)| r == e),
            "partition {p}: versions went {runs:?}, expected a prefix of A,B,A,B,A"
        );
    }
}

#[test]
fn bad_files_leave_the_running_version_serving() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let config = setup(&kafka, dir.path(), &a, "");
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, 20, &label_a);

    let good_b = std::fs::read(plugin("poison")).unwrap();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not WebAssembly", b"this is not a component".to_vec()),
        (
            "another world",
            std::fs::read(plugin("wrong_world")).unwrap(),
        ),
        // mask-pii refuses the pipeline's config keys (`mode`, `poison`).
        (
            "init refuses its config",
            std::fs::read(plugin("mask_pii")).unwrap(),
        ),
        // hostile with mode = "error-all"… is fine in init; init-panic needs its own config, so
        // use a truncated component: a half-written file that stops changing.
        ("half-written", good_b[..good_b.len() / 2].to_vec()),
    ];
    let chain = host.chains[0].clone();
    for (i, (what, bytes)) in bad.iter().enumerate() {
        replace_file(&live, bytes);
        wait_until(&format!("{what}: rejection reported"), || {
            chain.stats.failures.load(Ordering::Relaxed) > i as u64
        });
        assert_eq!(
            chain.current().label.as_ref(),
            label_a,
            "{what}: the running version stays"
        );
    }
    assert_eq!(chain.stats.swaps.load(Ordering::Relaxed), 0);
    // Completing the half-written file loads it.
    replace_file(&live, &good_b);
    wait_for_label(&kafka, &label_of(&plugin("poison")));

    finish(&kafka, host, load);
    let dlq = kafka.read_until(&["dlq"], Duration::from_millis(500), |r| !r.is_empty());
    assert!(
        dlq.is_empty(),
        "no record dead-lettered while bad files came and went"
    );
}

#[test]
fn a_stateful_version_is_refused_in_a_pipeline_that_started_without_state() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    // key_counter's init takes no `mode = "error-all"`: give the chain an empty config, so
    // statefulness is the only reason to refuse it.
    let config = setup(&kafka, dir.path(), &a, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"mode = "error-all", poison = "never""#, "");
    std::fs::write(&config, text).unwrap();
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, 20, &label_a);
    let counter = std::fs::read(plugin("key_counter")).unwrap();
    let chain = host.chains[0].clone();
    replace_file(&live, &counter);
    wait_until("the stateful version refused", || {
        chain.stats.failures.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(
        chain.current().label.as_ref(),
        label_a,
        "the running version stays"
    );
    assert_eq!(chain.stats.swaps.load(Ordering::Relaxed), 0);
    // The reason, as the watcher logged it.
    let runtime = sluice::testing::runtime::Runtime::new(dir.path().join("cache")).unwrap();
    match chain.offer(&runtime, 0, &counter) {
        Offer::Invalid(e) => {
            let message = e.to_string();
            assert!(
                message.contains("is a stateful-transform plugin")
                    && message.contains("pipeline `hot` started without state")
                    && message.contains("restart sluice"),
                "{message}"
            );
        }
        other => panic!("expected the stateful version to be refused, got {other:?}"),
    }
    finish(&kafka, host, load);
}

#[test]
fn a_plugin_that_panics_in_init_is_not_swapped_in() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let config = setup(&kafka, dir.path(), &a, "");
    // The pipeline's config has mode = "error-all"; a hostile build whose init always panics is
    // made by pointing the chain at a hostile file with mode init-panic instead.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("error-all", "init-panic");
    std::fs::write(&config, text).unwrap();
    let live = dir.path().join("live.wasm");
    let host = RunningHost::start(&config);
    replace_file(&live, &std::fs::read(plugin("hostile")).unwrap());
    let chain = host.chains[0].clone();
    wait_until("init panic reported", || {
        chain.stats.failures.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(chain.current().label.as_ref(), label_of(&a));
    host.stop().expect("clean stop");
}

#[test]
fn a_version_that_fails_on_probation_is_rolled_back_and_nothing_reaches_the_dlq() {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let a = plugin("passthrough");
    let config = setup(
        &kafka,
        dir.path(),
        &a,
        "reload = { probation_records = 300, max_failure_ratio = 0.1 }",
    );
    let live = dir.path().join("live.wasm");
    let label_a = label_of(&a);
    let (host, load) = start_under_load(&kafka, &config, 20, &label_a);

    // hostile with the pipeline's mode = "error-all" rejects every record.
    let bad = std::fs::read(plugin("hostile")).unwrap();
    replace_file(&live, &bad);
    let chain = host.chains[0].clone();
    wait_until("rollback", || {
        chain.stats.rollbacks.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(
        chain.current().label.as_ref(),
        label_a,
        "the previous version is live again"
    );
    // The same bad content is not loaded again.
    replace_file(&live, &bad);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        chain.stats.swaps.load(Ordering::Relaxed),
        1,
        "a rolled-back file is not reloaded"
    );

    let (_, outputs) = finish(&kafka, host, load);
    assert!(
        outputs
            .iter()
            .all(|r| r.header("sluice.version") == Some(label_a.as_str())),
        "every record has its output from the previous version"
    );
    let dlq = kafka.read_until(&["dlq"], Duration::from_millis(500), |r| !r.is_empty());
    assert!(
        dlq.is_empty(),
        "no record dead-lettered because of the bad deploy"
    );
}
