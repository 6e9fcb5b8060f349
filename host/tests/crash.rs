//! The host as a separate process against a mock cluster that outlives it: killed with SIGKILL
//! after producing outputs but before committing, it loses nothing after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{HostProcess, Kafka, counts, write_config};

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
# The killed member must leave the group quickly for the restart to get its partitions.
consumer = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }
[[pipeline]]
name = "copy"
inputs = ["in"]
dead_letter_topic = "dlq"
plugins = [{ path = "{plugin:passthrough}" }]
batch = { max_records = 100, linger_ms = 10 }
commit_interval_ms = COMMIT
[pipeline.outputs.main]
kafka_topic = "out"
"#;

#[test]
fn sigkill_after_outputs_before_commit_loses_nothing_after_restart() {
    let kafka = Kafka::with_topics(&[("in", 3), ("out", 3), ("dlq", 1)]);
    const N: usize = 3000;
    let records: Vec<_> = (0..N)
        .map(|i| {
            (
                Some(format!("k{}", i % 50)),
                Some(format!("r-{i}").into_bytes()),
                vec![],
            )
        })
        .collect();
    kafka.produce("in", None, &records);

    // First run: commits only every 10 minutes, so it is killed with every output produced and
    // nothing committed.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &CONFIG.replace("COMMIT", "600000"),
        &kafka.bootstrap(),
    );
    let first = HostProcess::start(&config, "a");
    let out = kafka.read_count(&["out"], N, Duration::from_secs(90));
    assert_eq!(out.len(), N, "the first run produced every output");
    assert_eq!(
        kafka.committed("sluice-copy", "in", 3),
        vec![-1, -1, -1],
        "killed before any commit"
    );
    first.kill(); // SIGKILL

    // Second run: reprocesses from the last commit (the beginning) and commits as it goes.
    let config = write_config(
        dir.path(),
        &CONFIG.replace("COMMIT", "100"),
        &kafka.bootstrap(),
    );
    let second = HostProcess::start(&config, "a");
    let out = kafka.read_count(&["out"], 2 * N, Duration::from_secs(90));
    let status = second.terminate();
    assert!(status.success(), "graceful stop exits 0: {status:?}");

    let seen = counts(out.iter().map(|r| r.value_str()));
    for i in 0..N {
        let n = seen.get(format!("r-{i}").as_str()).copied().unwrap_or(0);
        assert!(n >= 1, "input r-{i} has no output after the restart");
    }
    assert!(
        out.len() >= 2 * N,
        "nothing was committed, so every input is processed again"
    );
    let committed: i64 = kafka.committed("sluice-copy", "in", 3).iter().sum();
    assert_eq!(
        committed, N as i64,
        "after a graceful stop everything is committed"
    );
}

#[test]
fn sighup_rechecks_plugin_files_when_watching_is_off() {
    let kafka = Kafka::with_topics(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(common::plugin("passthrough"), &live).unwrap();
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "{{bootstrap}}"
        [runtime]
        watch_plugins = false
        [[pipeline]]
        name = "hup"
        inputs = ["in"]
        dead_letter_topic = "dlq"
        plugins = [{{ path = "{}" }}]
        batch = {{ linger_ms = 10 }}
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        live.display()
    );
    let config = write_config(dir.path(), &text, &kafka.bootstrap());
    let child = HostProcess::start(&config, "a");
    let produce = |from: usize| {
        let records: Vec<_> = (from..from + 5)
            .map(|i| (None, Some(format!("r-{i}").into_bytes()), vec![]))
            .collect();
        kafka.produce("in", Some(0), &records);
    };
    let version = |path: &std::path::Path| {
        format!(
            "live@{}",
            sluice::testing::runtime::content_version(&std::fs::read(path).unwrap())
        )
    };
    let old = version(&live);
    produce(0);
    let out = kafka.read_count(&["out"], 5, Duration::from_secs(60));
    assert!(
        out.iter()
            .all(|r| r.header("sluice.version") == Some(old.as_str()))
    );

    std::fs::copy(common::plugin("poison"), &live).unwrap();
    let new = version(&live);
    std::thread::sleep(Duration::from_millis(500));
    produce(5);
    let out = kafka.read_count(&["out"], 10, Duration::from_secs(60));
    assert!(
        out.iter()
            .all(|r| r.header("sluice.version") == Some(old.as_str())),
        "with watching off, a changed file is not loaded by itself"
    );
    child.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 10;
    loop {
        produce(next);
        next += 5;
        let out = kafka.read_count(&["out"], next, Duration::from_secs(30));
        if out
            .iter()
            .any(|r| r.header("sluice.version") == Some(new.as_str()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new version"
        );
    }
    assert!(child.terminate().success());
}

#[test]
fn sigterm_mid_stream_commits_exactly_what_was_delivered_and_a_restart_has_no_gap() {
    let kafka = Kafka::with_topics(&[("in", 2), ("out", 2), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &CONFIG.replace("COMMIT", "200"),
        &kafka.bootstrap(),
    );
    let load = common::Load::start(&kafka.bootstrap(), "in", 2, 20, Duration::from_millis(5));
    let first = HostProcess::start(&config, "a");
    kafka.read_count(&["out"], 2000, Duration::from_secs(60));
    let status = first.terminate();
    assert!(status.success(), "SIGTERM mid-stream exits 0: {status:?}");

    // Everything committed was delivered, and nothing beyond it: the drain finished every batch
    // it had read and committed exactly those.
    let committed = kafka.committed("sluice-copy", "in", 2);
    let out = kafka.read_until(&["out"], Duration::from_secs(5), |_| false);
    for (p, end) in committed.iter().enumerate() {
        let mut seqs: Vec<u64> = out
            .iter()
            .filter(|r| r.header("p") == Some(&p.to_string()))
            .map(|r| r.header("seq").unwrap().parse().unwrap())
            .collect();
        seqs.sort();
        let expected: Vec<u64> = (0..*end as u64).collect();
        assert_eq!(
            seqs, expected,
            "partition {p}: outputs are exactly the committed inputs"
        );
    }

    // A restart carries on from there: every input once, no gap, no duplicate.
    let second = HostProcess::start(&config, "a");
    let produced = load.stop();
    let total: u64 = produced.iter().sum();
    let out = kafka.read_count(&["out"], total as usize, Duration::from_secs(60));
    assert!(second.terminate().success());
    let seen = counts(out.iter().map(|r| r.value_str()));
    assert_eq!(
        out.len() as u64,
        total,
        "no duplicate after a graceful restart"
    );
    for (p, n) in produced.iter().enumerate() {
        for seq in 0..*n {
            assert_eq!(
                seen.get(format!("v-{p}-{seq}").as_str()),
                Some(&1),
                "v-{p}-{seq}"
            );
        }
    }
}
