//! The docker-compose stack cannot run here (no Docker engine), so its files are checked
//! syntactically and against what Sluice really exports: the compose file, the config sluice runs
//! in it, the Prometheus scrape target and every metric the Grafana dashboard queries.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml_ng::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

#[test]
fn compose_file_runs_the_example_config_and_scrapes_it() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "kafka",
        "postgres",
        "sluice",
        "generator",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    // The config sluice runs is the shipped one, and it is valid.
    let command: Vec<&str> = compose["services"]["sluice"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command, ["run", "/app/examples/docker.toml"]);
    // SAFETY: this test binary reads no other variable of this name.
    unsafe { std::env::set_var("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092") };
    // SAFETY: as above.
    unsafe {
        std::env::set_var(
            "DATABASE_URL",
            "postgres://sluice:sluice@postgres:5432/sluice",
        )
    };
    // The operator token Prometheus scrapes with, as the compose file sets it.
    let token = compose["services"]["sluice"]["environment"]["SLUICE_OPERATOR_TOKEN"]
        .as_str()
        .expect("the compose file sets SLUICE_OPERATOR_TOKEN")
        .to_string();
    // SAFETY: as above.
    unsafe { std::env::set_var("SLUICE_OPERATOR_TOKEN", &token) };
    let config = sluice::testing::config::Config::load(&repo().join("examples/docker.toml"))
        .expect("examples/docker.toml is valid");
    let listen = config
        .admin
        .listen
        .expect("the example config serves /metrics");
    assert_eq!(listen.port(), 9464);

    // Every bind-mounted file exists.
    for service in services.values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(
                repo().join(source).exists(),
                "mounted {source} does not exist"
            );
        }
    }
    let prometheus = yaml("examples/observability/prometheus.yml");
    let target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(target, format!("sluice:{}", listen.port()));
    // Per-pipeline series need a token on admin.listen: Prometheus sends the operator's.
    let authorization = &prometheus["scrape_configs"][0]["authorization"];
    assert_eq!(authorization["type"].as_str(), Some("Bearer"));
    assert_eq!(
        authorization["credentials"].as_str(),
        config.admin.operator_token.as_deref(),
        "Prometheus scrapes with the operator token of examples/docker.toml"
    );
    assert_eq!(config.admin.operator_token.as_deref(), Some(token.as_str()));
}

#[test]
fn dashboard_queries_only_metrics_sluice_exports() {
    let text = std::fs::read_to_string(
        repo().join("examples/observability/grafana/dashboards/sluice.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("the dashboard is valid JSON");
    // Every metric name the host's sources mention (they describe and record them).
    fn read_all(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read_all(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut source = String::new();
    read_all(&repo().join("host/src"), &mut source);
    // A metric is exported when it is described (`describe_counter!("sluice_…", …)` and the
    // like), wherever that is.
    let exported: BTreeSet<String> = source
        .match_indices("describe_")
        .filter_map(|(i, _)| {
            let after = &source[i..];
            let call = after.split_once('!')?.0;
            if !["counter", "gauge", "histogram"].contains(&&call["describe_".len()..]) {
                return None;
            }
            let name = after.split_once("\"sluice_")?.1.split('"').next()?;
            Some(format!("sluice_{name}"))
        })
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    let mut queried = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            if target["datasource"]["uid"] == "postgres" {
                // SQL panels read the tables of examples/postgres/schema.sql; the seed scenario's
                // test runs their queries against a real Postgres (tests/shop_metrics.rs).
                let sql = target["rawSql"].as_str().expect("rawSql");
                let schema =
                    std::fs::read_to_string(repo().join("examples/postgres/schema.sql")).unwrap();
                let table = sql
                    .split_once("FROM ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .expect("the panel's SQL reads a table");
                assert!(
                    schema.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                    "panel `{}` reads table {table}, which examples/postgres/schema.sql does not create",
                    panel["title"]
                );
                continue;
            }
            let expr = target["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("sluice_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum")
                    .to_string();
                assert!(
                    exported.contains(&base),
                    "panel `{}` queries {name}, which Sluice does not export",
                    panel["title"]
                );
                queried.insert(base);
            }
        }
    }
    for needed in [
        "sluice_records_in_total",
        "sluice_consumer_lag",
        "sluice_end_to_end_latency_seconds",
        "sluice_records_dead_lettered_total",
        "sluice_plugin_reloads_total",
    ] {
        assert!(queried.contains(needed), "the dashboard shows no {needed}");
    }
}
