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
mod connection;
pub mod encode;
pub mod fields;
pub mod schema;
mod stream;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use sluice_abi::{InputBatch, InputRecord, OutputRecord};
use tokio_postgres::Client;

pub use self::config::{PostgresOutput, WriteMode};
pub use self::connection::Session;
use self::connection::*;
use self::encode::{COPY_HEADER, COPY_TRAILER, Input, field};
use self::fields::{NotAnObject, Slot};
use self::schema::{Source, Table};
use self::write::*;
use crate::chain::ChainOutput;
use crate::chain::Failure;
use crate::failure::{Reason, SinkReason};
use crate::offsets::OffsetStore;
use crate::router::Router;
use crate::sinks::{
    BeforeCommit, OutputConfig, RoutedBatch, Sink, SinkSpec, SinkWriter, Stamp, Written,
};

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

/// The rows of one batch, per table. Kept by the writer from batch to batch, so its buffers are
/// reused.
#[derive(Default)]
pub struct Rows {
    tables: Vec<TableRows>,
    /// Per-row buffers of the conversion.
    scratch: fields::Scratch,
}

#[derive(Default)]
struct TableRows {
    /// Every row as a binary `COPY` tuple (field count, then length word + data per field),
    /// back to back, while the batch is converted.
    data: Vec<u8>,
    /// `data` once converted: rows are sent as slices of it, without copying.
    frozen: bytes::Bytes,
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

impl TableRows {
    /// Empties the table's rows, taking back the buffer of the last batch once nothing else
    /// holds a slice of it.
    fn clear(&mut self) {
        self.rows.clear();
        let frozen = std::mem::take(&mut self.frozen);
        if self.data.capacity() == 0
            && let Ok(buffer) = frozen.try_into_mut()
        {
            self.data = buffer.into();
        }
        self.data.clear();
    }

    fn freeze(&mut self) {
        self.frozen = bytes::Bytes::from(std::mem::take(&mut self.data));
    }
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

impl PostgresSink {
    /// Resolves the Postgres outputs of `pipeline` (none → `None`): connects to each database,
    /// reads each table, checks upsert keys and creates the offsets table for exactly-once.
    pub async fn connect(
        pipeline: &SinkSpec<'_>,
        router: &Router,
    ) -> Result<Option<Arc<PostgresSink>>> {
        let tenant = pipeline.tenant.to_string();
        let mut sink = PostgresSink {
            pipeline: pipeline.name.to_string(),
            databases: Vec::new(),
            tables: Vec::new(),
            table_db: Vec::new(),
            by_output: vec![None; router.names().len()],
            exactly_once: pipeline.exactly_once,
            handle: tokio::runtime::Handle::current(),
            rows_written: Vec::new(),
            write_time: metrics::histogram!("sluice_postgres_write_seconds", "pipeline" => pipeline.name.to_string(), "tenant" => tenant.clone()),
            retries: metrics::counter!("sluice_postgres_retries_total", "pipeline" => pipeline.name.to_string(), "tenant" => tenant.clone()),
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
                    let client = connect_at_start(pipeline.name, &pg.url, &display).await?;
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
            sink.rows_written.push(metrics::counter!("sluice_postgres_rows_written_total", "pipeline" => pipeline.name.to_string(), "tenant" => tenant.clone(), "output" => output.clone()));
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
    pub async fn check(pipeline: &SinkSpec<'_>, timeout: Duration) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for (output, config) in pipeline.outputs {
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

    /// Converts every record routed to a table into a row, into `rows` (emptied first; its
    /// buffers are reused). Returns the inputs whose record could not be converted. With a
    /// connection in `session` from an earlier batch, the first rows are sent while the rest
    /// are converted (see `stream`); [`PostgresSink::write`] finishes them.
    pub fn encode(
        &self,
        router: &Router,
        out: &ChainOutput,
        batch: &InputBatch,
        rows: &mut Rows,
        session: &mut Session,
    ) -> Vec<Failure> {
        if let Some(old) = session.stream.take() {
            self.abandon(session, old);
        }
        let mut stream: Option<stream::Stream> = None;
        let mut stream_tried = false;
        rows.tables
            .resize_with(self.tables.len(), TableRows::default);
        for t in &mut rows.tables {
            t.clear();
        }
        let mut failures: Vec<Failure> = Vec::new();
        for (emitted, output) in router.routes(out) {
            let Some(t) = self.by_output[output] else {
                continue;
            };
            let table = &self.tables[t];
            let target = &mut rows.tables[t];
            let input = batch.record(emitted.input as usize);
            let start = target.data.len();
            // The tuple's field count, known once the row says which columns it leaves out.
            target.data.extend_from_slice(&[0, 0]);
            match encode_row(
                table,
                &emitted.record,
                &input,
                &mut target.data,
                &mut rows.scratch,
            ) {
                Ok(omitted) => {
                    let upsert = !table.key.is_empty();
                    if upsert {
                        // `sluice_seq` of the staging table: the last row of a key wins.
                        target.data.extend_from_slice(&8i32.to_be_bytes());
                        target
                            .data
                            .extend_from_slice(&(target.rows.len() as i64).to_be_bytes());
                    }
                    let fields = if omitted == 0 {
                        table.columns.len()
                    } else {
                        table
                            .columns
                            .iter()
                            .filter(|c| !is_omitted(c, omitted))
                            .count()
                    } + upsert as usize;
                    target.data[start..start + 2].copy_from_slice(&(fields as i16).to_be_bytes());
                    target.rows.push(Row {
                        input: emitted.input,
                        start,
                        end: target.data.len(),
                        omitted,
                    });
                    // Only a batch whose first row leaves out no column can start with a run.
                    if !stream_tried {
                        stream_tried = true;
                        if omitted == 0 {
                            stream = self.start_stream(session);
                        }
                    }
                    if let Some(s) = stream.as_mut().filter(|s| s.table() == t) {
                        s.offer(&target.data, &target.rows, false);
                    }
                }
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
        if let Some(s) = stream.as_mut() {
            let target = &rows.tables[s.table()];
            s.offer(&target.data, &target.rows, true);
        }
        session.stream = stream;
        for t in &mut rows.tables {
            t.freeze();
        }
        failures
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
        self.sink.encode(
            batch.router,
            batch.out,
            batch.input,
            &mut self.rows,
            &mut self.session,
        )
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
            if let Some(stream) = self.session.stream.take() {
                // Every streamed row's input failed elsewhere: release the transaction now.
                self.sink.abandon(&mut self.session, stream);
            }
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

/// Appends a record's row (its fields, in column order) to `out`; returns the bits of the
/// defaulted columns it leaves out.
fn encode_row(
    table: &Table,
    record: &OutputRecord<'_>,
    input: &InputRecord<'_>,
    out: &mut Vec<u8>,
    scratch: &mut fields::Scratch,
) -> Result<u64, String> {
    if !table.needs_object {
        return encode_columns(table, None, record, input, out);
    }
    let value = record
        .value
        .ok_or("the value is null (a tombstone), not a JSON object to make a row of")?;
    fields::with_fields(value, &table.fields, scratch, |slots, text| {
        encode_columns(table, Some((slots, text)), record, input, out)
    })
    .map_err(|e| match e {
        NotAnObject::NotJson(e) => format!("the value is not JSON ({e})"),
        NotAnObject::OtherJson => "the value is JSON but not an object".to_string(),
    })?
}

/// [`encode_row`] once the value's fields are read (`object`: the slots of the table's fields
/// and the text that escaped strings were decoded into).
fn encode_columns(
    table: &Table,
    object: Option<(&[Slot<'_>], &str)>,
    record: &OutputRecord<'_>,
    input: &InputRecord<'_>,
    out: &mut Vec<u8>,
) -> Result<u64, String> {
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
        // A number or boolean field, as the `Value` the conversion takes (no allocation).
        let scalar: Value;
        let value: Option<Input<'_>> = match &column.source {
            Source::Field(name) => {
                let slot = match (object, table.fields.of_column(i)) {
                    (Some((slots, _)), Some(f)) => &slots[f],
                    _ => &Slot::Missing,
                };
                match slot {
                    Slot::Missing => {
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
                    Slot::Null => {
                        if column.required || table.key.contains(&i) {
                            return Err(format!(
                                "field `{name}` is null and column `{}` is NOT NULL",
                                column.name
                            ));
                        }
                        None
                    }
                    // A JSON string converts exactly as text does.
                    Slot::Str(s) => Some(Input::Text(s)),
                    Slot::Escaped(range) => Some(Input::Text(
                        &object.expect("slots come with their text").1[range.clone()],
                    )),
                    Slot::Bool(b) => {
                        scalar = Value::Bool(*b);
                        Some(Input::Json(&scalar))
                    }
                    Slot::Number(n) => {
                        scalar = Value::Number(n.clone());
                        Some(Input::Json(&scalar))
                    }
                    Slot::Nested(v) => Some(Input::Json(v)),
                }
            }
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

#[cfg(test)]
mod tests;
