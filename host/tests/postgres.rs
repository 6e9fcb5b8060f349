//! The Postgres sink against a real PostgreSQL server (a throwaway one started with initdb +
//! pg_ctl, or `SLUICE_TEST_DATABASE_URL`) and the mock Kafka cluster: every column type, insert
//! and upsert, bad rows to the dead-letter topic, exactly-once across SIGKILLs, and a database
//! restart mid-stream.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::{HostProcess, Kafka, Load, RunningHost, write_config};

/// The operator token of the configs that serve metrics.
const OPERATOR_TOKEN: &str = "postgres-test-operator-token";

/// The admin listener's `/metrics` text, as the operator sees it.
fn scrape(port: u16) -> String {
    // Per-pipeline series are shown only with a token (the operator's shows everything).
    let (status, body) = common::http(port, "GET", "/metrics", Some(OPERATOR_TOKEN), b"");
    assert_eq!(status, 200, "/metrics: {body}");
    body
}

fn json(v: serde_json::Value) -> common::TestRecord {
    (None, Some(v.to_string().into_bytes()), vec![])
}

/// Waits until `query` (a count) reaches `n`; returns the last count.
fn wait_count(pg: &Postgres, query: &str, n: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = pg.query_fresh(query);
        let count: i64 = rows[0].get(0);
        if count >= n || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const TYPES_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[[pipeline]]
name = "typed"
inputs = ["typed.in"]
plugins = [{ path = "{plugin:passthrough}" }]
dead_letter_topic = "typed.dlq"
batch = { max_records = 100, linger_ms = 50 }
[pipeline.outputs.db.postgres]
url = "{url}"
table = "typed"
rename = { userName = "name" }
metadata = { key = "kafka_key", headers = "headers", topic = "src_topic", partition = "src_partition", offset = "src_offset", timestamp = "kafka_ts", value = "payload" }

[[pipeline]]
name = "users"
inputs = ["users.in"]
plugins = [{ path = "{plugin:passthrough}" }]
dead_letter_topic = "users.dlq"
batch = { max_records = 100, linger_ms = 50 }
[pipeline.outputs.db.postgres]
url = "{url}"
table = "users"
mode = "upsert"
key = ["user_id"]
"#;

#[test]
fn every_column_type_insert_and_upsert_and_metadata_columns() {
    let pg = Postgres::new();
    pg.execute(
        "CREATE TABLE typed (
            id integer NOT NULL, small smallint, big bigint, name text, code varchar(10),
            flag char(1), price numeric(10,3), ratio real, score double precision,
            active boolean, seen_at timestamptz, plain_ts timestamp, day date, uid uuid,
            doc json, tags jsonb, raw bytea, created_at timestamptz DEFAULT '1999-01-01Z',
            kafka_key text, headers jsonb, src_topic text, src_partition integer,
            src_offset bigint, kafka_ts timestamptz, payload jsonb);
         CREATE TABLE users (user_id text PRIMARY KEY, email text, plan text, logins integer);",
    );
    let kafka = Kafka::with_topics(&[
        ("typed.in", 1),
        ("typed.dlq", 1),
        ("users.in", 1),
        ("users.dlq", 1),
    ]);
    let full = serde_json::json!({
        "id": 1, "small": 7, "big": 9007199254740993i64, "userName": "Ann", "code": "A1",
        "flag": "y", "price": "12.5", "ratio": 0.5, "score": 1e-3, "active": true,
        "seen_at": "2024-05-01T12:00:00+02:00", "plain_ts": "2024-05-01 10:00:00",
        "day": "2024-05-01", "uid": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "doc": {"a": [1, 2]}, "tags": ["x", "ü"], "raw": "bytes", "unknown_field": 1
    });
    let mut first = json(full);
    first.0 = Some("key-1".into());
    first.2 = vec![("h1".into(), "v1".into())];
    kafka.produce(
        "typed.in",
        Some(0),
        &[
            first,
            // Strings convert to numbers and booleans; a number is epoch milliseconds; absent
            // fields are NULL and the defaulted column keeps its default.
            json(
                serde_json::json!({"id": 2, "small": "8", "price": 3, "active": "false",
                                    "seen_at": 1714557600000i64, "name": "not-renamed"}),
            ),
            // A defaulted column given by the record is written.
            json(
                serde_json::json!({"id": 3, "created_at": "2020-01-01T00:00:00Z", "price": -0.001}),
            ),
        ],
    );
    kafka.produce(
        "users.in",
        Some(0),
        &[
            json(serde_json::json!({"user_id": "u1", "email": "a@x", "plan": "free", "logins": 1})),
            json(serde_json::json!({"user_id": "u2", "email": "b@x", "plan": "free", "logins": 1})),
            // Same key twice in one batch: the last one wins.
            json(serde_json::json!({"user_id": "u1", "email": "a@y", "plan": "pro", "logins": 2})),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TYPES_CONFIG.replace("{url}", &pg.url),
        &kafka.bootstrap(),
    );
    let host = RunningHost::start(&config);
    assert_eq!(
        wait_count(
            &pg,
            "SELECT count(*) FROM typed",
            3,
            Duration::from_secs(60)
        ),
        3
    );
    assert_eq!(
        wait_count(
            &pg,
            "SELECT count(*) FROM users WHERE plan = 'pro'",
            1,
            Duration::from_secs(60)
        ),
        1
    );
    // A later batch updates a key written before.
    kafka.produce(
        "users.in",
        Some(0),
        &[json(
            serde_json::json!({"user_id": "u2", "email": "b@z", "plan": "team", "logins": 5}),
        )],
    );
    assert_eq!(
        wait_count(
            &pg,
            "SELECT count(*) FROM users WHERE plan = 'team'",
            1,
            Duration::from_secs(60)
        ),
        1
    );
    host.stop().unwrap();

    let row = &pg.query(
        "SELECT small, big, name, code, flag, price::text, ratio, score, active,
                seen_at = '2024-05-01T10:00:00Z', plain_ts::text, day::text, uid::text,
                doc::text, tags::text, convert_from(raw, 'UTF8'), created_at = '1999-01-01Z',
                kafka_key, headers->>'h1', src_topic, src_partition, src_offset,
                kafka_ts IS NOT NULL, payload->>'userName'
         FROM typed WHERE id = 1",
    )[0];
    assert_eq!(row.get::<_, i16>(0), 7);
    assert_eq!(row.get::<_, i64>(1), 9007199254740993);
    assert_eq!(row.get::<_, &str>(2), "Ann", "renamed field");
    assert_eq!(row.get::<_, &str>(3), "A1");
    assert_eq!(row.get::<_, &str>(4), "y");
    assert_eq!(row.get::<_, &str>(5), "12.500");
    assert_eq!(row.get::<_, f32>(6), 0.5);
    assert_eq!(row.get::<_, f64>(7), 1e-3);
    assert!(row.get::<_, bool>(8));
    assert!(row.get::<_, bool>(9), "timestamptz with offset");
    assert_eq!(row.get::<_, &str>(10), "2024-05-01 10:00:00");
    assert_eq!(row.get::<_, &str>(11), "2024-05-01");
    assert_eq!(
        row.get::<_, &str>(12),
        "67e55044-10b1-426f-9247-bb680e5fe0c8"
    );
    assert_eq!(row.get::<_, &str>(13), r#"{"a":[1,2]}"#);
    assert_eq!(row.get::<_, &str>(14), r#"["x", "ü"]"#);
    assert_eq!(row.get::<_, &str>(15), "bytes");
    assert!(
        row.get::<_, bool>(16),
        "default kept when the field is absent"
    );
    assert_eq!(row.get::<_, &str>(17), "key-1");
    assert_eq!(row.get::<_, &str>(18), "v1");
    assert_eq!(row.get::<_, &str>(19), "typed.in");
    assert_eq!(row.get::<_, i32>(20), 0);
    assert_eq!(row.get::<_, i64>(21), 0);
    assert!(row.get::<_, bool>(22));
    assert_eq!(row.get::<_, &str>(23), "Ann", "whole value as jsonb");

    let row = &pg.query(
        "SELECT small, price::text, active, seen_at = '2024-05-01T10:00:00Z', name IS NULL,
                big IS NULL, created_at = '1999-01-01Z', kafka_key IS NULL
         FROM typed WHERE id = 2",
    )[0];
    assert_eq!(row.get::<_, i16>(0), 8);
    assert_eq!(row.get::<_, &str>(1), "3.000");
    assert!(!row.get::<_, bool>(2));
    assert!(row.get::<_, bool>(3), "epoch milliseconds");
    assert!(
        row.get::<_, bool>(4),
        "`name` is filled from `userName` only"
    );
    assert!(row.get::<_, bool>(5));
    assert!(row.get::<_, bool>(6));
    assert!(row.get::<_, bool>(7), "no key → NULL");
    let row =
        &pg.query("SELECT created_at = '2020-01-01Z', price::text FROM typed WHERE id = 3")[0];
    assert!(
        row.get::<_, bool>(0),
        "a defaulted column given by the record"
    );
    assert_eq!(row.get::<_, &str>(1), "-0.001");

    let users: Vec<(String, String, String, i32)> = pg
        .query("SELECT user_id, email, plan, logins FROM users ORDER BY user_id")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        users,
        vec![
            ("u1".into(), "a@y".into(), "pro".into(), 2),
            ("u2".into(), "b@z".into(), "team".into(), 5)
        ]
    );
}

const BAD_ROWS_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[admin]
listen = "127.0.0.1:PORT"
operator_token = "postgres-test-operator-token"
[[pipeline]]
name = "orders-DELIVERY"
inputs = ["orders.in"]
plugins = [{ path = "{plugin:passthrough}" }]
dead_letter_topic = "orders.dlq"
delivery = "DELIVERY"
batch = { max_records = 100, linger_ms = 300 }
[pipeline.outputs.db.postgres]
url = "{url}"
table = "orders"
"#;

#[test]
fn bad_rows_go_to_the_dead_letter_topic_and_good_rows_are_written_once() {
    for delivery in ["at-least-once", "exactly-once"] {
        let pg = Postgres::new();
        pg.execute(
            "CREATE TABLE orders (id integer PRIMARY KEY, qty integer NOT NULL CHECK (qty > 0), note text)",
        );
        let kafka = Kafka::with_topics(&[("orders.in", 1), ("orders.dlq", 1)]);
        let port = common::free_port();
        let records = vec![
            json(serde_json::json!({"id": 1, "qty": 1})),
            json(serde_json::json!({"id": 2, "qty": "many"})),
            json(serde_json::json!({"id": 3})),
            json(serde_json::json!({"id": 4, "qty": 0})),
            json(serde_json::json!({"id": 1, "qty": 5})),
            (None, Some(b"not json".to_vec()), vec![]),
            json(serde_json::json!({"id": 5, "qty": 2})),
            json(serde_json::json!({"id": 6, "qty": 3, "note": "ok"})),
            json(serde_json::json!({"id": 7, "qty": 99999999999i64})),
        ];
        kafka.produce("orders.in", Some(0), &records);
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &BAD_ROWS_CONFIG
                .replace("{url}", &pg.url)
                .replace("DELIVERY", delivery)
                .replace("PORT", &port.to_string()),
            &kafka.bootstrap(),
        );
        let host = RunningHost::start(&config);
        let dlq = kafka.read_count(&["orders.dlq"], 6, Duration::from_secs(60));
        assert_eq!(
            wait_count(
                &pg,
                "SELECT count(*) FROM orders",
                3,
                Duration::from_secs(30)
            ),
            3
        );
        std::thread::sleep(Duration::from_millis(500));
        // The metrics say the same.
        let metrics = scrape(port);
        let line = |name: &str, label: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(name)
                        && l.contains(&format!("pipeline=\"orders-{delivery}\""))
                        && l.contains(label)
                })
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no {name} {label} in\n{metrics}"))
                .to_string()
        };
        assert_eq!(
            line("sluice_postgres_rows_written_total", "output=\"db\""),
            "3"
        );
        assert_eq!(
            line(
                "sluice_records_dead_lettered_total",
                "reason=\"row:rejected\""
            ),
            "2"
        );
        assert_eq!(
            line(
                "sluice_records_dead_lettered_total",
                "reason=\"row:conversion\""
            ),
            "4"
        );
        assert_eq!(line("sluice_postgres_write_seconds_count", ""), "1");
        host.stop().unwrap();

        let ids: Vec<i32> = pg
            .query("SELECT id FROM orders ORDER BY id")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, vec![1, 5, 6], "{delivery}: good rows once each");
        let qty: i32 = pg.query("SELECT qty FROM orders WHERE id = 1")[0].get(0);
        assert_eq!(qty, 1, "the first id 1 won; the duplicate was refused");

        assert_eq!(dlq.len(), 6, "{delivery}: {dlq:#?}");
        let by_offset = |o: &str| {
            dlq.iter()
                .find(|r| r.header("sluice.source.offset") == Some(o))
                .unwrap_or_else(|| panic!("{delivery}: offset {o} not in the DLQ: {dlq:#?}"))
        };
        let expect = [
            ("1", "row:conversion", "not an integer"),
            ("2", "row:conversion", "field `qty` is missing"),
            ("3", "row:rejected", "check constraint"),
            ("4", "row:rejected", "duplicate key"),
            ("5", "row:conversion", "not JSON"),
            ("8", "row:conversion", "out of range for integer"),
        ];
        for (offset, reason, message) in expect {
            let r = by_offset(offset);
            assert_eq!(
                r.header("sluice.error.reason"),
                Some(reason),
                "{delivery}: {r:?}"
            );
            let text = r.header("sluice.error.message").unwrap();
            assert!(
                text.contains(message) && text.contains("table"),
                "{delivery}: offset {offset}: {text}"
            );
        }
        assert_eq!(
            by_offset("5").value_str(),
            "not json",
            "the input record, unchanged"
        );
    }
}

#[test]
fn a_missing_table_is_a_check_error_that_prints_the_create_table() {
    let pg = Postgres::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &r#"
[kafka]
bootstrap_servers = "localhost:9"
[[pipeline]]
name = "users"
inputs = ["users.in"]
plugins = [{ path = "{plugin:passthrough}" }]
[pipeline.outputs.db.postgres]
url = "{url}"
table = "users"
mode = "upsert"
key = ["user_id"]
columns = { user_id = "text", email = "text" }
metadata = { timestamp = "signed_up_at" }
"#
        .replace("{url}", &pg.url),
        "unused",
    );
    let check = |config: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("check")
            .arg(config)
            .output()
            .unwrap()
    };
    let out = check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("table `users` does not exist")
            && stdout.contains("CREATE TABLE users (")
            && stdout.contains("\"email\" text")
            && stdout.contains("\"signed_up_at\" timestamptz")
            && stdout.contains("PRIMARY KEY (\"user_id\")"),
        "{stdout}"
    );
    // The printed statement is the one create_table runs; with it the check passes.
    pg.execute("CREATE TABLE users (user_id text, email text, signed_up_at timestamptz)");
    let out = check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "no unique index for the upsert key");
    assert!(stdout.contains("CREATE UNIQUE INDEX ON"), "{stdout}");
    pg.execute("CREATE UNIQUE INDEX ON users (user_id)");
    let out = check(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

const STREAM_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
# A killed member must leave the group quickly for the restart to get its partitions.
consumer = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }
[[pipeline]]
name = "events"
inputs = ["events.in"]
plugins = [{ path = "{plugin:passthrough}" }]
delivery = "exactly-once"
batch = { max_records = 50, linger_ms = 20 }
commit_interval_ms = COMMIT
[pipeline.outputs.db.postgres]
url = "{url}"
table = "events"
metadata = { value = "value", partition = "src_partition", offset = "src_offset" }
"#;

/// Every record the load wrote is in the table exactly once.
fn assert_exactly_once(pg: &Postgres, written: &[u64]) {
    let total: u64 = written.iter().sum();
    let count = wait_count(
        pg,
        "SELECT count(*) FROM events",
        total as i64,
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_secs(1)); // anything late would be a duplicate
    let rows = pg.query_fresh(
        "SELECT count(*), count(DISTINCT value), count(DISTINCT (src_partition, src_offset)) FROM events",
    );
    let (rows, distinct, positions): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert!(count >= total as i64, "{count} of {total} rows arrived");
    assert_eq!(distinct, total as i64, "every input is in the table");
    assert_eq!(rows, total as i64, "and no input twice");
    assert_eq!(positions, total as i64);
    for (p, n) in written.iter().enumerate() {
        let last: i64 = pg.query_fresh(&format!(
            "SELECT count(*) FROM events WHERE value = 'v-{p}-{}'",
            n - 1
        ))[0]
            .get(0);
        assert_eq!(last, 1, "partition {p}'s last record");
    }
}

#[test]
fn exactly_once_survives_sigkill_at_several_points() {
    let pg = Postgres::new();
    pg.execute(
        "CREATE TABLE events (value text NOT NULL, src_partition integer, src_offset bigint)",
    );
    let kafka = Kafka::with_topics(&[("events.in", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let config = |commit: &str| {
        write_config(
            dir.path(),
            &STREAM_CONFIG
                .replace("{url}", &pg.url)
                .replace("COMMIT", commit),
            &kafka.bootstrap(),
        )
    };
    let load = Load::start(
        &kafka.bootstrap(),
        "events.in",
        3,
        30,
        Duration::from_millis(10),
    );
    // Kafka commits every 10 minutes in the first runs, so each restart reads from the start
    // and must skip what the offsets table says is written; the last runs commit often.
    for (i, (commit, rows)) in [("600000", 300), ("600000", 1500), ("100", 3000)]
        .into_iter()
        .enumerate()
    {
        let host = HostProcess::start(&config(commit), "a");
        let reached = wait_count(
            &pg,
            "SELECT count(*) FROM events",
            rows,
            Duration::from_secs(90),
        );
        assert!(reached >= rows, "run {i}: only {reached} rows");
        host.kill(); // SIGKILL, mid-stream: the load keeps producing
    }
    let written = load.stop();
    let last = HostProcess::start(&config("100"), "a");
    assert_exactly_once(&pg, &written);
    last.kill();
}

#[test]
fn postgres_stopped_mid_stream_then_started_again_loses_and_duplicates_nothing() {
    let pg = Postgres::own_server();
    pg.execute(
        "CREATE TABLE events (value text NOT NULL, src_partition integer, src_offset bigint)",
    );
    let kafka = Kafka::with_topics(&[("events.in", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &STREAM_CONFIG
            .replace("{url}", &pg.url)
            .replace("COMMIT", "100"),
        &kafka.bootstrap(),
    );
    let load = Load::start(
        &kafka.bootstrap(),
        "events.in",
        3,
        30,
        Duration::from_millis(10),
    );
    let host = RunningHost::start(&config);
    assert!(
        wait_count(
            &pg,
            "SELECT count(*) FROM events",
            300,
            Duration::from_secs(60)
        ) >= 300
    );
    pg.stop_server();
    std::thread::sleep(Duration::from_secs(4));
    let during = host
        .stats
        .records_in
        .load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        host.stats
            .records_in
            .load(std::sync::atomic::Ordering::Relaxed)
            <= during + 200,
        "consuming pauses while the database is down"
    );
    pg.start_server();
    std::thread::sleep(Duration::from_secs(2));
    let written = load.stop();
    assert_exactly_once(&pg, &written);
    host.stop().unwrap();
}

#[test]
fn the_postgres_example_lands_sign_ups_and_purchases_in_their_tables() {
    let pg = Postgres::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    pg.execute(&std::fs::read_to_string(repo.join("examples/postgres/schema.sql")).unwrap());
    // The example's plugin paths point into build/plugins (`make plugins`); link them there.
    let plugins = repo.join("build/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["mask_pii", "route_events"] {
        let _ = std::fs::copy(common::plugin(name), plugins.join(format!("{name}.wasm")));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(repo)
        .args([
            "dev",
            "--config",
            "examples/postgres.toml",
            "--duration",
            "12",
        ])
        .env("DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users = pg.number("SELECT count(*) FROM users");
    let masked = pg.number("SELECT count(*) FROM users WHERE email LIKE '_****@%'");
    let purchases = pg.number("SELECT count(*) FROM purchases");
    let offsets = pg.number("SELECT count(*) FROM sluice_offsets WHERE pipeline = 'users-db'");
    assert!(users > 100, "{users} users");
    assert_eq!(masked, users, "every email is masked");
    assert!(purchases > 10, "{purchases} purchases");
    assert!(offsets > 0, "exactly-once offsets are stored");
}

/// The sink driven as a worker drives it (plugin call, conversion, write), batch by batch.
struct Driver {
    config: sluice::testing::config::Config,
    sink: std::sync::Arc<sluice::testing::sinks::postgres::PostgresSink>,
    chain: sluice::testing::chain::Chain,
    session: sluice::testing::sinks::postgres::Session,
    rows: sluice::testing::sinks::postgres::Rows,
    tokio: tokio::runtime::Runtime,
}

impl Driver {
    fn new(url: &str, table: &str, extra: &str, delivery: &str) -> Driver {
        use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
        let text = format!(
            r#"
[kafka]
bootstrap_servers = "unused:9092"
[[pipeline]]
name = "drive-{table}"
inputs = ["in"]
delivery = "{delivery}"
plugins = [{{ path = "{}" }}]
[pipeline.outputs.db.postgres]
url = "{url}"
table = "{table}"
{extra}
"#,
            common::plugin("passthrough").display()
        );
        let config =
            sluice::testing::config::Config::parse(&text, "drive.toml", ".".into()).unwrap();
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = tokio
            .block_on(sluice::testing::sinks::postgres::PostgresSink::connect(
                &config.pipelines[0].sink_spec(),
                &config.pipelines[0].router(),
            ))
            .unwrap()
            .unwrap();
        let runtime = Runtime::new(ComponentCache::default_dir()).unwrap();
        let spec = PluginSpec {
            name: "passthrough".into(),
            path: common::plugin("passthrough"),
            config: vec![],
            limits: Default::default(),
            scope: String::new(),
            tenant: String::new(),
        };
        let chain = sluice::testing::chain::Chain::new(vec![runtime.load(&spec).unwrap()]);
        Driver {
            config,
            sink,
            chain,
            session: Default::default(),
            rows: Default::default(),
            tokio,
        }
    }

    /// Converts `values` (input i is values[i], offset `first + i`), runs `between` (after the
    /// conversion, before the write), keeps the rows of the inputs `keep` accepts (as a worker
    /// does after another sink refused some) and writes. Returns the refused inputs and
    /// whether the batch was skipped.
    fn batch(
        &mut self,
        values: &[serde_json::Value],
        first: i64,
        between: impl FnOnce(),
        keep: impl Fn(u32) -> bool,
    ) -> (Vec<u32>, bool) {
        let mut input = sluice_abi::InputBatch::default();
        let t = input.topic_index("in");
        for (i, v) in values.iter().enumerate() {
            let v = v.to_string();
            input.push(
                None,
                Some(v.as_bytes()),
                [],
                Some(1),
                t,
                0,
                first + i as i64,
            );
        }
        let router = self.config.pipelines[0].router();
        let out = self.chain.process(&mut input).unwrap();
        let mut failed: Vec<u32> = self
            .sink
            .encode(&router, &out, &input, &mut self.rows, &mut self.session)
            .iter()
            .map(|f| f.input)
            .collect();
        between();
        self.rows.retain_inputs(|i| keep(i) && !failed.contains(&i));
        let stamp = self
            .sink
            .exactly_once()
            .then(|| sluice::testing::sinks::Stamp {
                tp: ("in".into(), 0),
                first_offset: first,
                next_offset: first + values.len() as i64,
            });
        let written = self
            .tokio
            .block_on(self.sink.write(
                &mut self.session,
                &self.rows,
                stamp.as_ref(),
                &mut |_| Ok(()),
                &|| false,
            ))
            .unwrap();
        failed.extend(written.failures.iter().map(|f| f.input));
        failed.sort();
        (failed, written.skipped)
    }
}

fn rows(ids: std::ops::Range<i64>, note: bool) -> Vec<serde_json::Value> {
    ids.map(|id| {
        if note {
            serde_json::json!({"id": id, "qty": 1, "note": format!("n{id}")})
        } else {
            serde_json::json!({"id": id, "qty": 1})
        }
    })
    .collect()
}

/// From the second batch on, a batch's first rows are sent while the rest are converted; the
/// write then ends the `COPY` and commits. Every case where the streamed rows cannot simply be
/// committed (a refused row, a row dropped after it was sent, rows leaving out a column) ends as
/// the ordinary write would, with no transaction left open.
#[test]
fn streamed_rows_end_as_the_ordinary_write_would() {
    let pg = Postgres::new();
    pg.execute(
        "CREATE TABLE s (id integer PRIMARY KEY, qty integer NOT NULL CHECK (qty > 0), \
         note text DEFAULT 'none')",
    );
    let mut d = Driver::new(&pg.url, "s", "", "at-least-once");
    let all = |_| true;
    // The first batch opens the connection: written the ordinary way.
    assert_eq!(
        d.batch(&rows(0..2000, true), 0, || {}, all),
        (vec![], false)
    );

    // The rows reach the database before the write is called.
    let progress = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let copying = pg.number(
                "SELECT coalesce(sum(tuples_processed), 0)::bigint FROM pg_stat_progress_copy",
            );
            if copying > 0 || Instant::now() > deadline {
                return copying;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut seen = 0;
    assert_eq!(
        d.batch(&rows(2000..4000, true), 2000, || seen = progress(), all),
        (vec![], false)
    );
    assert!(seen > 0, "no row was copied before the write");
    assert_eq!(pg.number("SELECT count(*) FROM s"), 4000);

    // Refused rows (a duplicate key, a failed check) in a streamed batch: the batch is written
    // again the ordinary way, which finds exactly them.
    let mut bad = rows(4000..4100, true);
    bad[10] = serde_json::json!({"id": 5, "qty": 1, "note": "duplicate"});
    bad[70] = serde_json::json!({"id": 4070, "qty": 0, "note": "check"});
    bad[80] = serde_json::json!({"id": 4080, "qty": "x"});
    assert_eq!(d.batch(&bad, 4000, || {}, all), (vec![10, 70, 80], false));
    assert_eq!(pg.number("SELECT count(*) FROM s"), 4097);
    assert_eq!(
        pg.number("SELECT count(*) FROM s WHERE id IN (4010, 4070, 4080)"),
        0
    );

    // A row sent, then dropped because its input failed elsewhere: never written.
    assert_eq!(
        d.batch(&rows(5000..5100, true), 5000, || {}, |i| i != 3),
        (vec![], false)
    );
    assert_eq!(
        pg.number("SELECT count(*) FROM s WHERE id BETWEEN 5000 AND 5099"),
        99
    );
    assert_eq!(pg.number("SELECT count(*) FROM s WHERE id = 5003"), 0);
    // Every row dropped: nothing written, nothing left open.
    assert_eq!(
        d.batch(&rows(5100..5110, true), 5100, || {}, |_| false),
        (vec![], false)
    );
    assert_eq!(pg.number("SELECT count(*) FROM s WHERE id >= 5100"), 0);

    // Rows that leave out a column with a default, after a run that does not: the run is
    // streamed, the rest written after it in the same transaction.
    let mut mixed = rows(6000..6050, true);
    mixed.extend(rows(6050..6100, false));
    mixed.extend(rows(6100..6150, true));
    assert_eq!(d.batch(&mixed, 6000, || {}, all), (vec![], false));
    assert_eq!(pg.number("SELECT count(*) FROM s WHERE id >= 6000"), 150);
    assert_eq!(pg.number("SELECT count(*) FROM s WHERE note = 'none'"), 50);

    assert_eq!(
        pg.number(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
             OR query LIKE 'COPY%' AND state = 'active'"
        ),
        0,
        "a transaction was left open"
    );
}

/// Exactly-once and upserts on the streamed path: the offsets commit with the rows, a batch
/// written before is skipped whole, and the last row of a key in a batch wins.
#[test]
fn streamed_rows_keep_exactly_once_and_upserts() {
    let pg = Postgres::new();
    pg.execute("CREATE TABLE u (id integer PRIMARY KEY, qty integer, note text)");
    let mut d = Driver::new(
        &pg.url,
        "u",
        "mode = \"upsert\"\nkey = [\"id\"]",
        "exactly-once",
    );
    let all = |_| true;
    assert_eq!(
        d.batch(&rows(0..1000, true), 0, || {}, all),
        (vec![], false)
    );
    let mut second = rows(0..1000, false);
    for (i, v) in second.iter_mut().enumerate() {
        v["qty"] = serde_json::json!(i as i64 + 1);
    }
    // id 7 twice: the later one wins.
    second[999] = serde_json::json!({"id": 7, "qty": 70, "note": "last"});
    assert_eq!(d.batch(&second, 1000, || {}, all), (vec![], false));
    assert_eq!(pg.number("SELECT qty::bigint FROM u WHERE id = 7"), 70);
    assert_eq!(pg.number("SELECT qty::bigint FROM u WHERE id = 8"), 9);
    assert_eq!(
        pg.number("SELECT next_offset FROM sluice_offsets WHERE pipeline = 'drive-u'"),
        2000
    );
    // The same batch again (a replay): skipped, nothing changes.
    let mut replay = second.clone();
    replay[8] = serde_json::json!({"id": 8, "qty": -1});
    assert_eq!(d.batch(&replay, 1000, || {}, all), (vec![], true));
    assert_eq!(pg.number("SELECT qty::bigint FROM u WHERE id = 8"), 9);
    assert_eq!(pg.number("SELECT count(*) FROM u"), 1000);
    assert_eq!(
        pg.number("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
        0
    );
}
