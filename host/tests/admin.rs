//! The admin endpoints during a mock-cluster run: `/metrics` counts what was really consumed,
//! produced and dead-lettered; `/healthz` and `/readyz` answer. Per-pipeline detail needs the
//! operator's token on `admin.listen`, and none on `admin.metrics_listen`.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{Kafka, RunningHost, TestRecord, wait_until, write_config};

const OPERATOR: &str = "operator-secret-0123456789";

fn get(port: u16, path: &str) -> (u16, String) {
    get_as(port, path, None)
}

fn get_as(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    common::http(port, "GET", path, token, b"")
}

/// The value of the sample of `name` whose labels include every `k="v"` of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|kv| l.contains(kv)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_what_was_consumed_produced_and_dead_lettered() {
    let kafka = Kafka::with_topics(&[("in", 2), ("out", 2), ("dlq", 1)]);
    let admin_port = common::free_port();
    // The scrapes below go to the open metrics listener: everything, without a token.
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [kafka]
            bootstrap_servers = "{{bootstrap}}"
            [admin]
            listen = "127.0.0.1:{admin_port}"
            metrics_listen = "127.0.0.1:{port}"
            operator_token = "{OPERATOR}"
            [[pipeline]]
            name = "metered"
            inputs = ["in"]
            dead_letter_topic = "dlq"
            plugins = [{{ path = "{{plugin:poison}}" }}]
            batch = {{ max_records = 10, linger_ms = 20 }}
            [pipeline.outputs.main]
            kafka_topic = "out"
            "#
        ),
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    wait_until("the admin listener is up", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));

    const N: usize = 100;
    let records: Vec<TestRecord> = (0..N)
        .map(|i| {
            let v = if i % 40 == 5 {
                "poison".to_string()
            } else {
                format!("v{i}")
            };
            (Some(format!("k{i}")), Some(v.into_bytes()), vec![])
        })
        .collect();
    kafka.produce("in", None, &records);
    let out = kafka.read_count(&["out"], N - 3, Duration::from_secs(60));
    let dlq = kafka.read_count(&["dlq"], 3, Duration::from_secs(60));
    assert_eq!((out.len(), dlq.len()), (N - 3, 3));

    let pipeline = r#"pipeline="metered""#;
    wait_until("the counters reach the records", || {
        let (_, m) = get(port, "/metrics");
        sample(&m, "sluice_records_in_total", &[pipeline]) == Some(N as f64)
    });
    let (status, m) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &m,
            "sluice_records_out_total",
            &[pipeline, r#"output="main""#]
        ),
        Some((N - 3) as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "sluice_records_dead_lettered_total",
            &[pipeline, r#"reason="plugin-error""#]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "sluice_records_dead_lettered_total",
            &[pipeline, r#"reason="trap""#]
        ),
        Some(0.0)
    );
    assert!(sample(&m, "sluice_batches_total", &[pipeline]).unwrap() >= (N / 10) as f64);
    assert_eq!(
        sample(&m, "sluice_batch_size_sum", &[pipeline]),
        Some(N as f64)
    );
    assert!(
        sample(
            &m,
            "sluice_plugin_call_seconds_count",
            &[pipeline, r#"plugin="poison""#]
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&m, "sluice_end_to_end_latency_seconds_count", &[]).unwrap() >= N as f64);
    assert_eq!(
        sample(&m, "sluice_plugin_info", &[pipeline, r#"plugin="poison""#]),
        Some(1.0),
        "{}",
        m.lines()
            .filter(|l| l.contains("info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    wait_until("a commit is counted", || {
        sample(
            &get(port, "/metrics").1,
            "sluice_commits_total",
            &[pipeline],
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    wait_until("consumer lag is reported", || {
        sample(
            &get(port, "/metrics").1,
            "sluice_consumer_lag",
            &[pipeline, r#"topic="in""#],
        )
        .is_some()
    });

    let (status, body) = get(port, "/readyz");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(ready["ready"], true);
    assert_eq!(
        ready["pipelines"][0]["assigned"].as_array().unwrap().len(),
        2,
        "{body}"
    );

    // On admin.listen, without a token: host-wide series and the overall status only, nothing
    // that names a pipeline, topic or plugin version.
    assert_eq!(get(admin_port, "/healthz"), (200, "ok\n".to_string()));
    let (status, m) = get(admin_port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        !m.contains("metered") && !m.contains("pipeline=") && !m.contains("topic="),
        "{m}"
    );
    assert!(
        sample(&m, "sluice_end_to_end_latency_seconds_count", &[]).unwrap() >= N as f64,
        "host-wide series stay: {m}"
    );
    let (status, body) = get(admin_port, "/readyz");
    assert_eq!((status, body.as_str()), (200, r#"{"ready":true}"#));
    // With the operator's token: everything, as on the open listener.
    let (status, m) = get_as(admin_port, "/metrics", Some(OPERATOR));
    assert_eq!(status, 200);
    assert_eq!(
        sample(&m, "sluice_records_in_total", &[pipeline]),
        Some(N as f64),
        "{m}"
    );
    let (status, body) = get_as(admin_port, "/readyz", Some(OPERATOR));
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["pipelines"][0]["name"], "metered", "{body}");
    // An unknown token is refused, not silently given the public view.
    for path in ["/metrics", "/readyz"] {
        let (status, body) = get_as(admin_port, path, Some("wrong-token-0123456789"));
        assert_eq!(status, 401, "{path}: {body}");
    }
    host.stop().expect("clean stop");
}
