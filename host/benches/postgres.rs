//! Rows per second into a 10-column PostgreSQL table: the sink's binary-COPY path (at-least-once
//! and exactly-once) against a naive writer that sends one INSERT per row (prepared, one
//! transaction per batch), all against the same throwaway server in the same run.
//!
//! `cargo bench -p sluice --bench postgres` (or `make bench`). Records are JSON values that a
//! passthrough plugin forwards; the COPY figures include converting JSON to the column types.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use sluice::testing::chain::Chain;
use sluice::testing::config::Config;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice::testing::sinks::Stamp;
use sluice::testing::sinks::postgres::{PostgresSink, Rows, Session};
use sluice_abi::InputBatch;

const BATCH: usize = 1000;
const COPY_ROWS: usize = 300_000;
const NAIVE_ROWS: usize = 20_000;

const TABLE: &str = "(id bigint, user_id text, email text, amount numeric(12,2), qty integer,
    active boolean, created_at timestamptz, country text, score double precision, tags jsonb)";

fn value(i: usize) -> serde_json::Value {
    let country = ["DE", "FR", "US", "BR"][i % 4];
    serde_json::json!({
        "id": i, "user_id": format!("u-{}", i % 5000), "email": format!("user{i}@example.com"),
        "amount": format!("{}.{:02}", i % 1000, i % 100), "qty": (i % 7) as i32 + 1,
        "active": i.is_multiple_of(3), "created_at": "2024-05-01T12:00:00Z",
        "country": country, "score": i as f64 / 7.0, "tags": ["a", "b"]
    })
}

fn batch(start: usize) -> InputBatch {
    let mut b = InputBatch::default();
    let t = b.topic_index("bench");
    for i in start..start + BATCH {
        let v = value(i).to_string();
        b.push(
            None,
            Some(v.as_bytes()),
            [],
            Some(1_700_000_000_000),
            t,
            0,
            i as i64,
        );
    }
    b
}

fn config(url: &str, table: &str, delivery: &str) -> Config {
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "unused:9092"
[[pipeline]]
name = "bench-{table}"
inputs = ["in"]
delivery = "{delivery}"
plugins = [{{ path = "{}" }}]
[pipeline.outputs.db.postgres]
url = "{url}"
table = "{table}"
"#,
        common::plugin("passthrough").display()
    );
    Config::parse(&text, "bench.toml", ".".into()).unwrap()
}

/// Rows per second through the sink's COPY path.
fn copy_path(
    tokio: &tokio::runtime::Runtime,
    runtime: &Arc<Runtime>,
    url: &str,
    table: &str,
    delivery: &str,
) -> f64 {
    let config = config(url, table, delivery);
    let pipeline = &config.pipelines[0];
    let router = pipeline.router();
    let sink = tokio
        .block_on(PostgresSink::connect(&pipeline.sink_spec(), &router))
        .unwrap()
        .unwrap();
    let spec = PluginSpec {
        name: "passthrough".into(),
        path: common::plugin("passthrough"),
        config: vec![],
        limits: Default::default(),
        scope: String::new(),
        tenant: String::new(),
    };
    let mut chain = Chain::new(vec![runtime.load(&spec).unwrap()]);
    let mut session = Session::default();
    let mut rows = Rows::default();
    // Inputs are made before the clock starts; the plugin call, conversion and write are timed.
    let mut inputs: Vec<InputBatch> = (0..COPY_ROWS / BATCH).map(|i| batch(i * BATCH)).collect();
    let started = Instant::now();
    let mut encoding = std::time::Duration::ZERO;
    for (i, input) in inputs.iter_mut().enumerate() {
        let at = Instant::now();
        let out = chain.process(input).unwrap();
        let failures = sink.encode(&router, &out, input, &mut rows);
        encoding += at.elapsed();
        assert!(failures.is_empty(), "{:?}", failures[0].message);
        let stamp = sink.exactly_once().then(|| Stamp {
            tp: ("bench".into(), 0),
            first_offset: (i * BATCH) as i64,
            next_offset: ((i + 1) * BATCH) as i64,
        });
        let written = tokio
            .block_on(sink.write(
                &mut session,
                &rows,
                stamp.as_ref(),
                &mut |_| Ok(()),
                &|| false,
            ))
            .unwrap();
        assert!(written.failures.is_empty() && !written.skipped);
    }
    let total = started.elapsed();
    println!(
        "  ({table}: plugin call + conversion {:.0}% of the time, the database the rest)",
        100.0 * encoding.as_secs_f64() / total.as_secs_f64()
    );
    COPY_ROWS as f64 / total.as_secs_f64()
}

/// Rows per second with one INSERT per row.
fn naive(tokio: &tokio::runtime::Runtime, url: &str) -> f64 {
    tokio.block_on(async {
        let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let insert = client
            .prepare(
                "INSERT INTO naive VALUES ($1::text::bigint, $2, $3, $4::text::numeric, \
                 $5::text::integer, $6::text::boolean, $7::text::timestamptz, $8, \
                 $9::text::float8, $10::text::jsonb)",
            )
            .await
            .unwrap();
        let values: Vec<serde_json::Value> = (0..NAIVE_ROWS).map(value).collect();
        let started = Instant::now();
        for chunk in values.chunks(BATCH) {
            let tx = client.transaction().await.unwrap();
            for v in chunk {
                let text = |k: &str| match &v[k] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let params: Vec<String> = [
                    "id",
                    "user_id",
                    "email",
                    "amount",
                    "qty",
                    "active",
                    "created_at",
                    "country",
                    "score",
                    "tags",
                ]
                .iter()
                .map(|k| text(k))
                .collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                tx.execute(&insert, &refs).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        NAIVE_ROWS as f64 / started.elapsed().as_secs_f64()
    })
}

fn main() {
    // `cargo bench` passes harness flags; this bench has no filters.
    let pg = common::postgres::Postgres::new();
    pg.execute(&format!(
        "CREATE TABLE copy_alos {TABLE}; CREATE TABLE copy_eos {TABLE}; CREATE TABLE naive {TABLE};"
    ));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime: Arc<Runtime> = Runtime::new(ComponentCache::default_dir()).unwrap();
    let naive = naive(&tokio, &pg.url);
    let alos = copy_path(&tokio, &runtime, &pg.url, "copy_alos", "at-least-once");
    let eos = copy_path(&tokio, &runtime, &pg.url, "copy_eos", "exactly-once");
    for table in ["copy_alos", "copy_eos"] {
        assert_eq!(
            pg.number(&format!("SELECT count(*) FROM {table}")),
            COPY_ROWS as i64
        );
    }
    println!("postgres sink, 10-column table, batches of {BATCH}:");
    println!("  naive INSERT per row          {naive:>10.0} rows/s  ({NAIVE_ROWS} rows)");
    println!("  COPY, at-least-once           {alos:>10.0} rows/s  ({COPY_ROWS} rows)");
    println!("  COPY, exactly-once            {eos:>10.0} rows/s  ({COPY_ROWS} rows)");
    println!(
        "  COPY / naive                  {:>10.1}x  (goal >= 20x)",
        alos / naive
    );
    println!(
        "  exactly-once / at-least-once  {:>10.2}   (goal >= 0.8)",
        eos / alos
    );
}
