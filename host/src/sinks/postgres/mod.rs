//! The PostgreSQL sink: output records become rows, written per batch in one transaction with
//! binary `COPY` (into a staging table and `INSERT … ON CONFLICT` for upserts).
//!
//! - A value that cannot be converted to its column fails its input before anything is written
//!   (`row:conversion`). A row the database refuses (constraint, range) is found by bisecting the
//!   batch under savepoints, so the good rows are written once and only the refused ones go to the
//!   dead-letter topic (`row:rejected`).
//! - Exactly-once: the pipeline's next offset per partition is written in the same transaction as
//!   the rows (table `sluice_offsets`). The update only succeeds if the stored offset is not past
//!   the batch's first record, so a batch is never written twice, even by a member that lost its
//!   partition in a rebalance. The source skips records below the stored offset.
//! - The database down or restarting: the batch is retried with backoff on a new connection; the
//!   worker waits meanwhile, which stops the source from fetching (back-pressure).

mod config;
pub mod encode;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use sluice_abi::{InputBatch, InputRecord, OutputRecord};
use tokio_postgres::{Client, NoTls, Statement};

pub use self::config::{MetadataColumns, PostgresOutput, WriteMode};
use self::encode::{CopyBuffer, Input, field};
use self::schema::{Source, Table};
use crate::chain::ChainOutput;
use crate::config::{Delivery, PipelineConfig};
use crate::failure::Failure;
use crate::failure::{Reason, SinkReason};
use crate::offsets::{OffsetStore, TopicPartition};
use crate::router::Router;
use crate::sinks::{BeforeCommit, OutputConfig, RoutedBatch, Sink, SinkWriter, Stamp, Written};

/// A record's value could not be converted to a row of its table.
pub const ROW_CONVERSION: Reason = Reason::Sink(SinkReason("row:conversion"));
/// The database refused the record's row (constraint violation, value out of range…).
pub const ROW_REJECTED: Reason = Reason::Sink(SinkReason("row:rejected"));
/// The reasons this sink dead-letters with.
pub const REASONS: &[Reason] = &[ROW_CONVERSION, ROW_REJECTED];

/// The table holding exactly-once pipelines' offsets.
pub const OFFSETS_TABLE: &str = "sluice_offsets";

const CREATE_OFFSETS_TABLE: &str = "CREATE TABLE IF NOT EXISTS sluice_offsets (
    pipeline text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, topic, partition)
)";

/// Longest wait between two attempts while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A database, by URL.
struct Database {
    url: String,
    /// `user@host:port/db`, without the password, for messages.
    display: String,
}

/// The Postgres outputs of one pipeline, resolved against their databases.
pub struct PostgresSink {
    pipeline: String,
    databases: Vec<Database>,
    tables: Vec<Table>,
    /// Database index of each table.
    table_db: Vec<usize>,
    /// Table index of each router output (`None` for Kafka outputs).
    by_output: Vec<Option<usize>>,
    exactly_once: bool,
    /// Runs the writes of the (synchronous) worker threads.
    handle: tokio::runtime::Handle,
    rows_written: Vec<metrics::Counter>,
    write_time: metrics::Histogram,
    retries: metrics::Counter,
}

/// The rows of one batch, per table.
#[derive(Default)]
pub struct Rows {
    tables: Vec<TableRows>,
}

#[derive(Default)]
struct TableRows {
    /// Every row's fields (length word + data each), back to back.
    data: Vec<u8>,
    rows: Vec<Row>,
}

#[derive(Clone)]
struct Row {
    input: u32,
    start: usize,
    end: usize,
    /// Bits of the columns with defaults that the record leaves out.
    omitted: u64,
}

impl Rows {
    /// Drops the rows of inputs that failed elsewhere (another output, another row).
    pub fn retain_inputs(&mut self, keep: impl Fn(u32) -> bool) {
        for t in &mut self.tables {
            t.rows.retain(|r| keep(r.input));
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One worker's connections (one per database), with their prepared statements.
#[derive(Default)]
pub struct Session {
    connections: HashMap<usize, Connection>,
}

struct Connection {
    client: Client,
    statements: HashMap<(usize, u64), Statements>,
}

struct Statements {
    copy: Statement,
    /// Upsert: the insert from the staging table, and its clearing.
    upsert: Option<(Statement, Statement)>,
}

enum AttemptError {
    /// The database is unreachable or restarting: retry.
    Transient(anyhow::Error),
    /// Anything else: the pipeline stops.
    Fatal(anyhow::Error),
}

impl From<tokio_postgres::Error> for AttemptError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_transient(&e) {
            AttemptError::Transient(e.into())
        } else {
            AttemptError::Fatal(anyhow!(describe(&e)))
        }
    }
}

/// Connection lost, server shutting down or starting, out of resources, serialization failure.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => ["08", "53", "57", "40"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    }
}

/// Data exceptions and integrity violations: the fault of a row, not of the database.
fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// The database's message with its detail.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => format!("{e:#}"),
    }
}

/// `user@host:port/db` of a URL, without its password.
fn display_url(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "{}@{host}:{port}/{}",
                c.get_user().unwrap_or(""),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Connects, with the connection driven on the current runtime.
async fn connect(url: &str, display: &str) -> Result<Client, AttemptError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
        if is_transient(&e) {
            AttemptError::Transient(anyhow!("connecting to {display}: {e:#}"))
        } else {
            AttemptError::Fatal(anyhow!(
                "connecting to Postgres {display}: {} (check the output's url: user, password, \
                 database)",
                describe(&e)
            ))
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("Postgres connection closed: {e}");
        }
    });
    Ok(client)
}

/// Tells the log, once and then every 10 s, that a database is unreachable; and when it is back.
struct Outage {
    since: Option<Instant>,
    said: Option<Instant>,
    attempts: u32,
}

impl Outage {
    fn new() -> Self {
        Outage {
            since: None,
            said: None,
            attempts: 0,
        }
    }

    /// Notes a failed attempt and returns how long to wait before the next.
    fn failed(&mut self, pipeline: &str, database: &str, error: &anyhow::Error) -> Duration {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.attempts += 1;
        let delay =
            (Duration::from_millis(100) * 2u32.saturating_pow(self.attempts - 1)).min(MAX_BACKOFF);
        if self
            .said
            .is_none_or(|s| s.elapsed() >= Duration::from_secs(10))
        {
            self.said = Some(now);
            tracing::warn!(
                pipeline,
                "Postgres {database} is unreachable ({error:#}); retrying (attempt {}, down for {:.0?}); \
                 consuming is paused and nothing is committed until it is back",
                self.attempts,
                since.elapsed()
            );
        }
        delay
    }

    fn recovered(&self, pipeline: &str, database: &str) {
        if let Some(since) = self.since {
            tracing::info!(
                pipeline,
                "Postgres {database} is reachable again after {:.1?}; resuming",
                since.elapsed()
            );
        }
    }
}

impl PostgresSink {
    /// Resolves the Postgres outputs of `pipeline` (none → `None`): connects to each database,
    /// reads each table, checks upsert keys and creates the offsets table for exactly-once.
    pub async fn connect(
        pipeline: &PipelineConfig,
        router: &Router,
    ) -> Result<Option<Arc<PostgresSink>>> {
        let tenant = pipeline.tenant.clone().unwrap_or_default();
        let mut sink = PostgresSink {
            pipeline: pipeline.name.clone(),
            databases: Vec::new(),
            tables: Vec::new(),
            table_db: Vec::new(),
            by_output: vec![None; router.names().len()],
            exactly_once: pipeline.delivery == Delivery::ExactlyOnce,
            handle: tokio::runtime::Handle::current(),
            rows_written: Vec::new(),
            write_time: metrics::histogram!("sluice_postgres_write_seconds", "pipeline" => pipeline.name.clone(), "tenant" => tenant.clone()),
            retries: metrics::counter!("sluice_postgres_retries_total", "pipeline" => pipeline.name.clone(), "tenant" => tenant.clone()),
        };
        let mut clients: Vec<Client> = Vec::new();
        for (output, index) in router.names().iter().zip(0..) {
            let OutputConfig::Postgres(pg) = &pipeline.outputs[output] else {
                continue;
            };
            let db = match sink.databases.iter().position(|d| d.url == pg.url) {
                Some(db) => db,
                None => {
                    let display = display_url(&pg.url);
                    let client = connect_at_start(&pipeline.name, &pg.url, &display).await?;
                    if sink.exactly_once {
                        create_offsets_table(&client).await.with_context(|| {
                            format!("creating table {OFFSETS_TABLE} in {display}")
                        })?;
                    }
                    clients.push(client);
                    sink.databases.push(Database {
                        url: pg.url.clone(),
                        display,
                    });
                    sink.databases.len() - 1
                }
            };
            let table = schema::resolve(&clients[db], output, pg, true)
                .await
                .with_context(|| {
                    format!(
                        "output `{output}` of pipeline `{}` ({})",
                        pipeline.name, sink.databases[db].display
                    )
                })?
                .expect("created when missing");
            sink.by_output[index] = Some(sink.tables.len());
            sink.rows_written.push(metrics::counter!("sluice_postgres_rows_written_total", "pipeline" => pipeline.name.clone(), "tenant" => tenant.clone(), "output" => output.clone()));
            sink.tables.push(table);
            sink.table_db.push(db);
            // Prepare every statement once, so that a wrong upsert key is a start-up error.
            let t = sink.tables.len() - 1;
            let mut conn = Connection {
                client: clients.swap_remove(db),
                statements: HashMap::new(),
            };
            let prepared = prepare_checked(&mut conn, &sink.tables[t], t, pg).await;
            clients.insert(db, conn.client);
            prepared?;
        }
        if sink.tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(sink)))
    }

    /// For `sluice check`: connects to each Postgres output's database (giving up after
    /// `timeout`) and checks its table; one line per output, or the first error.
    pub async fn check(pipeline: &PipelineConfig, timeout: Duration) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for (output, config) in &pipeline.outputs {
            let OutputConfig::Postgres(pg) = config else {
                continue;
            };
            let display = display_url(&pg.url);
            let client = match tokio::time::timeout(timeout, connect(&pg.url, &display)).await {
                Ok(Ok(client)) => client,
                Ok(Err(AttemptError::Fatal(e) | AttemptError::Transient(e))) => return Err(e),
                Err(_) => anyhow::bail!(
                    "could not reach Postgres {display} within {timeout:?} (output `{output}`); \
                     start it or fix the url"
                ),
            };
            let table = schema::resolve(&client, output, pg, false)
                .await
                .with_context(|| format!("output `{output}` ({display})"))?;
            if let Some(t) = &table {
                let mut conn = Connection {
                    client,
                    statements: HashMap::new(),
                };
                prepare_checked(&mut conn, t, 0, pg).await?;
            }
            lines.push(match table {
                Some(t) => format!(
                    "output `{output}`: table {} in {display}, {} column(s) written",
                    t.name,
                    t.columns.len()
                ),
                None => format!(
                    "output `{output}`: table {} does not exist yet in {display}; created at start (create_table = true)",
                    pg.table
                ),
            });
        }
        Ok(lines)
    }

    /// True for exactly-once pipelines (offsets stored with the rows).
    pub fn exactly_once(&self) -> bool {
        self.exactly_once
    }

    /// True when router output `index` is a Postgres table.
    pub fn is_table(&self, output: usize) -> bool {
        self.by_output.get(output).is_some_and(Option::is_some)
    }

    /// The store of this pipeline's offsets, for the source to skip what is already written.
    pub fn offset_store(&self) -> Arc<dyn OffsetStore> {
        let db = &self.databases[0];
        Arc::new(PgOffsetStore {
            pipeline: self.pipeline.clone(),
            url: db.url.clone(),
            display: db.display.clone(),
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// Converts every record routed to a table into a row. Returns the rows and the inputs whose
    /// record could not be converted.
    pub fn encode(
        &self,
        router: &Router,
        out: &ChainOutput,
        batch: &InputBatch,
    ) -> (Rows, Vec<Failure>) {
        let mut rows = Rows {
            tables: (0..self.tables.len())
                .map(|_| TableRows::default())
                .collect(),
        };
        let mut failures: Vec<Failure> = Vec::new();
        for (emitted, output) in router.routes(out) {
            let Some(t) = self.by_output[output] else {
                continue;
            };
            let table = &self.tables[t];
            let target = &mut rows.tables[t];
            let input = batch.record(emitted.input as usize);
            let start = target.data.len();
            match encode_row(table, &emitted.record, &input, &mut target.data) {
                Ok(omitted) => target.rows.push(Row {
                    input: emitted.input,
                    start,
                    end: target.data.len(),
                    omitted,
                }),
                Err(message) => {
                    target.data.truncate(start);
                    if !failures.iter().any(|f| f.input == emitted.input) {
                        failures.push(Failure {
                            input: emitted.input,
                            reason: ROW_CONVERSION,
                            message: format!(
                                "output `{}` (table {}): {message}",
                                table.output, table.name
                            ),
                            plugin: None,
                        });
                    }
                }
            }
        }
        (rows, failures)
    }

    /// Writes `rows` in one transaction per database. With `stamp` (exactly-once), the offsets go
    /// into the same transaction and `before_commit` runs with the refused inputs just before it
    /// commits (to deliver their dead letters first). Retries while the database is unreachable,
    /// until `stopping()`.
    pub async fn write(
        &self,
        session: &mut Session,
        rows: &Rows,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<Written> {
        let mut written = Written::default();
        for (db, database) in self.databases.iter().enumerate() {
            let tables: Vec<usize> = (0..self.tables.len())
                .filter(|t| self.table_db[*t] == db && !rows.tables[*t].rows.is_empty())
                .collect();
            if tables.is_empty() && stamp.is_none() {
                continue;
            }
            let mut outage = Outage::new();
            loop {
                let attempt = async {
                    let conn = match session.connections.entry(db) {
                        std::collections::hash_map::Entry::Occupied(c) => c.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(Connection {
                            client: connect(&database.url, &database.display).await?,
                            statements: HashMap::new(),
                        }),
                    };
                    self.attempt(conn, &tables, rows, stamp, before_commit)
                        .await
                };
                match attempt.await {
                    Ok(w) => {
                        outage.recovered(&self.pipeline, &database.display);
                        written.failures.extend(w.failures);
                        written.skipped |= w.skipped;
                        break;
                    }
                    Err(AttemptError::Fatal(e)) => {
                        return Err(e.context(format!(
                            "writing to Postgres {} (pipeline `{}`)",
                            database.display, self.pipeline
                        )));
                    }
                    Err(AttemptError::Transient(e)) => {
                        session.connections.remove(&db);
                        self.retries.increment(1);
                        if stopping() {
                            return Err(e.context(format!(
                                "stopping while Postgres {} is unreachable: the batch is not \
                                 committed and is processed again after a restart",
                                database.display
                            )));
                        }
                        let delay = outage.failed(&self.pipeline, &database.display, &e);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Ok(written)
    }

    /// One transaction: every table's rows, bisected around refused ones, then the offsets.
    async fn attempt(
        &self,
        conn: &mut Connection,
        tables: &[usize],
        rows: &Rows,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
    ) -> Result<Written, AttemptError> {
        let started = Instant::now();
        for &t in tables {
            let masks: std::collections::BTreeSet<u64> =
                rows.tables[t].rows.iter().map(|r| r.omitted).collect();
            for mask in masks {
                prepare(conn, &self.tables[t], t, mask).await?;
            }
        }
        let mut tx = conn.client.transaction().await?;
        let mut written = Written::default();
        let mut counts = vec![0u64; tables.len()];
        for (i, &t) in tables.iter().enumerate() {
            let table_rows = &rows.tables[t];
            let mut ranges = vec![(0, table_rows.rows.len())];
            while let Some((lo, hi)) = ranges.pop() {
                let savepoint = tx.savepoint("sluice_rows").await?;
                let result = write_rows(
                    &savepoint,
                    &conn.statements,
                    &self.tables[t],
                    t,
                    table_rows,
                    &table_rows.rows[lo..hi],
                )
                .await;
                match result {
                    Ok(()) => {
                        savepoint.commit().await?;
                        counts[i] += (hi - lo) as u64;
                    }
                    Err(e) if is_row_error(&e) => {
                        savepoint.rollback().await?;
                        if hi - lo == 1 {
                            let table = &self.tables[t];
                            written.failures.push(Failure {
                                input: table_rows.rows[lo].input,
                                reason: ROW_REJECTED,
                                message: format!(
                                    "output `{}` (table {}): {}",
                                    table.output,
                                    table.name,
                                    describe(&e)
                                ),
                                plugin: None,
                            });
                        } else {
                            let mid = lo + (hi - lo) / 2;
                            ranges.push((mid, hi));
                            ranges.push((lo, mid));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(stamp) = stamp {
            let stored = tx
                .execute(
                    "UPDATE sluice_offsets SET next_offset = $4, updated_at = now() \
                     WHERE pipeline = $1 AND topic = $2 AND partition = $3 AND next_offset <= $5",
                    &[
                        &self.pipeline,
                        &&*stamp.tp.0,
                        &stamp.tp.1,
                        &stamp.next_offset,
                        &stamp.first_offset,
                    ],
                )
                .await?
                == 1
                || tx
                    .execute(
                        "INSERT INTO sluice_offsets (pipeline, topic, partition, next_offset) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[
                            &self.pipeline,
                            &&*stamp.tp.0,
                            &stamp.tp.1,
                            &stamp.next_offset,
                        ],
                    )
                    .await?
                    == 1;
            if !stored {
                tx.rollback().await?;
                return Ok(Written {
                    failures: Vec::new(),
                    skipped: true,
                });
            }
            before_commit(&written.failures).map_err(AttemptError::Fatal)?;
        }
        tx.commit().await?;
        for (i, &t) in tables.iter().enumerate() {
            self.rows_written[t].increment(counts[i]);
        }
        self.write_time.record(started.elapsed().as_secs_f64());
        Ok(written)
    }
}

/// Describes the metrics this sink exports.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "sluice_postgres_rows_written_total",
        "Rows committed to Postgres tables, by pipeline and output."
    );
    describe_histogram!(
        "sluice_postgres_write_seconds",
        "Time of one batch's Postgres transaction (rows, offsets, commit), by pipeline."
    );
    describe_counter!(
        "sluice_postgres_retries_total",
        "Postgres batch writes retried because the database was unreachable, by pipeline."
    );
}

/// The transaction a Postgres output writes in: its database's.
pub fn transaction_scope(pg: &PostgresOutput) -> String {
    format!("the PostgreSQL database {}", display_url(&pg.url))
}

impl Sink for Arc<PostgresSink> {
    fn writer(&self) -> Box<dyn SinkWriter> {
        Box::new(PostgresWriter {
            sink: self.clone(),
            session: Session::default(),
            rows: Rows::default(),
        })
    }

    fn offset_store(&self) -> Option<Arc<dyn OffsetStore>> {
        self.exactly_once.then(|| PostgresSink::offset_store(self))
    }
}

/// One worker's writer: its connections, and the rows of the batch being written.
struct PostgresWriter {
    sink: Arc<PostgresSink>,
    session: Session,
    rows: Rows,
}

impl SinkWriter for PostgresWriter {
    /// Converts every record routed to a table into a row: the inputs whose record cannot be
    /// converted (`row:conversion`) fail before anything is written.
    fn screen(&mut self, batch: &RoutedBatch<'_>) -> Vec<Failure> {
        let (rows, failures) = self.sink.encode(batch.router, batch.out, batch.input);
        self.rows = rows;
        failures
    }

    /// Writes the rows of the inputs that did not fail in one transaction per database (with
    /// the offsets, exactly-once); rows the database refuses come back as `row:rejected`.
    fn write(
        &mut self,
        batch: &RoutedBatch<'_>,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
        sent: &mut [u64],
    ) -> Result<Written> {
        self.rows.retain_inputs(|i| !batch.out.is_failed(i));
        if self.rows.is_empty() && stamp.is_none() {
            return Ok(Written::default());
        }
        let written = self.sink.handle.block_on(self.sink.write(
            &mut self.session,
            &self.rows,
            stamp,
            before_commit,
            batch.stopping,
        ))?;
        if !written.skipped {
            for (emitted, output) in batch.router.routes(batch.out) {
                if self.sink.is_table(output)
                    && !written.failures.iter().any(|f| f.input == emitted.input)
                {
                    sent[output] += 1;
                }
            }
        }
        Ok(written)
    }
}

/// Prepares (once per connection) the statements that write `table`'s rows (table `t` of the
/// sink) leaving out the columns of `omitted`.
async fn prepare(
    conn: &mut Connection,
    table: &Table,
    t: usize,
    omitted: u64,
) -> Result<(), AttemptError> {
    if conn.statements.contains_key(&(t, omitted)) {
        return Ok(());
    }
    let columns: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !is_omitted(c, omitted))
        .map(|c| c.quoted.as_str())
        .collect();
    let list = columns.join(", ");
    let statements = if table.key.is_empty() {
        Statements {
            copy: conn
                .client
                .prepare(&format!(
                    "COPY {} ({list}) FROM STDIN (FORMAT binary)",
                    table.name
                ))
                .await?,
            upsert: None,
        }
    } else {
        let stage = format!("sluice_stage_{t}");
        // A session-local copy of the table without its constraints, made outside any
        // transaction so that a rollback does not drop it.
        conn.client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT * FROM {} WITH NO DATA; \
                     ALTER TABLE {stage} ADD COLUMN IF NOT EXISTS sluice_seq bigint",
                table.name
            ))
            .await?;
        let key: Vec<&str> = table
            .key
            .iter()
            .map(|k| table.columns[*k].quoted.as_str())
            .collect();
        let key = key.join(", ");
        let updates: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| !table.key.contains(i) && !is_omitted(c, omitted))
            .map(|(_, c)| format!("{0} = EXCLUDED.{0}", c.quoted))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let insert = format!(
            "INSERT INTO {} ({list}) SELECT DISTINCT ON ({key}) {list} FROM {stage} \
             ORDER BY {key}, sluice_seq DESC ON CONFLICT ({key}) {on_conflict}",
            table.name
        );
        // The conflict target is matched to a unique index only when the statement is
        // planned, so plan it now rather than fail on the first batch.
        conn.client
            .batch_execute(&format!("EXPLAIN {insert}"))
            .await?;
        Statements {
            copy: conn
                .client
                .prepare(&format!(
                    "COPY {stage} ({list}, sluice_seq) FROM STDIN (FORMAT binary)"
                ))
                .await?,
            upsert: Some((
                conn.client.prepare(&insert).await?,
                conn.client.prepare(&format!("TRUNCATE {stage}")).await?,
            )),
        }
    };
    conn.statements.insert((t, omitted), statements);
    Ok(())
}

/// [`prepare`] for every column at start-up, where a failure means a wrong upsert key.
async fn prepare_checked(
    conn: &mut Connection,
    table: &Table,
    t: usize,
    config: &PostgresOutput,
) -> Result<()> {
    prepare(conn, table, t, 0)
        .await
        .map_err(|e| match e {
            AttemptError::Transient(e) | AttemptError::Fatal(e) => e,
        })
        .with_context(|| match config.mode {
            WriteMode::Upsert => format!(
                "output `{}`: upserts into {} need a unique index on exactly the key columns, \
                 e.g. CREATE UNIQUE INDEX ON {} ({})",
                table.output,
                table.name,
                table.name,
                config.key.join(", ")
            ),
            WriteMode::Insert => format!(
                "output `{}`: preparing COPY into {}",
                table.output, table.name
            ),
        })
}

fn is_omitted(column: &schema::Column, omitted: u64) -> bool {
    column.default_bit.is_some_and(|b| omitted & (1 << b) != 0)
}

/// Writes `rows` (a range of one table's rows) as consecutive runs of rows leaving out the same
/// columns, each one `COPY` (and for upserts, one insert from the staging table).
async fn write_rows(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &HashMap<(usize, u64), Statements>,
    table: &Table,
    t: usize,
    all: &TableRows,
    rows: &[Row],
) -> Result<(), tokio_postgres::Error> {
    use futures::SinkExt;
    let mut start = 0;
    while start < rows.len() {
        let omitted = rows[start].omitted;
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.omitted == omitted)
                .count();
        let run = &rows[start..end];
        let fields = table
            .columns
            .iter()
            .filter(|c| !is_omitted(c, omitted))
            .count();
        let statements = &statements[&(t, omitted)];
        let upsert = statements.upsert.is_some();
        let mut copy = CopyBuffer::new();
        for (seq, row) in run.iter().enumerate() {
            copy.tuple(fields + upsert as usize);
            copy.bytes.extend_from_slice(&all.data[row.start..row.end]);
            if upsert {
                copy.bytes.extend_from_slice(&8i32.to_be_bytes());
                copy.bytes.extend_from_slice(&(seq as i64).to_be_bytes());
            }
        }
        let sink = tx.copy_in(&statements.copy).await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(copy.finish())).await?;
        sink.finish().await?;
        if let Some((insert, truncate)) = &statements.upsert {
            tx.execute(insert, &[]).await?;
            tx.execute(truncate, &[]).await?;
        }
        start = end;
    }
    Ok(())
}

/// Appends a record's row (its fields, in column order) to `out`; returns the bits of the
/// defaulted columns it leaves out.
fn encode_row(
    table: &Table,
    record: &OutputRecord<'_>,
    input: &InputRecord<'_>,
    out: &mut Vec<u8>,
) -> Result<u64, String> {
    let object = if table.needs_object {
        let value = record
            .value
            .ok_or("the value is null (a tombstone), not a JSON object to make a row of")?;
        match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => return Err("the value is JSON but not an object".into()),
            Err(e) => return Err(format!("the value is not JSON ({e})")),
        }
    } else {
        None
    };
    let headers = table
        .columns
        .iter()
        .any(|c| c.source == Source::Headers)
        .then(|| {
            Value::Object(
                record
                    .headers
                    .iter()
                    .map(|h| {
                        let v = h.value.map_or(Value::Null, |v| {
                            Value::String(String::from_utf8_lossy(v).into_owned())
                        });
                        (h.name.to_string(), v)
                    })
                    .collect(),
            )
        });
    let mut omitted = 0u64;
    for (i, column) in table.columns.iter().enumerate() {
        let value: Option<Input<'_>> = match &column.source {
            Source::Field(name) => match object.as_ref().and_then(|o| o.get(name)) {
                None => {
                    if let (Some(bit), false) = (column.default_bit, table.key.contains(&i)) {
                        omitted |= 1 << bit;
                        continue;
                    }
                    if column.required || table.key.contains(&i) {
                        return Err(format!(
                            "field `{name}` is missing and column `{}` needs a value",
                            column.name
                        ));
                    }
                    None
                }
                Some(Value::Null) => {
                    if column.required || table.key.contains(&i) {
                        return Err(format!(
                            "field `{name}` is null and column `{}` is NOT NULL",
                            column.name
                        ));
                    }
                    None
                }
                Some(v) => Some(Input::Json(v)),
            },
            Source::Key => record.key.map(Input::Bytes),
            Source::Headers => headers.as_ref().map(Input::Json),
            Source::Topic => Some(Input::Text(input.topic)),
            Source::Partition => Some(Input::Int(input.partition as i64)),
            Source::Offset => Some(Input::Int(input.offset)),
            Source::Timestamp => record.timestamp.or(input.timestamp).map(Input::TimestampMs),
            Source::Value => record.value.map(Input::Bytes),
        };
        if value.is_none() && column.required {
            return Err(format!(
                "column `{}` is NOT NULL but the record has no {}",
                column.name,
                match column.source {
                    Source::Key => "key",
                    Source::Timestamp => "timestamp",
                    _ => "value",
                }
            ));
        }
        field(out, column.ty, value).map_err(|e| match &column.source {
            Source::Field(name) if *name != column.name => {
                format!("field `{name}` (column `{}`): {e}", column.name)
            }
            _ => format!("column `{}`: {e}", column.name),
        })?;
    }
    Ok(omitted)
}

async fn connect_at_start(pipeline: &str, url: &str, display: &str) -> Result<Client> {
    let mut outage = Outage::new();
    loop {
        match connect(url, display).await {
            Ok(client) => {
                outage.recovered(pipeline, display);
                return Ok(client);
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Transient(e)) => {
                let delay = outage.failed(pipeline, display, &e);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn create_offsets_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('sluice_offsets')::text", &[])
        .await?
        .get(0);
    if exists.is_some() {
        return Ok(());
    }
    match client.batch_execute(CREATE_OFFSETS_TABLE).await {
        // Two members creating it at once: one wins, and the table is there.
        Err(e) if e.code().is_some_and(|c| c.code() == "23505") => Ok(()),
        other => other,
    }
}

/// Reads an exactly-once pipeline's stored offsets.
struct PgOffsetStore {
    pipeline: String,
    url: String,
    display: String,
    client: tokio::sync::Mutex<Option<Client>>,
}

#[async_trait::async_trait]
impl OffsetStore for PgOffsetStore {
    async fn load(&self, tp: &TopicPartition) -> Result<Option<i64>> {
        let mut client = self.client.lock().await;
        let mut outage = Outage::new();
        loop {
            let attempt = async {
                if client.is_none() {
                    *client = Some(connect(&self.url, &self.display).await?);
                }
                let c = client.as_ref().expect("connected");
                let row = c
                    .query_opt(
                        "SELECT next_offset FROM sluice_offsets \
                         WHERE pipeline = $1 AND topic = $2 AND partition = $3",
                        &[&self.pipeline, &&*tp.0, &tp.1],
                    )
                    .await?;
                Ok::<_, AttemptError>(row.map(|r| r.get::<_, i64>(0)))
            };
            match attempt.await {
                Ok(offset) => {
                    outage.recovered(&self.pipeline, &self.display);
                    return Ok(offset);
                }
                Err(AttemptError::Fatal(e)) => {
                    return Err(e.context(format!(
                        "reading the stored offset of {}[{}] from {OFFSETS_TABLE}",
                        tp.0, tp.1
                    )));
                }
                Err(AttemptError::Transient(e)) => {
                    *client = None;
                    let delay = outage.failed(&self.pipeline, &self.display, &e);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
