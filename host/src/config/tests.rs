//! Unit tests of the config: parsing, defaults, and errors that name the file and key.

use super::*;

const GOOD: &str = r#"
    [kafka]
    bootstrap_servers = "localhost:9092"
    properties = { "client.id" = "t" }

    [[pipeline]]
    name = "users"
    inputs = ["users.raw"]
    dead_letter_topic = "users.dlq"
    plugins = [{ path = "mask.wasm", config = { fields = "email", depth = 3 } }]
    [pipeline.outputs.clean]
    kafka_topic = "users.clean"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "sluice.toml", PathBuf::from("/etc/sluice"))
}

#[test]
fn parses_defaults_and_plugin_config_in_order() {
    let c = parse(GOOD).unwrap();
    let p = &c.pipelines[0];
    assert_eq!(p.group_id(), "sluice-users");
    assert_eq!(p.default_output(), Some("clean"));
    assert_eq!(p.batch.max_records, 1000);
    assert_eq!(
        p.plugins[0].config,
        vec![
            ("fields".into(), "email".into()),
            ("depth".into(), "3".into())
        ]
    );
    assert_eq!(p.plugins[0].name(), "mask");
    assert_eq!(
        c.plugin_path(&p.plugins[0]),
        PathBuf::from("/etc/sluice/mask.wasm")
    );
}

#[test]
fn unknown_key_names_file_key_and_expected() {
    let text = GOOD.replace(
        "dead_letter_topic",
        "batch = { max_recods = 5 }\n dead_letter_topic",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.starts_with("sluice.toml: pipeline[0].batch"), "{e}");
    assert!(
        e.contains("unknown field `max_recods`") && e.contains("max_records"),
        "{e}"
    );
}

#[test]
fn semantic_errors_name_the_key() {
    let text = GOOD.replace(
        "kafka_topic = \"users.clean\"",
        "kafka_topic = \"users.raw\"",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("pipeline[0].outputs.clean.kafka_topic") && e.contains("also an input"),
        "{e}"
    );

    let text = GOOD.replace(
        "dead_letter_topic = \"users.dlq\"",
        "default_output = \"nope\"",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("pipeline[0].default_output") && e.contains("declared: clean"),
        "{e}"
    );

    let text = GOOD.replace(
        "properties = {",
        "properties = { \"enable.auto.commit\" = \"true\", ",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("kafka.properties.enable.auto.commit"), "{e}");
}

#[test]
fn env_interpolation() {
    // SAFETY: tests in this module do not read this variable concurrently.
    unsafe { std::env::set_var("SLUICE_TEST_BROKERS", "b1:9092") };
    let text = GOOD.replace("localhost:9092", "${SLUICE_TEST_BROKERS}");
    assert_eq!(parse(&text).unwrap().kafka.bootstrap_servers, "b1:9092");

    let text = GOOD.replace("localhost:9092", "$${LITERAL}");
    assert_eq!(parse(&text).unwrap().kafka.bootstrap_servers, "${LITERAL}");

    let text = GOOD.replace("localhost:9092", "${SLUICE_TEST_UNSET_VAR}");
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("kafka.bootstrap_servers") && e.contains("`SLUICE_TEST_UNSET_VAR` is not set"),
        "{e}"
    );
}

#[test]
fn tenant_memory_quota_counts_every_instance_a_pipeline_can_hold() {
    let text = r#"
        [kafka]
        bootstrap_servers = "k:9092"
        [[tenant]]
        name = "acme"
        topic_prefixes = ["acme."]
        max_memory_mb = 500
        [[pipeline]]
        name = "p"
        tenant = "acme"
        inputs = ["acme.in"]
        workers = 2
        limits = { memory_mb = 64 }
        plugins = [{ path = "a.wasm" }, { path = "b.wasm" }]
        [pipeline.outputs.main]
        kafka_topic = "acme.out"
    "#;
    // 2 workers × 2 plugins × 64 MB × 2 (probation) = 512 MB > 500 MB.
    let e = parse(text).unwrap_err().to_string();
    assert!(
        e.contains("tenant[0].max_memory_mb") && e.contains("up to 512 MB"),
        "{e}"
    );
    let text = text.replace(
        "workers = 2",
        "workers = 2\n reload = { probation_records = 0 }",
    );
    assert!(parse(&text).is_ok(), "256 MB without probation fits");
}

#[test]
fn tenants_must_not_share_topics() {
    let text = r#"
        [kafka]
        bootstrap_servers = "k:9092"
        [[tenant]]
        name = "acme"
        topic_prefixes = ["acme"]
        [[tenant]]
        name = "acme-eu"
        topic_prefixes = ["acme-eu."]
    "#;
    let e = parse(&format!(
        "{text}{}",
        GOOD.split("[[pipeline]]")
            .nth(1)
            .map(|p| format!("[[pipeline]]{p}"))
            .unwrap()
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("prefix `acme` of tenant `acme` also covers prefix `acme-eu.`"),
        "{e}"
    );
}

#[test]
fn admin_tokens_must_be_long_and_distinct() {
    let pipeline = GOOD
        .split("[[pipeline]]")
        .nth(1)
        .map(|p| format!("[[pipeline]]{p}"))
        .unwrap();
    let config = |operator: &str, tenant: &str| {
        format!(
            "[kafka]\nbootstrap_servers = \"k:9092\"\n[admin]\noperator_token = \"{operator}\"\n\
             [[tenant]]\nname = \"acme\"\ntopic_prefixes = [\"\"]\nadmin_token = \"{tenant}\"\n{}",
            pipeline.replace("[[pipeline]]", "[[pipeline]]\ntenant = \"acme\"")
        )
    };
    let long = "0123456789abcdef-operator";
    let e = parse(&config("short", "0123456789abcdef-tenant"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("admin.operator_token: expected at least 16"),
        "{e}"
    );
    let e = parse(&config(long, long)).unwrap_err().to_string();
    assert!(
        e.contains("tenant[0].admin_token: is the same token as admin.operator_token"),
        "{e}"
    );
}

/// Two tenants, `acme` (with `prefix`) and `globex` (`globex.`), and one pipeline of `acme`
/// with these `inputs` (a TOML array) and `extra` keys.
fn tenant_config(prefix: &str, inputs: &str, extra: &str) -> String {
    format!(
        r#"
        [kafka]
        bootstrap_servers = "k:9092"
        [[tenant]]
        name = "acme"
        topic_prefixes = ["{prefix}"]
        [[tenant]]
        name = "globex"
        topic_prefixes = ["globex."]
        [[pipeline]]
        name = "copy"
        tenant = "acme"
        inputs = {inputs}
        {extra}
        plugins = [{{ path = "p.wasm" }}]
        [pipeline.outputs.out]
        kafka_topic = "{prefix}out"
        "#
    )
}

#[test]
fn tenant_prefixes_are_literal_topic_names() {
    for bad in ["^", "acme.*", "acme|", "ac me.", "acmé."] {
        let e = parse(&tenant_config(bad, r#"["x"]"#, ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sluice.toml: tenant[0].topic_prefixes: ")
                && e.contains(&format!("`{bad}` is not a literal topic-name prefix"))
                && e.contains("letters, digits, `.`, `_` and `-`"),
            "{bad}: {e}"
        );
    }
    for good in ["acme.", "acme_", "acme-", "ACME.9"] {
        parse(&tenant_config(good, &format!(r#"["{good}in"]"#), ""))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn a_tenants_pattern_must_stay_inside_its_prefixes() {
    let check = |inputs: &str| parse(&tenant_config("acme.", inputs, ""));
    for good in [
        r#"['^acme\..*']"#,
        r#"['^acme\.in-[0-9]+$']"#,
        r#"['^acme\.(in)+']"#,
        r#"['^acme\.']"#,
    ] {
        check(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        // librdkafka reads these as patterns matching other tenants' topics.
        (
            r#"['^globex\..*']"#,
            "does not start with one of the tenant's prefixes",
        ),
        (
            r#"['^.*']"#,
            "does not start with one of the tenant's prefixes",
        ),
        (
            r#"['^acme..*']"#,
            "does not start with one of the tenant's prefixes",
        ),
        (
            r#"['^acme[.]in']"#,
            "does not start with one of the tenant's prefixes",
        ),
        (r#"['^acme\.|^globex\.']"#, "has an alternative"),
        (r#"['^acme\.(in|.*)']"#, "has an alternative"),
        (
            r#"['^acme\.?globex']"#,
            "makes optional the prefix's last character",
        ),
        (
            r#"['^acme\.*']"#,
            "makes optional the prefix's last character",
        ),
        (
            r#"['^acme\.{0}']"#,
            "makes optional the prefix's last character",
        ),
    ] {
        let e = check(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("sluice.toml: pipeline[0].inputs[0]: subscription pattern `")
                && e.contains(why)
                && e.contains(r#"e.g. `^acme\..*`"#),
            "{bad}: {e}"
        );
    }
    // Without tenants, patterns are the operator's own business.
    let text = GOOD.replace(r#"inputs = ["users.raw"]"#, r#"inputs = ["^.*"]"#);
    parse(&text).unwrap();
}

#[test]
fn a_tenants_consumer_groups_are_in_its_namespace() {
    // The default is derived from the pipeline name, inside the tenant's first prefix.
    let c = parse(&tenant_config("acme.", r#"["acme.in"]"#, "")).unwrap();
    assert_eq!(c.pipelines[0].group_id(), "acme.sluice-copy");
    let c = parse(&tenant_config(
        "acme.",
        r#"["acme.in"]"#,
        r#"group_id = "acme.readers""#,
    ))
    .unwrap();
    assert_eq!(c.pipelines[0].group_id(), "acme.readers");
    for bad in ["globex.readers", "sluice-copy", "acmereaders", ""] {
        let e = parse(&tenant_config(
            "acme.",
            r#"["acme.in"]"#,
            &format!(r#"group_id = "{bad}""#),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("sluice.toml: pipeline[0].group_id: ")
                && e.contains(&format!(
                    "consumer group `{bad}` is not in tenant `acme`'s namespace"
                ))
                && e.contains(r#"e.g. "acme.sluice-copy""#),
            "{bad}: {e}"
        );
    }
    // Without tenants, the default stays `sluice-<name>`.
    assert_eq!(parse(GOOD).unwrap().pipelines[0].group_id(), "sluice-users");
}

#[test]
fn a_tenants_outputs_and_dead_letters_stay_in_its_prefixes() {
    for (extra, key) in [
        (r#"dead_letter_topic = "globex.dlq""#, "dead_letter_topic"),
        (r#"dead_letter_topic = '^acme\..*'"#, "dead_letter_topic"),
    ] {
        let e = parse(&tenant_config("acme.", r#"["acme.in"]"#, extra))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("pipeline[0].{key}: topic `")), "{e}");
    }
    let text = tenant_config("acme.", r#"["acme.in"]"#, "").replace(
        r#"kafka_topic = "acme.out""#,
        r#"kafka_topic = "globex.out""#,
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains(
            "pipeline[0].outputs.out.kafka_topic: topic `globex.out` belongs to tenant `globex`"
        ),
        "{e}"
    );
}

#[test]
fn admin_limits_are_checked() {
    let text = GOOD.replace(
        "[[pipeline]]",
        "[admin]\nmax_upload_bytes = 0\n[[pipeline]]",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("admin.max_upload_bytes: expected at least 1"),
        "{e}"
    );
    let text = GOOD.replace(
        "[[pipeline]]",
        "[admin]\nmetrics_listen = \"127.0.0.1:9465\"\n[[pipeline]]",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("admin.metrics_listen: needs admin.listen"),
        "{e}"
    );
    let c = parse(GOOD).unwrap();
    assert_eq!(c.admin.max_upload_bytes, 64 * 1024 * 1024);
}

#[test]
fn bad_toml_is_reported_with_position() {
    let e = parse("[kafka\n").unwrap_err().to_string();
    assert!(e.starts_with("sluice.toml: not valid TOML"), "{e}");
}
