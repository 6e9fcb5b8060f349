//! The JSON-lines file sink: records land in the file as `sluice test` prints them, in order,
//! once per record after a clean stop; `sluice check` reports the file; exactly-once with a file
//! output is refused with the reason.

mod common;

use std::process::Command;

use common::{Kafka, RunningHost, TestRecord, wait_until, write_config};

fn config(
    dir: &std::path::Path,
    out: &std::path::Path,
    delivery: &str,
    bootstrap: &str,
) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
            [kafka]
            bootstrap_servers = "{{bootstrap}}"
            [[pipeline]]
            name = "archive"
            inputs = ["in"]
            delivery = "{delivery}"
            plugins = [{{ path = "{{plugin:passthrough}}" }}]
            batch = {{ max_records = 10, linger_ms = 20 }}
            commit_interval_ms = 100
            [pipeline.outputs.local]
            file = {{ path = "{}" }}
            "#,
            out.display()
        ),
        bootstrap,
    )
}

#[test]
fn records_are_appended_as_json_lines_once_each_in_order() {
    let kafka = Kafka::with_topics(&[("in", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cfg = config(dir.path(), &out, "at-least-once", &kafka.bootstrap());
    let mut records: Vec<TestRecord> = (0..45)
        .map(|n| {
            (
                Some(format!("k-{n}")),
                Some(format!("{{\"n\":{n}}}").into_bytes()),
                vec![("origin".to_string(), "test".to_string())],
            )
        })
        .collect();
    // Not UTF-8: written as base64 beside a null value.
    records.push((Some("bin".into()), Some(vec![0xff, 0x00, 0xfe]), vec![]));
    kafka.produce("in", Some(0), &records);
    let host = RunningHost::start(&cfg);
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON object per line"))
            .collect::<Vec<_>>()
    };
    wait_until("every record is in the file", || lines().len() >= 46);
    host.stop().expect("clean stop");
    let lines = lines();
    assert_eq!(lines.len(), 46, "each record once");
    for (n, line) in lines.iter().take(45).enumerate() {
        assert_eq!(line["topic"], "in");
        assert_eq!(line["partition"], 0);
        assert_eq!(line["offset"], n as i64, "in order");
        assert_eq!(line["output"], "local");
        assert_eq!(line["key"], format!("k-{n}"));
        assert_eq!(line["value"], format!("{{\"n\":{n}}}"));
        assert_eq!(line["headers"]["origin"], "test");
        assert!(
            line["headers"]["sluice.version"]
                .as_str()
                .is_some_and(|v| v.starts_with("passthrough@")),
            "the version header, as on a topic: {line}"
        );
        assert!(line["timestamp"].is_i64());
    }
    assert_eq!(lines[45]["value"], serde_json::Value::Null);
    assert_eq!(lines[45]["value_base64"], "/wD+");
    assert_eq!(kafka.committed("sluice-archive", "in", 1), vec![46]);
}

#[test]
fn check_reports_the_file_and_refuses_exactly_once_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let sluice = |cfg: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["check", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let (ok, text) = sluice(&config(dir.path(), &out, "at-least-once", "127.0.0.1:9"));
    assert!(ok, "{text}");
    assert!(
        text.contains("output `local`: file") && text.contains("out.jsonl"),
        "{text}"
    );
    let (ok, text) = sluice(&config(dir.path(), &out, "exactly-once", "127.0.0.1:9"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("delivery")
            && text.contains("output `local` cannot take part in a transaction"),
        "{text}"
    );
    let missing = dir.path().join("no-such-folder/out.jsonl");
    let (ok, text) = sluice(&config(
        dir.path(),
        &missing,
        "at-least-once",
        "127.0.0.1:9",
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("no-such-folder") && text.contains("folder exists"),
        "{text}"
    );
}
