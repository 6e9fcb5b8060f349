//! Stateful pipelines (issue 15) with `sluice run` as separate processes against a mock cluster
//! that outlives them; readers use `read_committed`.
//!
//! - A per-key counter under SIGKILL at several points: exactly-once, every count of every key
//!   appears exactly once and the last equals the key's inputs; at-least-once, never below.
//! - A partition moving between two processes mid-stream: the receiver restores and goes on
//!   with exact counts.
//! - A trap on one record: that record is dead-lettered and its state change discarded; the
//!   other records' changes apply exactly once.
//! - Tumbling windows: records within the allowed lateness count, later ones go to the
//!   dead-letter topic with reason `late`, and each window's result is emitted once.
//! - A timer that `on-timer` rejects or traps on goes to the dead-letter topic alone, named by
//!   its headers; the other timers of the same call are emitted and the pipeline goes on.
//! - A missing changelog topic is created with the inputs' partition count (6, not the
//!   cluster's default of 4 that a topic auto-created by a metadata request would get), and
//!   counts stay exact across a restart that restores from it; an existing one with fewer
//!   partitions than the inputs stops the pipeline with an error naming it, and so does one the
//!   broker refuses to create (saying what to create by hand).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{HostProcess, Kafka, Record, write_config};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: i32 = 4;
const KEYS: usize = 20;

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
consumer = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }
[[pipeline]]
name = "counter"
inputs = ["in"]
delivery = "DELIVERY"
dead_letter_topic = "dlq"
plugins = [{ path = "{plugin:key_counter}", config = { panic_on = "boom" } }]
batch = { max_records = 50, linger_ms = 5 }
commit_interval_ms = 100
[pipeline.outputs.main]
kafka_topic = "out"
"#;

fn setup(delivery: &str) -> (Kafka, tempfile::TempDir, std::path::PathBuf) {
    setup_with(delivery, PARTITIONS, CONFIG)
}

/// `in` and `out` with `partitions` partitions, `dlq` with 1, and `config` (with `DELIVERY`)
/// written for the cluster.
fn setup_with(
    delivery: &str,
    partitions: i32,
    config: &str,
) -> (Kafka, tempfile::TempDir, std::path::PathBuf) {
    let kafka = Kafka::new(1);
    for (topic, partitions) in [("in", partitions), ("out", partitions), ("dlq", 1)] {
        kafka.topic(topic, partitions);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &config.replace("DELIVERY", delivery),
        &kafka.bootstrap(),
    );
    (kafka, dir, config)
}

fn producer(kafka: &Kafka) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Produces `n` records round-robin over the keys (`value` = "v"), waits for them, and adds
/// them to `sent`.
fn produce_keys(kafka: &Kafka, n: usize, sent: &mut HashMap<String, u64>) {
    let p = producer(kafka);
    for i in 0..n {
        let key = format!("k{}", i % KEYS);
        *sent.entry(key.clone()).or_default() += 1;
        let mut r: BaseRecord<'_, String, str> = BaseRecord::to("in").key(&key).payload("v");
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Counts per key as emitted: every value of every key, in order of reading.
fn emitted(outputs: &[Record]) -> HashMap<String, Vec<u64>> {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for r in outputs {
        m.entry(r.key.clone().unwrap())
            .or_default()
            .push(r.value_str().parse().unwrap());
    }
    m
}

/// Reads until every key's largest count reaches what was sent.
fn read_all(kafka: &Kafka, sent: &HashMap<String, u64>) -> Vec<Record> {
    kafka.read_until(&["out"], Duration::from_secs(120), |r| {
        let e = emitted(r);
        sent.iter()
            .all(|(k, n)| e.get(k).and_then(|v| v.iter().max()) >= Some(n))
    })
}

fn wait_for_outputs(kafka: &Kafka, n: usize) {
    let seen = kafka.read_until(&["out"], Duration::from_secs(120), |r| r.len() >= n);
    assert!(seen.len() >= n, "only {} outputs within 120 s", seen.len());
}

/// Exactly-once: each key's counts are exactly 1..=n, each once.
fn assert_exact(outputs: &[Record], sent: &HashMap<String, u64>) {
    let e = emitted(outputs);
    for (key, n) in sent {
        let mut counts = e.get(key).cloned().unwrap_or_default();
        counts.sort();
        let expected: Vec<u64> = (1..=*n).collect();
        assert_eq!(counts, expected, "counts of key {key}");
    }
}

#[test]
fn exactly_once_counts_survive_sigkill_at_several_points() {
    let (kafka, _dir, config) = setup("exactly-once");
    let mut sent = HashMap::new();
    produce_keys(&kafka, 400, &mut sent);
    let mut expected_outputs = 0;
    for round in 0..3 {
        let host = HostProcess::start(&config, "a");
        expected_outputs += 150;
        wait_for_outputs(&kafka, expected_outputs);
        // More input while the host runs, then SIGKILL mid-stream.
        produce_keys(&kafka, 200, &mut sent);
        std::thread::sleep(Duration::from_millis(50 * round));
        host.kill();
    }
    let host = HostProcess::start(&config, "a");
    produce_keys(&kafka, 200, &mut sent);
    let outputs = read_all(&kafka, &sent);
    assert!(host.terminate().success(), "graceful stop exits 0");
    let total: u64 = sent.values().sum();
    assert_eq!(outputs.len() as u64, total, "one output per input");
    assert_exact(&outputs, &sent);
}

#[test]
fn the_state_files_of_a_killed_process_are_removed_by_the_next_one() {
    let state = tempfile::tempdir().unwrap();
    let with_dir = format!(
        "{CONFIG}[runtime]\nstate_dir = \"{}\"\n",
        state.path().display()
    );
    let (kafka, _dir, config) = setup_with("at-least-once", PARTITIONS, &with_dir);
    let mut sent = HashMap::new();
    produce_keys(&kafka, 100, &mut sent);
    let killed = HostProcess::start(&config, "a");
    let killed_dir = state.path().join(format!("a-{}", killed.pid()));
    wait_for_outputs(&kafka, 100);
    let stores = std::fs::read_dir(killed_dir.join("counter"))
        .expect("the pipeline's stores are in the process's directory")
        .count();
    assert!(stores > 0, "one redb file per assigned partition");
    killed.kill();
    assert!(
        killed_dir.join(".lock").exists(),
        "SIGKILL leaves the files"
    );

    let next = HostProcess::start(&config, "a");
    let next_dir = state.path().join(format!("a-{}", next.pid()));
    produce_keys(&kafka, 100, &mut sent);
    let outputs = read_all(&kafka, &sent);
    assert!(!killed_dir.exists(), "the dead process's files are removed");
    assert!(next_dir.join(".lock").exists());
    assert!(next.terminate().success());
    assert!(
        !next_dir.exists(),
        "a clean stop removes the process's own files"
    );
    let e = emitted(&outputs);
    for (key, n) in &sent {
        assert!(
            e[key].iter().max() >= Some(n),
            "key {key}: counts restored from the changelog reach its {n} inputs"
        );
    }
}

#[test]
fn processing_time_timers_fire_on_a_partition_that_gets_no_more_records() {
    // Each record registers a processing-time reminder 1.5 s after its timestamp (now), and
    // nothing comes after it: only the idle ticks can fire them.
    let remind = CONFIG.replace(
        "config = { panic_on = \"boom\" }",
        "config = { mode = \"remind\", remind_after_ms = \"1500\" }",
    );
    let (kafka, _dir, config) = setup_with("at-least-once", PARTITIONS, &remind);
    let host = HostProcess::start(&config, "a");
    let p = producer(&kafka);
    let send = |key: &str, timestamp: i64| {
        p.send(
            BaseRecord::<str, str>::to("in")
                .key(key)
                .payload("v")
                .timestamp(timestamp),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // First a reminder already due when its batch is processed, to know the host is running
    // (it fires right after that batch).
    send("warm-up", now() - 1500);
    let warm = kafka.read_until(&["out"], Duration::from_secs(60), |r| !r.is_empty());
    assert_eq!(warm.len(), 1, "the warm-up reminder");
    // Then reminders due 1.5 s after their batch, with no record after them.
    for key in ["k0", "k1", "k2"] {
        send(key, now());
    }
    let fired = kafka.read_until(&["out"], Duration::from_secs(60), |r| r.len() >= 4);
    let mut keys: Vec<String> = fired.iter().map(|r| r.key.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["k0", "k1", "k2", "warm-up"], "one reminder per key");
    assert!(fired.iter().all(|r| r.value_str() == "reminder"));
    // Fired once: a timer is removed when it fires, and later ticks find nothing.
    std::thread::sleep(Duration::from_secs(3));
    let all = kafka.read_until(&["out"], Duration::from_secs(2), |_| false);
    assert_eq!(all.len(), 4, "no reminder fires twice: {all:?}");
    assert!(host.terminate().success());
}

#[test]
fn at_least_once_counts_never_fall_below_the_inputs() {
    let (kafka, _dir, config) = setup("at-least-once");
    let mut sent = HashMap::new();
    produce_keys(&kafka, 400, &mut sent);
    for n in [150, 500] {
        let host = HostProcess::start(&config, "a");
        wait_for_outputs(&kafka, n);
        produce_keys(&kafka, 200, &mut sent);
        host.kill();
    }
    let host = HostProcess::start(&config, "a");
    let outputs = read_all(&kafka, &sent);
    assert!(host.terminate().success());
    let e = emitted(&outputs);
    for (key, n) in &sent {
        let max = e[key].iter().max().copied().unwrap_or(0);
        assert!(max >= *n, "key {key}: count {max} below its {n} inputs");
        // No count is skipped: a restart re-applies, it never loses a change.
        for c in 1..=*n {
            assert!(e[key].contains(&c), "key {key}: count {c} never emitted");
        }
    }
}

#[test]
fn a_partition_moving_to_another_process_keeps_exact_counts() {
    let (kafka, _dir, config) = setup("exactly-once");
    let mut sent = HashMap::new();
    produce_keys(&kafka, 400, &mut sent);
    let a = HostProcess::start(&config, "a");
    wait_for_outputs(&kafka, 400);
    // B joins: some partitions move from A to B, whose stores restore from the changelog.
    let b = HostProcess::start(&config, "b");
    std::thread::sleep(Duration::from_secs(8));
    produce_keys(&kafka, 400, &mut sent);
    wait_for_outputs(&kafka, 800);
    // A leaves: every partition ends on B.
    assert!(a.terminate().success());
    produce_keys(&kafka, 400, &mut sent);
    let outputs = read_all(&kafka, &sent);
    assert!(b.terminate().success());
    assert_eq!(outputs.len() as u64, sent.values().sum::<u64>());
    assert_exact(&outputs, &sent);
}

#[test]
fn a_trap_on_one_record_discards_only_its_change() {
    let (kafka, _dir, config) = setup("exactly-once");
    let p = producer(&kafka);
    for v in ["a", "b", "boom", "c", "d"] {
        p.send(
            BaseRecord::<str, str>::to("in")
                .key("t")
                .payload(v)
                .partition(0),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let host = HostProcess::start(&config, "a");
    let outputs = kafka.read_count(&["out"], 4, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 1, Duration::from_secs(30));
    assert!(host.terminate().success());
    let counts: Vec<&str> = outputs.iter().map(|r| r.value_str()).collect();
    assert_eq!(
        counts,
        ["1", "2", "3", "4"],
        "the trapped record's write is discarded"
    );
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value_str(), "boom");
    assert_eq!(dlq[0].header("sluice.error.reason"), Some("trap"));
}

/// `CONFIG` with the changelog topic named, so the test can look at it.
fn named_changelog_config() -> String {
    CONFIG.replace(
        "commit_interval_ms = 100\n",
        "commit_interval_ms = 100\nstate = { changelog_topic = \"counter-changelog\" }\n",
    )
}

/// The partition count of `topic` as the cluster reports it (None while it does not exist),
/// read by a consumer, which never auto-creates the topic it asks about.
fn partitions_of(kafka: &Kafka, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len())
}

#[test]
fn a_missing_changelog_is_created_with_the_inputs_partition_count() {
    // 6 partitions: not the mock's default partition count (4), which is what a topic
    // auto-created by a metadata request gets, as on a broker with its default num.partitions.
    let (kafka, _dir, config) = setup_with("exactly-once", 6, &named_changelog_config());
    assert_eq!(partitions_of(&kafka, "counter-changelog"), None);
    let mut sent = HashMap::new();
    produce_keys(&kafka, 300, &mut sent);
    let host = std::cell::RefCell::new(HostProcess::start(&config, "a"));
    let seen = kafka.read_until(&["out"], Duration::from_secs(120), |r| {
        r.len() >= 300 || host.borrow_mut().exited().is_some()
    });
    let mut host = host.into_inner();
    assert_eq!(
        host.exited(),
        None,
        "the host ended at start (see its log above) instead of creating the changelog"
    );
    assert!(
        seen.len() >= 300,
        "only {} outputs within 120 s",
        seen.len()
    );
    assert_eq!(
        partitions_of(&kafka, "counter-changelog"),
        Some(6),
        "the changelog is partitioned like the input"
    );
    // Changelog partitions 4 and 5 (which a 4-partition changelog lacks) hold the stores of
    // input partitions 4 and 5, so a restart restores them from there.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    for p in [4, 5] {
        let (_, high) = consumer
            .fetch_watermarks("counter-changelog", p, Duration::from_secs(10))
            .unwrap();
        assert!(high > 0, "changelog partition {p} is empty");
    }
    host.kill();
    produce_keys(&kafka, 300, &mut sent);
    let host = HostProcess::start(&config, "a");
    let outputs = read_all(&kafka, &sent);
    assert!(host.terminate().success());
    assert_eq!(outputs.len() as u64, sent.values().sum::<u64>());
    assert_exact(&outputs, &sent);
    assert_eq!(partitions_of(&kafka, "counter-changelog"), Some(6));
}

#[test]
fn a_stateful_pipeline_waits_for_a_missing_input_before_sizing_its_changelog() {
    // No input topic yet: the changelog cannot be sized, so it must not be created (it used to
    // be, with 1 partition, wrong for good once the input appears with 6).
    const OPERATOR: &str = "state-test-operator-token";
    let kafka = Kafka::new(1);
    kafka.topic("out", 6);
    kafka.topic("dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[admin]\nlisten = \"127.0.0.1:{port}\"\noperator_token = \"{OPERATOR}\"\n",
            named_changelog_config().replace("DELIVERY", "at-least-once")
        ),
        &kafka.bootstrap(),
    );
    let mut host = HostProcess::start(&config, "a");
    // The pipeline says what it waits for, and keeps waiting (checked twice, a while apart).
    let state = || {
        let (_, body) =
            common::try_http(port, "GET", "/api/pipelines/counter", Some(OPERATOR), b"")?;
        let described: serde_json::Value = serde_json::from_str(&body).ok()?;
        described["state"].as_str().map(str::to_string)
    };
    for _ in 0..2 {
        common::wait_until("the pipeline waits for its input", || {
            state().is_some_and(|s| s.contains("waiting for input topic(s) in to exist"))
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(host.exited(), None, "the host must wait, not fail");
    assert_eq!(
        partitions_of(&kafka, "counter-changelog"),
        None,
        "no changelog before the input exists"
    );
    kafka.topic("in", 6);
    let mut sent = HashMap::new();
    produce_keys(&kafka, 300, &mut sent);
    let outputs = read_all(&kafka, &sent);
    assert!(host.terminate().success());
    assert_exact(&outputs, &sent);
    assert_eq!(
        partitions_of(&kafka, "counter-changelog"),
        Some(6),
        "sized like the input once it exists"
    );
}

#[test]
fn an_existing_changelog_with_too_few_partitions_stops_the_pipeline_naming_it() {
    let (kafka, _dir, config) = setup_with("exactly-once", 6, &named_changelog_config());
    kafka.topic("counter-changelog", 4);
    let error = start_error(&config);
    assert!(
        error.contains("`counter-changelog` has 4 partitions")
            && error.contains("inputs have 6")
            && error.contains("give it 6 partitions"),
        "{error}"
    );
    // Left as it was: never grown or recreated behind the operator's back.
    assert_eq!(partitions_of(&kafka, "counter-changelog"), Some(4));
}

/// Starts the host in-process and returns its error (it must stop by itself within 60 s).
fn start_error(config: &std::path::Path) -> String {
    let host = common::RunningHost::start(config);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(host.join().map_err(|e| format!("{e:#}"))));
    let ended = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the host stops at start");
    ended.expect_err("the host fails at start")
}

#[test]
fn an_existing_changelog_that_deletes_records_stops_the_pipeline_naming_its_policy() {
    // Created without configs (as a broker's auto-creation or an older Sluice made it): the
    // broker default, cleanup.policy=delete, would lose state after retention.ms.
    let (kafka, _dir, config) = setup_with("at-least-once", 6, &named_changelog_config());
    kafka.topic("counter-changelog", 6);
    let error = start_error(&config);
    assert!(
        error.contains(
            "`counter-changelog` has cleanup.policy=delete: Kafka deletes its records after \
             retention.ms, and a store restored from it would silently miss state. Make it \
             compacted (kafka-configs.sh --alter --entity-type topics --entity-name \
             counter-changelog --add-config cleanup.policy=compact)"
        ),
        "{error}"
    );
}

#[test]
fn a_changelog_the_broker_refuses_to_create_is_an_error_saying_what_to_create() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // The host's principal may not create topics.
    let (kafka, _dir, config) = setup_with("exactly-once", 6, &named_changelog_config());
    kafka.cluster.request_errors(
        RDKafkaApiKey::CreateTopics,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let error = start_error(&config);
    assert!(
        error.contains("cannot create the state changelog topic `counter-changelog`")
            && error.contains("with 6 partitions and cleanup.policy=compact"),
        "{error}"
    );
    assert_eq!(partitions_of(&kafka, "counter-changelog"), None);

    // "Already exists" is another process winning the race: the host looks again, and does
    // not take a topic the metadata does not show for one that exists.
    let (kafka, _dir, config) = setup_with("exactly-once", 6, &named_changelog_config());
    kafka.cluster.request_errors(
        RDKafkaApiKey::CreateTopics,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS],
    );
    let error = start_error(&config);
    assert!(
        error.contains(
            "`counter-changelog` exists, the broker says, but its metadata shows no partitions"
        ),
        "{error}"
    );
}

const WINDOW_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[pipeline]]
name = "windows"
inputs = ["events"]
delivery = "exactly-once"
dead_letter_topic = "dlq"
plugins = [{ path = "{plugin:key_counter}", config = { mode = "window", window_ms = 1000 } }]
batch = { max_records = 3, linger_ms = 5 }
state = { allowed_lateness_ms = 500 }
[pipeline.outputs.main]
kafka_topic = "out"
"#;

/// One-partition `events`, `out` and `dlq` topics and `config` written for them.
fn window_setup(config: &str) -> (Kafka, tempfile::TempDir, std::path::PathBuf) {
    let kafka = Kafka::new(1);
    for topic in ["events", "out", "dlq"] {
        kafka.topic(topic, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), config, &kafka.bootstrap());
    (kafka, dir, config)
}

/// Produces `(key, event time)` records to `events`, the value being the time; each flushed
/// alone when `one_by_one` (so each makes a batch of its own, as in a live stream).
fn send_events(kafka: &Kafka, events: &[(&str, i64)], one_by_one: bool) {
    let p = producer(kafka);
    for (key, ts) in events {
        p.send(
            BaseRecord::<str, str>::to("events")
                .key(key)
                .payload(&ts.to_string())
                .timestamp(*ts),
        )
        .unwrap();
        if one_by_one {
            p.flush(Duration::from_secs(10)).unwrap();
        }
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn windows_count_records_within_lateness_and_dead_letter_later_ones() {
    let (kafka, _dir, config) = window_setup(WINDOW_CONFIG);
    // 1200 is behind the largest timestamp (1500) but within the 500 ms lateness: it counts.
    // 2600 moves the watermark to 2100: window [1000, 2000) closes with 3 records.
    // 1100 is then behind the watermark: late. 3700 closes [2000, 3000) with 1.
    let times = [1000i64, 1500, 1200, 2600, 1100, 3700];
    send_events(&kafka, &times.map(|t| ("a", t)), false);
    let host = HostProcess::start(&config, "a");
    let outputs = kafka.read_count(&["out"], 2, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 1, Duration::from_secs(30));
    assert!(host.terminate().success());
    let results: Vec<&str> = outputs.iter().map(|r| r.value_str()).collect();
    assert_eq!(
        results,
        ["1000,3", "2000,1"],
        "each window once, late record not counted"
    );
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value_str(), "1100");
    assert_eq!(dlq[0].header("sluice.error.reason"), Some("late"));
}

const FAILING_TIMER_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[pipeline]]
name = "windows"
inputs = ["events"]
delivery = "exactly-once"
dead_letter_topic = "dlq"
plugins = [{ path = "{plugin:key_counter}", config = { mode = "window", window_ms = 1000, refuse_timer_of = "refused", panic_timer_of = "trapped" } }]
batch = { max_records = 10, linger_ms = 5 }
[pipeline.outputs.main]
kafka_topic = "out"
"#;

#[test]
fn a_timer_the_plugin_rejects_or_traps_on_is_dead_lettered_alone() {
    let (kafka, _dir, config) = window_setup(FAILING_TIMER_CONFIG);
    // Window [1000, 2000) of three keys fires when "a" at 2600 moves the watermark past it (no
    // lateness): "refused" is rejected by on-timer, "trapped" panics in it, "a" is emitted. The
    // pipeline goes on: "a" at 3700 closes [2000, 3000).
    // One batch per record, so the timers fire between records as in a live stream.
    send_events(
        &kafka,
        &[
            ("a", 1000),
            ("refused", 1100),
            ("trapped", 1200),
            ("a", 2600),
            ("a", 3700),
        ],
        true,
    );
    let host = HostProcess::start(&config, "a");
    let outputs = kafka.read_count(&["out"], 2, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 2, Duration::from_secs(30));
    assert!(host.terminate().success());
    let results: Vec<(&str, &str)> = outputs
        .iter()
        .map(|r| (r.key.as_deref().unwrap(), r.value_str()))
        .collect();
    assert_eq!(results, [("a", "1000,1"), ("a", "2000,1")]);
    assert_eq!(dlq.len(), 2, "one dead letter per failed timer: {dlq:?}");
    let mut by_reason: HashMap<&str, &Record> = HashMap::new();
    for d in &dlq {
        by_reason.insert(d.header("sluice.error.reason").unwrap(), d);
        assert_eq!(d.value, None, "a timer's dead letter has no value");
        assert_eq!(d.header("sluice.timer.domain"), Some("event-time"), "{d:?}");
        assert_eq!(d.header("sluice.timer.time"), Some("2000"));
        assert_eq!(d.header("sluice.pipeline"), Some("windows"));
    }
    let refused = by_reason.get("plugin-error").expect("the rejected timer");
    assert!(
        refused
            .header("sluice.error.message")
            .unwrap()
            .contains("refused the window of key refused"),
        "{refused:?}"
    );
    assert!(
        refused.key.as_deref().unwrap().ends_with("refused"),
        "the timer's key: {:?}",
        refused.key
    );
    let trapped = by_reason.get("trap").expect("the trapping timer");
    assert!(trapped.key.as_deref().unwrap().ends_with("trapped"));
}

/// `bytes` with a custom section appended: the same plugin as a new version (another hash).
fn new_version(bytes: &[u8]) -> Vec<u8> {
    let name = b"sluice-test-version";
    let payload = b"2";
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_hot_swap_mid_stream_keeps_the_counts() {
    let kafka = Kafka::new(1);
    for (topic, partitions) in [("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)] {
        kafka.topic(topic, partitions);
    }
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(common::plugin("key_counter")).unwrap();
    let path = dir.path().join("counter.wasm");
    std::fs::write(&path, &original).unwrap();
    // The new version runs on probation beside the old one (a shadow on the same state): only
    // the changes of the version that serves a batch may count.
    let config = CONFIG
        .replace("DELIVERY", "exactly-once")
        .replace("{plugin:key_counter}", &path.display().to_string())
        + "[pipeline.reload]\nprobation_records = 200\n";
    let config = write_config(dir.path(), &config, &kafka.bootstrap());
    let mut sent = HashMap::new();
    produce_keys(&kafka, 300, &mut sent);
    let host = HostProcess::start(&config, "a");
    wait_for_outputs(&kafka, 300);
    let swapped = new_version(&original);
    let tmp = dir.path().join("counter.wasm.tmp");
    std::fs::write(&tmp, &swapped).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let version = sluice::testing::runtime::content_version(&swapped);
    // Records until the new version has served some.
    let mut served = false;
    for _ in 0..20 {
        produce_keys(&kafka, 100, &mut sent);
        let outputs = read_all(&kafka, &sent);
        if outputs.iter().any(|r| {
            r.header("sluice.version")
                .is_some_and(|v| v.contains(&version))
        }) {
            served = true;
            break;
        }
    }
    assert!(served, "the new version never served a batch");
    produce_keys(&kafka, 300, &mut sent);
    let outputs = read_all(&kafka, &sent);
    assert!(host.terminate().success());
    assert_eq!(outputs.len() as u64, sent.values().sum::<u64>());
    assert_exact(&outputs, &sent);
}
