//! End-to-end pipeline tests against the librdkafka mock cluster, with real wasmtime and real
//! plugins, the host running in-process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Kafka, RunningHost, counts, write_config};
use sluice::testing::config::Config;
use sluice::testing::pipeline::Host;
use sluice::testing::runtime::{ComponentCache, Runtime};

fn event(seq: usize, kind: &str, user: &str) -> Vec<u8> {
    format!(r#"{{"type":"{kind}","user_id":"{user}","product_id":"p-{seq}","seq":{seq}}}"#)
        .into_bytes()
}

#[test]
fn records_flow_through_a_two_plugin_chain_to_two_topics_in_order() {
    let kafka = Kafka::with_topics(&[
        ("shop.in", 4),
        ("shop.views", 3),
        ("shop.carts", 3),
        ("shop.dlq", 1),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [[pipeline]]
        name = "shop"
        inputs = ["shop.in"]
        dead_letter_topic = "shop.dlq"
        # route-events names the output; passthrough's outputs keep that route (sticky routing).
        plugins = [{ path = "{plugin:route_events}" }, { path = "{plugin:passthrough}" }]
        batch = { max_records = 64, linger_ms = 10 }
        [pipeline.outputs.views]
        kafka_topic = "shop.views"
        [pipeline.outputs.carts]
        kafka_topic = "shop.carts"
        "#,
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);

    const N: usize = 2000;
    let records: Vec<_> = (0..N)
        .map(|i| {
            let user = format!("u-{}", i % 17);
            let kind = if i.is_multiple_of(3) { "cart" } else { "view" };
            (
                Some(user.clone()),
                Some(event(i, kind, &user)),
                vec![
                    ("seq".to_string(), i.to_string()),
                    ("trace".to_string(), format!("t-{i}")),
                ],
            )
        })
        .collect();
    kafka.produce("shop.in", None, &records);

    let out = kafka.read_count(
        &["shop.views", "shop.carts", "shop.dlq"],
        N,
        Duration::from_secs(60),
    );
    host.stop().expect("clean stop");

    assert_eq!(out.len(), N, "every input has exactly one output");
    assert!(
        out.iter().all(|r| r.topic != "shop.dlq"),
        "no valid event is dead-lettered"
    );
    let seqs = counts(out.iter().map(|r| r.header("seq").unwrap()));
    assert_eq!(seqs.len(), N, "no input is missing");
    for r in &out {
        let seq: usize = r.header("seq").unwrap().parse().unwrap();
        let expected_topic = if seq.is_multiple_of(3) {
            "shop.carts"
        } else {
            "shop.views"
        };
        assert_eq!(r.topic, expected_topic, "record {seq} routed by type");
        assert_eq!(
            r.header("trace"),
            Some(format!("t-{seq}").as_str()),
            "headers preserved"
        );
        assert_eq!(
            r.key.as_deref(),
            Some(format!("u-{}", seq % 17).as_str()),
            "key preserved"
        );
        assert_eq!(
            r.value.as_deref(),
            Some(
                &event(
                    seq,
                    if seq.is_multiple_of(3) {
                        "cart"
                    } else {
                        "view"
                    },
                    r.key.as_deref().unwrap()
                )[..]
            )
        );
        assert!(r.timestamp.is_some());
    }
    // Order: within each output partition, the records of one key keep their input order.
    let mut last: std::collections::HashMap<(String, i32, String), usize> = Default::default();
    let mut sorted = out.clone();
    sorted.sort_by_key(|r| (r.topic.clone(), r.partition, r.offset));
    for r in &sorted {
        let seq: usize = r.header("seq").unwrap().parse().unwrap();
        let k = (r.topic.clone(), r.partition, r.key.clone().unwrap());
        if let Some(prev) = last.insert(k, seq) {
            assert!(
                prev < seq,
                "order broken in {}[{}]: {prev} before {seq}",
                r.topic,
                r.partition
            );
        }
    }
}

#[test]
fn poison_and_trapping_records_go_to_the_dlq_while_their_neighbours_are_delivered() {
    let kafka = Kafka::with_topics(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [[pipeline]]
        name = "guarded"
        inputs = ["in"]
        dead_letter_topic = "dlq"
        plugins = [{ path = "{plugin:poison}" }]
        batch = { max_records = 1000, linger_ms = 200 }
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    const N: usize = 300;
    let records: Vec<_> = (0..N)
        .map(|i| {
            let value = match i {
                57 => "poison".to_string(),
                133 => "trap".to_string(),
                _ => format!("v-{i}"),
            };
            (
                Some(format!("k-{i}")),
                Some(value.into_bytes()),
                vec![("h".to_string(), i.to_string())],
            )
        })
        .collect();
    kafka.produce("in", Some(0), &records);

    let out = kafka.read_count(&["out"], N - 2, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 2, Duration::from_secs(30));
    host.stop().expect("clean stop");

    let values: Vec<String> = out.iter().map(|r| r.value_str().to_string()).collect();
    let expected: Vec<String> = (0..N)
        .filter(|i| *i != 57 && *i != 133)
        .map(|i| format!("v-{i}"))
        .collect();
    assert_eq!(values, expected, "every neighbour delivered once, in order");

    assert_eq!(
        dlq.len(),
        2,
        "exactly the two bad records are dead-lettered: {dlq:?}"
    );
    let poison = &dlq[0];
    assert_eq!(
        poison.value_str(),
        "poison",
        "the input goes to the DLQ unchanged"
    );
    assert_eq!(poison.key.as_deref(), Some("k-57"));
    assert_eq!(poison.header("h"), Some("57"), "original headers kept");
    assert_eq!(poison.header("sluice.error.reason"), Some("plugin-error"));
    assert_eq!(
        poison.header("sluice.error.message"),
        Some("poisoned record")
    );
    assert_eq!(poison.header("sluice.plugin"), Some("poison"));
    assert_eq!(
        poison.header("sluice.plugin.version").map(str::len),
        Some(12)
    );
    assert_eq!(poison.header("sluice.pipeline"), Some("guarded"));
    assert_eq!(poison.header("sluice.source.topic"), Some("in"));
    assert_eq!(poison.header("sluice.source.partition"), Some("0"));
    assert_eq!(poison.header("sluice.source.offset"), Some("57"));

    let trap = &dlq[1];
    assert_eq!(trap.value_str(), "trap");
    assert_eq!(trap.header("sluice.error.reason"), Some("trap"));
    let message = trap.header("sluice.error.message").unwrap();
    assert!(
        message.contains("unreachable")
            && message.contains("trap requested by record at offset 133"),
        "the trap and the plugin's panic message: {message}"
    );
    assert_eq!(trap.header("sluice.source.offset"), Some("133"));
}

#[test]
fn without_a_dlq_a_bad_record_stops_the_pipeline_and_is_not_committed() {
    let kafka = Kafka::with_topics(&[("in", 1), ("out", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [[pipeline]]
        name = "strict"
        inputs = ["in"]
        plugins = [{ path = "{plugin:poison}" }]
        batch = { max_records = 10, linger_ms = 20 }
        commit_interval_ms = 50
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        &kafka.bootstrap(),
    );
    let records: Vec<_> = (0..40)
        .map(|i| {
            (
                None,
                Some(if i == 25 {
                    b"poison".to_vec()
                } else {
                    format!("v-{i}").into_bytes()
                }),
                vec![],
            )
        })
        .collect();
    kafka.produce("in", Some(0), &records);
    let host = RunningHost::start(&config);
    let result = host.join();
    let error = format!(
        "{:#}",
        result.expect_err("the pipeline stops on a record it cannot deliver")
    );
    assert!(
        error.contains("in[0]@25") && error.contains("no dead_letter_topic"),
        "{error}"
    );
    let committed = kafka.committed("sluice-strict", "in", 1);
    assert!(
        committed[0] <= 20,
        "nothing from the failed batch on is committed: {committed:?}"
    );
}

#[test]
fn check_validates_plugins_without_kafka() {
    // The in-process API behind `sluice check`: a config whose plugin refuses its config fails to
    // prepare with a message naming the plugin.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:1"
        [[pipeline]]
        name = "users"
        inputs = ["in"]
        plugins = [{ path = "{plugin:mask_pii}", config = { fields = "" } }]
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#,
        "unused",
    );
    let config = Config::load(&config).unwrap();
    let runtime: Arc<Runtime> = Runtime::new(ComponentCache::default_dir()).unwrap();
    let error = format!(
        "{:#}",
        Host::prepare(config, &runtime).err().expect("init refuses")
    );
    assert!(
        error.contains("mask_pii") && error.contains("refused its config"),
        "{error}"
    );
}

#[test]
fn a_record_routed_to_an_undeclared_output_goes_to_the_dlq() {
    let kafka = Kafka::with_topics(&[("events", 1), ("views", 1), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    // route-events sends carts to output `carts`, which this pipeline does not declare.
    let config = write_config(
        dir.path(),
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [[pipeline]]
        name = "partial"
        inputs = ["events"]
        dead_letter_topic = "dlq"
        plugins = [{ path = "{plugin:route_events}" }]
        batch = { linger_ms = 100 }
        [pipeline.outputs.views]
        kafka_topic = "views"
        "#,
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    let records: Vec<_> = (0..10)
        .map(|i| {
            (
                None,
                Some(event(i, if i == 4 { "cart" } else { "view" }, "u-1")),
                vec![],
            )
        })
        .collect();
    kafka.produce("events", Some(0), &records);
    let views = kafka.read_count(&["views"], 9, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 1, Duration::from_secs(60));
    host.stop().expect("clean stop");
    assert_eq!(views.len(), 9);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0].header("sluice.error.reason"),
        Some("undeclared-output")
    );
    assert!(
        dlq[0]
            .header("sluice.error.message")
            .unwrap()
            .contains("output `carts` is not declared by the pipeline (declared: views)")
    );
    assert_eq!(dlq[0].header("sluice.source.offset"), Some("4"));
}
