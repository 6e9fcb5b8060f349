//! The `sluice check` and `sluice test` commands, run as a user would, with their error paths.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{plugin, write_config};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("running sluice")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn config_with_plugin(dir: &Path, plugin_path: &str, plugin_config: &str) -> String {
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9"
        [[pipeline]]
        name = "users"
        inputs = ["in"]
        plugins = [{{ path = "{plugin_path}", config = {{ {plugin_config} }} }}]
        [pipeline.outputs.main]
        kafka_topic = "out"
        "#
    );
    write_config(dir, &text, "").display().to_string()
}

#[test]
fn check_accepts_a_valid_config_without_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_plugin(
        dir.path(),
        &plugin("mask_pii").display().to_string(),
        "fields = \"email\"",
    );
    let o = sluice(&["check", &cfg]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("plugin `mask_pii` version"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_missing_plugin_file_is_reported_once_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone.wasm");
    let cfg = config_with_plugin(dir.path(), &missing.display().to_string(), "");
    for command in ["check", "run"] {
        let o = sluice(&[command, &cfg]);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(
            t.contains("cannot read plugin file") && t.contains("gone.wasm"),
            "{t}"
        );
        assert_eq!(
            t.matches("No such file or directory").count(),
            1,
            "`sluice {command}` says it once: {t}"
        );
    }
}

#[test]
fn check_names_a_file_that_is_not_webassembly() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("notes.wasm");
    std::fs::write(&bogus, "not a component").unwrap();
    let cfg = config_with_plugin(dir.path(), &bogus.display().to_string(), "");
    let o = sluice(&["check", &cfg]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("notes.wasm is not a WebAssembly file"), "{t}");
}

#[test]
fn check_names_a_component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_plugin(dir.path(), &plugin("wrong_world").display().to_string(), "");
    let o = sluice(&["check", &cfg]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("wrong_world.wasm does not implement sluice:plugin/transform@0.3.0"),
        "{t}"
    );
}

#[test]
fn check_reports_a_plugin_that_refuses_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_plugin(
        dir.path(),
        &plugin("mask_pii").display().to_string(),
        "colour = \"blue\"",
    );
    let o = sluice(&["check", &cfg]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("plugin `mask_pii`")
            && t.contains("refused its config: unknown config key `colour`"),
        "{t}"
    );
}

#[test]
fn check_reports_config_errors_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[kafka]\nbootstrap_servers = \"x:1\"\n[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\nplugins = []\nworkerz = 3\n",
    )
    .unwrap();
    let o = sluice(&["check", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.toml: pipeline[0]") && t.contains("unknown field `workerz`"),
        "{t}"
    );
}

#[test]
fn test_prints_outputs_and_rejections_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"key": "u1", "value": "{\"id\":\"u1\",\"email\":\"ada@example.com\",\"phone\":\"555-0100\"}", "headers": {"src": "form"}}"#, "\n",
            r#"{"key": null, "value": "{\"id\":\"u2\",\"email\":\"broken\"}"}"#, "\n",
            r#"{"key": "bin", "value_base64": "AP8="}"#, "\n",
        ),
    )
    .unwrap();
    let o = sluice(&[
        "test",
        plugin("mask_pii").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["input"], 0);
    assert_eq!(lines[0]["output"], serde_json::Value::Null);
    assert_eq!(lines[0]["key"], "u1");
    assert_eq!(lines[0]["headers"]["src"], "form");
    assert_eq!(
        lines[0]["value"],
        r#"{"id":"u1","email":"a****@example.com","phone":"***-**00"}"#
    );
    assert_eq!(lines[1]["input"], 1);
    assert_eq!(lines[1]["error"], "invalid email `broken`");
    assert_eq!(lines[2]["input"], 2);
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("value is not a JSON object")
    );
}

#[test]
fn test_reports_bad_input_lines_and_refused_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"value\": \"ok\"}\n{\"value\": 5}\n").unwrap();
    let o = sluice(&[
        "test",
        plugin("passthrough").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("in.jsonl:2") && t.contains("`value` must be a string or null"),
        "{t}"
    );

    let o = sluice(&[
        "test",
        plugin("mask_pii").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--config",
        "fields=",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("refused its config: config `fields` must name at least one field"),
        "{}",
        text(&o)
    );

    let o = sluice(&[
        "test",
        "/nonexistent/x.wasm",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot read plugin file /nonexistent/x.wasm"),
        "{}",
        text(&o)
    );
}

#[test]
fn dev_runs_the_demo_and_stops_by_itself() {
    // The shipped demo config, with plugin paths pointing at the freshly built plugins.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let shipped = std::fs::read_to_string(root.join("examples/dev.toml")).unwrap();
    let demo = shipped
        .replace("../build/plugins/mask_pii.wasm", "{plugin:mask_pii}")
        .replace(
            "../build/plugins/route_events.wasm",
            "{plugin:route_events}",
        )
        .replace("../build/plugins/passthrough.wasm", "{plugin:passthrough}")
        .replace(
            "../build/plugins/shop_metrics.wasm",
            "{plugin:shop_metrics}",
        );
    assert_ne!(demo, shipped, "examples/dev.toml names the example plugins");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &demo, "");
    // The file output's path is relative to where `sluice dev` runs.
    std::fs::create_dir_all(dir.path().join("build")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "dev",
            "--config",
            cfg.to_str().unwrap(),
            "--duration",
            "8",
            "--samples",
            "50",
        ])
        .current_dir(dir.path())
        .output()
        .expect("running sluice dev");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("users.clean │") && t.contains("****@example.com"),
        "masked sign-ups shown: {t}"
    );
    assert!(t.contains("shop.views │"), "routed events shown: {t}");
    assert!(
        t.contains("shop.user-totals │") && t.contains("\"cart_adds\":"),
        "the stateful shop pipeline's running totals shown: {t}"
    );
    assert!(
        t.contains("⟵"),
        "dead-lettered records shown with their reason: {t}"
    );
    assert!(t.contains("records/s"), "throughput shown: {t}");
    // Purchases archived as JSON lines by the file output.
    let archive = std::fs::read_to_string(dir.path().join("build/dev-purchases.jsonl"))
        .expect("the file output was written");
    let lines: Vec<serde_json::Value> = archive
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(!lines.is_empty(), "purchases archived: {t}");
    assert!(
        lines
            .iter()
            .all(|l| l["topic"] == "shop.purchases" && l["output"] == "archive"),
        "{archive}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["value"].as_str().is_some_and(|v| v.contains("purchase"))),
        "{archive}"
    );
}
