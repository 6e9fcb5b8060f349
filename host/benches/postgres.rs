//! Rows per second into a 10-column PostgreSQL table: the sink's binary-COPY path (at-least-once
//! and exactly-once) against a naive writer that sends one INSERT per row (prepared, one
//! transaction per batch), all against the same throwaway server in the same run.
//!
//! `cargo bench -p sluice --bench postgres` (or `make bench`). Records are JSON values that a
//! passthrough plugin forwards; the COPY figures include converting JSON to the column types.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::testing::chain::Chain;
use sluice::testing::config::Config;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice::testing::sinks::Stamp;
use sluice::testing::sinks::postgres::{PostgresSink, Rows, Session};
use sluice_abi::InputBatch;

const BATCH: usize = 1000;
/// Rows per round and writer; the writers take turns for `ROUNDS` rounds.
const COPY_ROWS: usize = 60_000;
const NAIVE_ROWS: usize = 4_000;
const ROUNDS: usize = 5;

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

/// One delivery mode's COPY path: the sink with its connection, a chain with a passthrough
/// plugin, and the buffers kept from batch to batch, as a worker has them.
struct CopyPath {
    table: &'static str,
    sink: Arc<PostgresSink>,
    config: Config,
    chain: Chain,
    session: Session,
    rows: Rows,
    batches: usize,
    /// Time in the plugin call, in the conversion, and in all (with the write).
    plugin: Duration,
    conversion: Duration,
    total: Duration,
    /// CPU time of this process (the host side: plugin, conversion, client), not the server's.
    cpu: Duration,
}

impl CopyPath {
    fn new(
        tokio: &tokio::runtime::Runtime,
        runtime: &Arc<Runtime>,
        url: &str,
        table: &'static str,
        delivery: &str,
    ) -> CopyPath {
        let config = config(url, table, delivery);
        let sink = tokio
            .block_on(PostgresSink::connect(
                &config.pipelines[0].sink_spec(),
                &config.pipelines[0].router(),
            ))
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
        CopyPath {
            table,
            sink,
            config,
            chain: Chain::new(vec![runtime.load(&spec).unwrap()]),
            session: Session::default(),
            rows: Rows::default(),
            batches: 0,
            plugin: Duration::ZERO,
            conversion: Duration::ZERO,
            total: Duration::ZERO,
            cpu: Duration::ZERO,
        }
    }

    /// Writes `inputs` (batches made before the clock starts) through the plugin, the
    /// conversion and the write; returns the time taken.
    fn run(&mut self, tokio: &tokio::runtime::Runtime, inputs: &mut [InputBatch]) -> Duration {
        let router = self.config.pipelines[0].router();
        let started = Instant::now();
        let cpu = cpu_time();
        for input in inputs {
            let i = self.batches;
            self.batches += 1;
            let at = Instant::now();
            let out = self.chain.process(input).unwrap();
            let converting = Instant::now();
            let failures =
                self.sink
                    .encode(&router, &out, input, &mut self.rows, &mut self.session);
            self.plugin += converting - at;
            self.conversion += converting.elapsed();
            assert!(failures.is_empty(), "{:?}", failures[0].message);
            let stamp = self.sink.exactly_once().then(|| Stamp {
                tp: ("bench".into(), 0),
                first_offset: (i * BATCH) as i64,
                next_offset: ((i + 1) * BATCH) as i64,
            });
            let written = tokio
                .block_on(self.sink.write(
                    &mut self.session,
                    &self.rows,
                    stamp.as_ref(),
                    &mut |_| Ok(()),
                    &|| false,
                ))
                .unwrap();
            assert!(written.failures.is_empty() && !written.skipped);
        }
        self.cpu += cpu_time() - cpu;
        let took = started.elapsed();
        self.total += took;
        took
    }

    fn rows(&self) -> usize {
        self.batches * BATCH
    }

    fn rows_per_second(&self) -> f64 {
        self.rows() as f64 / self.total.as_secs_f64()
    }

    fn per_row(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.rows() as f64
    }
}

/// CPU time of this process so far (user + system, every thread).
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The naive writer: one prepared INSERT per row, one transaction per batch.
struct Naive {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    rows: usize,
    total: Duration,
}

impl Naive {
    fn new(tokio: &tokio::runtime::Runtime, url: &str) -> Naive {
        tokio.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
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
            Naive {
                client,
                insert,
                rows: 0,
                total: Duration::ZERO,
            }
        })
    }

    /// Inserts `values` (made before the clock starts); returns the time taken.
    fn run(&mut self, tokio: &tokio::runtime::Runtime, values: &[serde_json::Value]) -> Duration {
        let started = Instant::now();
        tokio.block_on(async {
            for chunk in values.chunks(BATCH) {
                let tx = self.client.transaction().await.unwrap();
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
                    tx.execute(&self.insert, &refs).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        });
        self.rows += values.len();
        let took = started.elapsed();
        self.total += took;
        took
    }

    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.total.as_secs_f64()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
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
    let mut naive = Naive::new(&tokio, &pg.url);
    let mut alos = CopyPath::new(&tokio, &runtime, &pg.url, "copy_alos", "at-least-once");
    let mut eos = CopyPath::new(&tokio, &runtime, &pg.url, "copy_eos", "exactly-once");
    // The three writers take turns, round after round, so that a change in the machine's load
    // (it is shared) falls on all of them; the ratios are taken per round.
    let mut copy_naive = Vec::new();
    let mut eos_alos = Vec::new();
    for round in 0..ROUNDS {
        let values: Vec<serde_json::Value> = (round * NAIVE_ROWS..(round + 1) * NAIVE_ROWS)
            .map(value)
            .collect();
        let n = naive.run(&tokio, &values);
        let batches = COPY_ROWS / BATCH;
        let make = |r: usize| -> Vec<InputBatch> {
            (0..batches)
                .map(|i| batch((r * batches + i) * BATCH))
                .collect()
        };
        let (mut a, mut e) = (make(round), make(round));
        let a = alos.run(&tokio, &mut a);
        let e = eos.run(&tokio, &mut e);
        let rate = |rows: usize, d: Duration| rows as f64 / d.as_secs_f64();
        copy_naive.push(rate(COPY_ROWS, a) / rate(NAIVE_ROWS, n));
        eos_alos.push(rate(COPY_ROWS, e) / rate(COPY_ROWS, a));
    }
    for path in [&alos, &eos] {
        assert_eq!(
            pg.number(&format!("SELECT count(*) FROM {}", path.table)),
            path.rows() as i64
        );
    }
    println!(
        "postgres sink, 10-column table, batches of {BATCH}, {ROUNDS} rounds of {NAIVE_ROWS} naive \
         rows, {COPY_ROWS} COPY rows at-least-once and {COPY_ROWS} exactly-once:"
    );
    println!(
        "  naive INSERT per row          {:>10.0} rows/s",
        naive.rows_per_second()
    );
    for (name, path) in [("at-least-once", &alos), ("exactly-once ", &eos)] {
        println!(
            "  COPY, {name}           {:>10.0} rows/s  (host per row: plugin {:.2} us, \
             conversion {:.2} us, CPU {:.2} us)",
            path.rows_per_second(),
            path.per_row(path.plugin),
            path.per_row(path.conversion),
            path.per_row(path.cpu),
        );
    }
    println!(
        "  COPY / naive                  {:>10.1}x  (median of rounds; goal >= 20x; whole run {:.1}x)",
        median(copy_naive),
        alos.rows_per_second() / naive.rows_per_second()
    );
    println!(
        "  exactly-once / at-least-once  {:>10.2}   (median of rounds; goal >= 0.85; whole run {:.2})",
        median(eos_alos),
        eos.rows_per_second() / alos.rows_per_second()
    );
    // A streamed write that could not commit is rolled back and written again: count them.
    std::thread::sleep(Duration::from_millis(1500)); // the statistics are flushed every second
    println!(
        "  transactions rolled back      {:>10}   (streamed writes written again; 0 expected)",
        pg.number("SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    );
    println!(
        "  COPY rows/s goal >= 200,000: at-least-once {}",
        if alos.rows_per_second() >= 200_000.0 {
            "met"
        } else {
            "not met"
        }
    );
}
