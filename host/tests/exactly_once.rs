//! Exactly-once from Kafka to Kafka, and scale-out in one consumer group, with `sluice run` as
//! separate processes against a mock cluster that outlives them. Readers use `read_committed`.
//!
//! - SIGKILL at several points of a stream: after each restart a reader sees every input's
//!   output (and every dead letter) exactly once, in order per partition.
//! - Processes joining and leaving one group mid-stream, in both delivery modes: every input has
//!   its output (exactly once, or at least once), in order per partition.
//! - A broker down for a few seconds and injected request errors: the pipeline recovers by
//!   itself with the same guarantees.

mod common;

use std::time::Duration;

use common::{HostProcess, Kafka, Load, Record, check_delivery, write_config};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const PARTITIONS: i32 = 4;

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
# A killed member must leave the group quickly for the others to get its partitions.
consumer = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }
[[pipeline]]
name = "ledger"
inputs = ["in"]
delivery = "DELIVERY"
dead_letter_topic = "dlq"
# One input of partition 1 is rejected and one of partition 2 traps: both go to the DLQ.
plugins = [{ path = "{plugin:poison}", config = { poison = "v-1-150", trap = "v-2-300" } }]
batch = { max_records = 50, linger_ms = 5 }
commit_interval_ms = 100
[pipeline.outputs.main]
kafka_topic = "out"
"#;

const DEAD_LETTERED: &[(usize, u64)] = &[(1, 150), (2, 300)];

fn setup(delivery: &str, brokers: i32) -> (Kafka, tempfile::TempDir, std::path::PathBuf) {
    let kafka = Kafka::new(brokers);
    for (topic, partitions) in [("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)] {
        kafka.topic(topic, partitions);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &CONFIG.replace("DELIVERY", delivery),
        &kafka.bootstrap(),
    );
    (kafka, dir, config)
}

fn start_load(kafka: &Kafka) -> Load {
    Load::start(
        &kafka.bootstrap(),
        "in",
        PARTITIONS,
        8,
        Duration::from_millis(10),
    )
}

/// Waits until a `read_committed` reader sees at least `n` outputs.
fn wait_for_outputs(kafka: &Kafka, n: usize) {
    let seen = kafka.read_until(&["out"], Duration::from_secs(120), |r| r.len() >= n);
    assert!(seen.len() >= n, "only {} outputs within 120 s", seen.len());
}

/// Stops the load, waits for every output and dead letter, and checks them.
fn finish(kafka: &Kafka, load: Load, exactly_once: bool) -> (Vec<Record>, usize) {
    let produced = load.stop();
    let total: u64 = produced.iter().sum();
    let expected = total as usize - DEAD_LETTERED.len();
    // Until every input has an output: at least once, a count would be reached by repeats.
    let outputs = kafka.read_until(&["out"], Duration::from_secs(120), |r| {
        r.iter()
            .map(|r| (r.header("p"), r.header("seq")))
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= expected
    });
    let dlq = kafka.read_count(&["dlq"], DEAD_LETTERED.len(), Duration::from_secs(30));
    let repeats = check_delivery(&outputs, &produced, DEAD_LETTERED, exactly_once);
    let mut dead: Vec<(usize, u64)> = dlq
        .iter()
        .map(|r| {
            (
                r.header("p").unwrap().parse().unwrap(),
                r.header("seq").unwrap().parse().unwrap(),
            )
        })
        .collect();
    dead.sort();
    if exactly_once {
        assert_eq!(dead, DEAD_LETTERED, "each dead letter exactly once");
    } else {
        dead.dedup();
        assert_eq!(dead, DEAD_LETTERED, "each dead letter at least once");
    }
    (outputs, repeats)
}

#[test]
fn exactly_once_survives_sigkill_at_several_points() {
    let (kafka, _dir, config) = setup("exactly-once", 1);
    let load = start_load(&kafka);
    // The same instance id after each restart: its first act fences the killed process's
    // producers and aborts their open transactions.
    for outputs in [300, 900, 1500] {
        let host = HostProcess::start(&config, "a");
        wait_for_outputs(&kafka, outputs);
        host.kill();
    }
    let host = HostProcess::start(&config, "a");
    let (outputs, repeats) = finish(&kafka, load, true);
    assert!(host.terminate().success(), "graceful stop exits 0");
    assert_eq!(repeats, 0);
    assert!(outputs.len() > 1500);
}

#[test]
fn at_least_once_replays_after_sigkill_and_exactly_once_does_not() {
    // The control for the test above: the same kills in at-least-once mode do repeat outputs,
    // so the exactly-once test is not passing for want of a chance to duplicate.
    let (kafka, _dir, config) = setup("at-least-once", 1);
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("commit_interval_ms = 100", "commit_interval_ms = 600000");
    std::fs::write(&config, config_text).unwrap();
    let load = start_load(&kafka);
    let host = HostProcess::start(&config, "a");
    wait_for_outputs(&kafka, 600);
    host.kill();
    let host = HostProcess::start(&config, "a");
    let (_, repeats) = finish(&kafka, load, false);
    assert!(host.terminate().success());
    assert!(
        repeats >= 600,
        "everything before the kill is replayed: {repeats}"
    );
}

/// Two processes, a third joins, the first leaves, all mid-stream.
fn join_and_leave(delivery: &str) -> usize {
    let exactly_once = delivery == "exactly-once";
    let (kafka, _dir, config) = setup(delivery, 1);
    let load = start_load(&kafka);
    let a = HostProcess::start(&config, "a");
    let b = HostProcess::start(&config, "b");
    wait_for_outputs(&kafka, 400);
    let c = HostProcess::start(&config, "c");
    wait_for_outputs(&kafka, 1200);
    assert!(a.terminate().success(), "a leaves cleanly");
    wait_for_outputs(&kafka, 2000);
    let (_, repeats) = finish(&kafka, load, exactly_once);
    assert!(b.terminate().success());
    assert!(c.terminate().success());
    repeats
}

#[test]
fn processes_join_and_leave_mid_stream_exactly_once() {
    assert_eq!(join_and_leave("exactly-once"), 0);
}

#[test]
fn processes_join_and_leave_mid_stream_at_least_once() {
    // Cooperative rebalancing commits what is acknowledged before a partition moves, so
    // repeats are possible but rare; every input still has its output, in order.
    join_and_leave("at-least-once");
}

/// A broker down for a few seconds, then errors injected into the requests that produce,
/// commit and run transactions.
fn broker_faults(delivery: &str) {
    let exactly_once = delivery == "exactly-once";
    let (kafka, _dir, config) = setup(delivery, 3);
    let load = start_load(&kafka);
    let host = HostProcess::start(&config, "a");
    wait_for_outputs(&kafka, 300);
    for broker in [2, 3] {
        kafka.cluster.broker_down(broker).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        kafka.cluster.broker_up(broker).unwrap();
    }
    wait_for_outputs(&kafka, 900);
    let retriable = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    ];
    let coordinator = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
    ];
    kafka
        .cluster
        .request_errors(RDKafkaApiKey::Produce, &retriable);
    kafka
        .cluster
        .request_errors(RDKafkaApiKey::OffsetCommit, &coordinator[..2]);
    for api in [
        RDKafkaApiKey::AddPartitionsToTxn,
        RDKafkaApiKey::TxnOffsetCommit,
        RDKafkaApiKey::EndTxn,
    ] {
        kafka.cluster.request_errors(api, &coordinator);
    }
    wait_for_outputs(&kafka, 1500);
    let mut host = host;
    assert!(host.exited().is_none(), "the host recovers by itself");
    finish(&kafka, load, exactly_once);
    assert!(host.terminate().success());
}

#[test]
fn broker_down_and_request_errors_exactly_once() {
    broker_faults("exactly-once");
}

#[test]
fn broker_down_and_request_errors_at_least_once() {
    broker_faults("at-least-once");
}

#[test]
fn check_refuses_exactly_once_across_kafka_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "localhost:9092"
        [[pipeline]]
        name = "mixed"
        inputs = ["in"]
        delivery = "exactly-once"
        plugins = [{ path = "{plugin:passthrough}" }]
        default_output = "topic"
        [pipeline.outputs.topic]
        kafka_topic = "out"
        [pipeline.outputs.table]
        postgres = { url = "postgres://localhost/db", table = "t" }
        "#,
        "",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pipeline[0].delivery")
            && stderr.contains("output `topic` is a Kafka topic")
            && stderr.contains("no transaction spans both"),
        "{stderr}"
    );
}
