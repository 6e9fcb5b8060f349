//! Failure domains: what one pipeline's records or plugin do stays in that pipeline.
//!
//! - A record the producer cannot take (600,000 empty headers: no byte of data, 1.2 MB on the
//!   wire) is caught before anything of its batch is sent: over the output cap it is
//!   `limit:output`, under the cap but over `message.max.bytes` it is `sink:too-large`; either way
//!   it is dead-lettered and the pipeline goes on. Without a dead-letter topic only that pipeline
//!   stops; the host and its other pipelines keep going.
//! - A legal input too large to dead-letter with Sluice's headers is dead-lettered without its
//!   value, flagged, never a halt.
//! - Headers in the `sluice.` namespace from an input or a plugin are never passed on as Sluice's.
//! - A plugin whose `init` refuses in the workers (after passing at load) holds its batch, the
//!   partition is reported stalled (error log, `/readyz` 503), and it recovers by itself.
//! - SIGTERM ends the process within `runtime.shutdown_timeout_ms` whatever a plugin does.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Kafka, Record, RunningHost, TestRecord, free_port, wait_until, write_config};

const RECORDS: usize = 20;
const BAD: usize = 7;

fn records_with_bad() -> Vec<TestRecord> {
    (0..RECORDS)
        .map(|n| {
            let value = if n == BAD {
                "bad".to_string()
            } else {
                format!("ok-{n}")
            };
            (None, Some(value.into_bytes()), vec![])
        })
        .collect()
}

fn headers_named<'a>(record: &'a Record, name: &str) -> Vec<Option<&'a str>> {
    record
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
        .collect()
}

#[test]
fn records_the_sink_cannot_take_are_dead_lettered_and_one_pipelines_failure_stays_there() {
    let kafka = Kafka::new(1);
    for t in [
        "in-a", "out-a", "dlq-a", "in-b", "out-b", "dlq-b", "in-c", "out-c", "in-d", "out-d",
        "in-e", "out-e", "dlq-e", "in-f", "out-f",
    ] {
        kafka.topic(t, 1);
    }
    let pipeline = |name: &str, plugin: &str, extra: &str, t: &str, dlq: bool| {
        format!(
            r#"
            [[pipeline]]
            name = "{name}"
            inputs = ["in-{t}"]
            {dlq}
            plugins = [{plugin}]
            batch = {{ max_records = 50, linger_ms = 100 }}
            commit_interval_ms = 100
            workers = 1
            {extra}
            [pipeline.outputs.main]
            kafka_topic = "out-{t}"
            "#,
            dlq = if dlq {
                format!("dead_letter_topic = \"dlq-{t}\"")
            } else {
                String::new()
            }
        )
    };
    let headers = r#"{ path = "{plugin:hostile}", config = { mode = "empty-headers" } }"#;
    let passthrough = r#"{ path = "{plugin:passthrough}" }"#;
    let forge = r#"{ path = "{plugin:hostile}", config = { mode = "forge-headers" } }"#;
    let mut text = String::from("[kafka]\nbootstrap_servers = \"{bootstrap}\"\n");
    // The output cap raised above message.max.bytes: the producer's own limit catches it.
    text += &pipeline(
        "too-large",
        headers,
        "limits = { max_output_bytes = 5000000 }",
        "a",
        true,
    );
    text += &pipeline("over-cap", headers, "", "b", true);
    text += &pipeline("strict", headers, "", "c", false);
    text += &pipeline("bystander", passthrough, "", "d", false);
    text += &pipeline("big-input", passthrough, "", "e", true);
    text += &pipeline("forged", forge, "", "f", false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &text, &kafka.bootstrap());

    for t in ["in-a", "in-b", "in-c"] {
        kafka.produce(t, Some(0), &records_with_bad());
    }
    // A legal Kafka record near 1 MB whose dead letter, with Sluice's headers, would not be.
    let big = vec![b'v'; 999_700];
    kafka.produce(
        "in-e",
        Some(0),
        &[(
            Some("big".into()),
            Some(big),
            vec![("sluice.error.reason".into(), "forged".into())],
        )],
    );
    let forged_inputs: Vec<TestRecord> = (0..5)
        .map(|n| {
            (
                None,
                Some(format!("f-{n}").into_bytes()),
                vec![("sluice.version".into(), "forged-by-input@0".into())],
            )
        })
        .collect();
    kafka.produce("in-f", Some(0), &forged_inputs);

    let host = RunningHost::start(&config);
    let long = Duration::from_secs(60);

    for (t, reason) in [("a", "sink:too-large"), ("b", "limit:output")] {
        let out = kafka.read_count(&[&format!("out-{t}")], RECORDS - 1, long);
        let values: Vec<&str> = out.iter().map(Record::value_str).collect();
        let expected: Vec<String> = (0..RECORDS)
            .filter(|n| *n != BAD)
            .map(|n| format!("ok-{n}"))
            .collect();
        assert_eq!(
            values, expected,
            "pipeline {t}: every other record, in order"
        );
        let dlq = kafka.read_count(&[&format!("dlq-{t}")], 1, long);
        assert_eq!(dlq.len(), 1, "pipeline {t}: one dead letter");
        assert_eq!(dlq[0].value_str(), "bad");
        assert_eq!(dlq[0].header("sluice.error.reason"), Some(reason), "{t}");
        assert_eq!(dlq[0].header("sluice.source.offset"), Some("7"));
        let message = dlq[0].header("sluice.error.message").unwrap();
        assert!(
            message.contains("bytes"),
            "pipeline {t}: the message gives the size: {message}"
        );
    }

    // The strict pipeline (no DLQ) has stopped; the others go on: records produced now still
    // come through the bystander.
    let late: Vec<TestRecord> = (0..30)
        .map(|n| (None, Some(format!("late-{n}").into_bytes()), vec![]))
        .collect();
    kafka.produce("in-d", Some(0), &late);
    let out_d = kafka.read_count(&["out-d"], 30, long);
    assert_eq!(out_d.len(), 30, "the bystander pipeline keeps running");

    let dlq_e = kafka.read_count(&["dlq-e"], 1, long);
    assert_eq!(dlq_e.len(), 1);
    let letter = &dlq_e[0];
    assert_eq!(letter.value, None, "the value is left out to fit");
    assert_eq!(letter.key.as_deref(), Some("big"));
    assert_eq!(letter.header("sluice.error.dropped"), Some("value"));
    assert_eq!(letter.header("sluice.source.topic"), Some("in-e"));
    assert_eq!(letter.header("sluice.source.offset"), Some("0"));
    assert_eq!(
        headers_named(letter, "sluice.error.reason"),
        vec![Some("limit:output")],
        "one reason, Sluice's"
    );
    assert_eq!(
        letter.header("original.sluice.error.reason"),
        Some("forged"),
        "the input's own header is kept under another name"
    );

    let out_f = kafka.read_count(&["out-f"], 5, long);
    assert_eq!(out_f.len(), 5);
    for r in &out_f {
        let versions = headers_named(r, "sluice.version");
        assert_eq!(versions.len(), 1, "one sluice.version header: {r:?}");
        assert!(
            versions[0].unwrap().starts_with("hostile@"),
            "Sluice's version, not a forged one: {versions:?}"
        );
        assert!(headers_named(r, "sluice.error.reason").is_empty());
    }

    let committed = kafka.committed("sluice-strict", "in-c", 1)[0];
    assert!(
        committed <= BAD as i64,
        "nothing past the undeliverable record is committed: {committed}"
    );
    let error = format!(
        "{:#}",
        host.stop()
            .expect_err("the host reports the failed pipeline when it stops")
    );
    assert!(
        error.contains("strict") && error.contains("in-c[0]@7"),
        "the failure names the pipeline and the record: {error}"
    );
}

fn get(port: u16, path: &str) -> Option<u16> {
    common::try_http(port, "GET", path, None, b"").map(|(status, _)| status)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `sluice run` as a child process whose log goes to a file, read by the test.
struct LoggedHost {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl LoggedHost {
    fn start(config: &std::path::Path, dir: &std::path::Path) -> LoggedHost {
        let log = dir.join("sluice.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(config)
            .env("SLUICE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting sluice");
        LoggedHost { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LoggedHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_plugin_that_refuses_to_start_in_a_worker_stalls_its_partition_visibly_and_recovers() {
    let kafka = Kafka::with_topics(&[
        ("in-flaky", 1),
        ("out-flaky", 1),
        ("in-other", 1),
        ("out-other", 1),
    ]);
    let port = free_port();
    // The host must load (and validate) the plugin before the window opens; its workers'
    // instances are made when the first batch arrives, inside the window.
    let from = now_ms() + 12_000;
    let until = from + 10_000;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [kafka]
            bootstrap_servers = "{{bootstrap}}"
            [admin]
            listen = "127.0.0.1:{port}"
            [runtime]
            stall_timeout_ms = 2000
            [[pipeline]]
            name = "flaky"
            inputs = ["in-flaky"]
            plugins = [{{ path = "{{plugin:hostile}}", config = {{ mode = "init-refuse-window", refuse_from_ms = "{from}", refuse_until_ms = "{until}" }} }}]
            batch = {{ max_records = 10, linger_ms = 50 }}
            workers = 1
            [pipeline.outputs.main]
            kafka_topic = "out-flaky"
            [[pipeline]]
            name = "other"
            inputs = ["in-other"]
            plugins = [{{ path = "{{plugin:passthrough}}" }}]
            batch = {{ max_records = 10, linger_ms = 50 }}
            workers = 1
            [pipeline.outputs.main]
            kafka_topic = "out-other"
            "#
        ),
        &kafka.bootstrap(),
    );
    let host = LoggedHost::start(&config, dir.path());
    wait_until("the host is ready", || get(port, "/readyz") == Some(200));
    assert!(
        now_ms() < from,
        "the host took too long to start for this test's window"
    );
    while now_ms() < from + 200 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let records: Vec<TestRecord> = (0..10)
        .map(|n| (None, Some(format!("r-{n}").into_bytes()), vec![]))
        .collect();
    kafka.produce("in-flaky", Some(0), &records);

    // Stalled: not ready, with an error naming the partition and the cause.
    let started = Instant::now();
    while get(port, "/readyz") != Some(503) {
        assert!(
            now_ms() < until,
            "/readyz never failed while the partition was stalled; log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = host.log();
    assert!(
        log.contains("partition stalled")
            && log.contains("in-flaky[0]")
            && log.contains("refusing my config"),
        "the stall is logged with its partition and cause:\n{log}"
    );
    // The other pipeline is not held up meanwhile.
    kafka.produce("in-other", Some(0), &records);
    let other = kafka.read_count(&["out-other"], 10, Duration::from_secs(30));
    assert_eq!(other.len(), 10, "the other pipeline goes on");
    assert!(
        now_ms() < until,
        "the other pipeline answered within the window"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Once init accepts again, the held batch goes through: nothing lost, nothing twice.
    let out = kafka.read_count(&["out-flaky"], 10, Duration::from_secs(60));
    let values: Vec<&str> = out.iter().map(Record::value_str).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("r-{n}")).collect();
    assert_eq!(values, expected);
    assert!(now_ms() >= until, "nothing came through during the window");
    wait_until("ready again", || get(port, "/readyz") == Some(200));
    assert!(host.log().contains("moves again"));
}

#[test]
fn sigterm_ends_the_process_within_the_shutdown_timeout_whatever_the_plugin_does() {
    let kafka = Kafka::with_topics(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [kafka]
            bootstrap_servers = "{{bootstrap}}"
            [admin]
            listen = "127.0.0.1:{port}"
            [runtime]
            shutdown_timeout_ms = 3000
            stall_timeout_ms = 500
            [[pipeline]]
            name = "spinner"
            inputs = ["in"]
            dead_letter_topic = "dlq"
            plugins = [{{ path = "{{plugin:hostile}}", config = {{ mode = "loop" }} }}]
            limits = {{ timeout_ms = 600000 }}
            batch = {{ max_records = 20, linger_ms = 50 }}
            commit_interval_ms = 100
            workers = 1
            [pipeline.outputs.main]
            kafka_topic = "out"
            "#
        ),
        &kafka.bootstrap(),
    );
    let mut host = LoggedHost::start(&config, dir.path());
    wait_until("the host is ready", || get(port, "/readyz") == Some(200));
    kafka.produce("in", Some(0), &records_with_bad());
    // The worker is inside the call that spins for up to ten minutes: the stall watch sees it
    // holding its batch.
    wait_until("the worker is inside the spinning call", || {
        get(port, "/readyz") == Some(503)
    });
    let pid = host.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = host.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running {} s after SIGTERM with shutdown_timeout_ms = 3000; log:\n{}",
            signalled.elapsed().as_secs(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_millis(3000 + 1500),
        "exited {} ms after SIGTERM (shutdown_timeout_ms = 3000)",
        took.as_millis()
    );
    assert!(!status.success(), "a cut-short shutdown is not a success");
    assert!(host.log().contains("shutdown did not finish"));
    let committed = kafka.committed("sluice-spinner", "in", 1)[0];
    assert!(
        committed <= 0,
        "the batch inside the call is not committed: {committed}"
    );
}

/// The broker refuses a record the producer let through (here: an injected
/// `MESSAGE_TOO_LARGE`, as a topic with a smaller `max.message.bytes` answers): its input is
/// dead-lettered as `sink:too-large` when the partition is read again, and the pipeline goes on.
#[test]
fn a_record_the_broker_refuses_is_dead_lettered_and_the_pipeline_goes_on() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    for delivery in ["at-least-once", "exactly-once"] {
        let kafka = Kafka::with_topics(&[("in", 1), ("out", 1), ("dlq", 1)]);
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
                [kafka]
                bootstrap_servers = "{{bootstrap}}"
                [[pipeline]]
                name = "refused"
                inputs = ["in"]
                delivery = "{delivery}"
                dead_letter_topic = "dlq"
                plugins = [{{ path = "{{plugin:passthrough}}" }}]
                batch = {{ max_records = 10, linger_ms = 50 }}
                commit_interval_ms = 100
                workers = 1
                [pipeline.outputs.main]
                kafka_topic = "out"
                "#
            ),
            &kafka.bootstrap(),
        );
        kafka.produce("in", Some(0), &[(None, Some(b"r-0".to_vec()), vec![])]);
        // The next Produce request, the host's first (the output of r-0), is refused.
        kafka.cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let host = RunningHost::start(&config);
        let dlq = kafka.read_count(&["dlq"], 1, Duration::from_secs(60));
        assert_eq!(
            dlq.len(),
            1,
            "{delivery}: the refused input is dead-lettered"
        );
        assert_eq!(dlq[0].value_str(), "r-0");
        assert_eq!(
            dlq[0].header("sluice.error.reason"),
            Some("sink:too-large"),
            "{delivery}"
        );
        let message = dlq[0].header("sluice.error.message").unwrap();
        assert!(
            message.contains("refused") && message.contains("`out`"),
            "{delivery}: {message}"
        );
        let more: Vec<TestRecord> = (1..10)
            .map(|n| (None, Some(format!("r-{n}").into_bytes()), vec![]))
            .collect();
        kafka.produce("in", Some(0), &more);
        let out = kafka.read_count(&["out"], 9, Duration::from_secs(60));
        let values: Vec<&str> = out.iter().map(Record::value_str).collect();
        let expected: Vec<String> = (1..10).map(|n| format!("r-{n}")).collect();
        assert_eq!(values, expected, "{delivery}: the pipeline goes on");
        host.stop().expect("the pipeline did not stop");
        let committed = kafka.committed("sluice-refused", "in", 1)[0];
        assert_eq!(committed, 10, "{delivery}: everything is committed");
    }
}

/// One pipeline's plugin that cannot load at start does not keep the host's other pipelines
/// from starting: it is reported as failed and `/readyz` fails, while the others run.
#[test]
fn a_pipeline_whose_plugin_cannot_load_at_start_does_not_keep_the_others_from_starting() {
    let kafka = Kafka::with_topics(&[("in-a", 1), ("out-a", 1), ("in-b", 1), ("out-b", 1)]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [kafka]
            bootstrap_servers = "{{bootstrap}}"
            [admin]
            listen = "127.0.0.1:{port}"
            [[pipeline]]
            name = "broken"
            inputs = ["in-a"]
            plugins = [{{ path = "{{plugin:hostile}}", config = {{ mode = "init-panic" }} }}]
            [pipeline.outputs.main]
            kafka_topic = "out-a"
            [[pipeline]]
            name = "healthy"
            inputs = ["in-b"]
            plugins = [{{ path = "{{plugin:passthrough}}" }}]
            batch = {{ max_records = 10, linger_ms = 50 }}
            [pipeline.outputs.main]
            kafka_topic = "out-b"
            "#
        ),
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    let records: Vec<TestRecord> = (0..10)
        .map(|n| (None, Some(format!("r-{n}").into_bytes()), vec![]))
        .collect();
    kafka.produce("in-b", Some(0), &records);
    let out = kafka.read_count(&["out-b"], 10, Duration::from_secs(60));
    assert_eq!(out.len(), 10, "the healthy pipeline runs");
    assert_eq!(
        get(port, "/readyz"),
        Some(503),
        "the broken one is not ready"
    );
    let error = format!(
        "{:#}",
        host.stop().expect_err("the broken pipeline is reported")
    );
    assert!(
        error.contains("broken") && error.contains("panic in init"),
        "{error}"
    );
}
