//! Sinks: where routed records are written. One folder per kind, holding its config and its
//! validation, its `check` (what `sluice check` reports), its connection and its writer:
//! [`kafka`] (topics, through the producer shared by the host, which also writes the dead
//! letters), [`postgres`] (tables, one connection per worker) and [`file`] (JSON lines).
//!
//! A sink writes *already-routed* records: the router has given every record of the batch its
//! output, and a sink takes the records of the outputs it owns. Adding a kind of sink is a folder
//! here and one arm of [`OutputConfig`].

pub mod dead_letter;
pub mod file;
pub mod kafka;
pub mod postgres;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;
use sluice_abi::{Header, InputBatch, OutputRecord};

use crate::chain::ChainOutput;
use crate::chain::Failure;
use crate::failure::Reason;
use crate::offsets::{OffsetStore, Ticket, TopicPartition};
use crate::router::Router;
use crate::runtime::Plugin;

pub use kafka::*;

/// Where a named output goes: one arm per kind of sink. Written in the config as a table with
/// exactly one of `kafka_topic = "…"`, `postgres = { … }` or `file = { … }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawOutput")]
pub enum OutputConfig {
    /// A Kafka topic to produce to.
    Kafka(String),
    /// A PostgreSQL table to write rows to.
    Postgres(Box<postgres::PostgresOutput>),
    /// A file of JSON lines to append to.
    File(file::FileOutput),
}

/// An output as written in the config, before it is known to name exactly one sink.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    /// Kafka topic of output `NAME`; must not be one of the pipeline's inputs.
    kafka_topic: Option<String>,
    /// A PostgreSQL table instead of a topic.
    postgres: Option<postgres::PostgresOutput>,
    /// A file of JSON lines instead of a topic (records as `sluice test` prints them).
    file: Option<file::FileOutput>,
}

impl TryFrom<RawOutput> for OutputConfig {
    type Error = String;

    fn try_from(raw: RawOutput) -> Result<Self, String> {
        match (raw.kafka_topic, raw.postgres, raw.file) {
            (Some(topic), None, None) => Ok(OutputConfig::Kafka(topic)),
            (None, Some(pg), None) => Ok(OutputConfig::Postgres(Box::new(pg))),
            (None, None, Some(file)) => Ok(OutputConfig::File(file)),
            _ => Err(
                "expected exactly one of `kafka_topic = \"…\"`, `postgres = { url = …, \
                      table = … }` or `file = { path = \"out.jsonl\" }`"
                    .into(),
            ),
        }
    }
}

impl OutputConfig {
    /// The topic of a Kafka output.
    pub fn kafka_topic(&self) -> Option<&String> {
        match self {
            OutputConfig::Kafka(topic) => Some(topic),
            _ => None,
        }
    }

    /// Checks the output; `Err((key suffix such as ".kafka_topic", what is expected))`.
    pub fn validate(&self, inputs: &[String]) -> Result<(), (String, String)> {
        match self {
            OutputConfig::Kafka(topic) => {
                kafka::validate_topic(topic, inputs).map_err(|e| (".kafka_topic".to_string(), e))
            }
            OutputConfig::Postgres(pg) => pg
                .validate()
                .map_err(|(key, e)| (format!(".postgres.{key}"), e)),
            OutputConfig::File(file) => file
                .validate()
                .map_err(|(key, e)| (format!(".file.{key}"), e)),
        }
    }

    /// What the output is, for messages: "a Kafka topic", "a Postgres table", "a file".
    fn kind(&self) -> &'static str {
        match self {
            OutputConfig::Kafka(_) => "a Kafka topic",
            OutputConfig::Postgres(_) => "a Postgres table",
            OutputConfig::File(_) => "a file",
        }
    }

    /// The transaction that can make this output exactly-once, if any: outputs in one scope
    /// can commit together with the pipeline's offsets.
    fn transaction_scope(&self) -> Option<String> {
        match self {
            OutputConfig::Kafka(_) => Some("a Kafka transaction".into()),
            OutputConfig::Postgres(pg) => Some(postgres::transaction_scope(pg)),
            OutputConfig::File(_) => None,
        }
    }
}

/// The reasons the sinks dead-letter with (beside [`Reason::ALL`]), for the metrics.
pub fn reasons() -> impl Iterator<Item = Reason> {
    [kafka::REASONS, postgres::REASONS]
        .into_iter()
        .flatten()
        .copied()
}

/// Describes the metrics the sinks export.
pub fn describe_metrics() {
    postgres::describe_metrics();
}

/// Exactly-once commits outputs and offsets in one transaction: every output must be in the same
/// one. `Err` says which outputs are not, and what to do.
pub fn check_one_transaction(outputs: &BTreeMap<String, OutputConfig>) -> Result<(), String> {
    let mut first: Option<(&str, &OutputConfig, String)> = None;
    for (name, output) in outputs {
        let Some(scope) = output.transaction_scope() else {
            return Err(format!(
                "output `{name}` cannot take part in a transaction (a file is written \
                 at-least-once, synced at each commit); use delivery = \"at-least-once\""
            ));
        };
        match &first {
            None => first = Some((name, output, scope)),
            Some((other, other_output, other_scope)) if *other_scope != scope => {
                let same_kind = other_output.kind() == output.kind();
                return Err(format!(
                    "exactly-once commits outputs and offsets in one transaction; output \
                     `{other}` is {} ({other_scope}) and output `{name}` is {} ({scope}), and no \
                     transaction spans both{}. Use delivery = \"at-least-once\" or split the \
                     pipeline in two",
                    other_output.kind(),
                    output.kind(),
                    if same_kind {
                        ": every output must be in the same database"
                    } else {
                        ""
                    }
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What a pipeline's sinks are made from.
pub struct SinkSpec<'a> {
    /// The pipeline's name (in messages and metric labels).
    pub name: &'a str,
    /// Its tenant (empty without tenants).
    pub tenant: &'a str,
    /// Exactly-once: a sink that stores offsets writes them with its records.
    pub exactly_once: bool,
    /// The pipeline's outputs, by name.
    pub outputs: &'a BTreeMap<String, OutputConfig>,
}

/// Where an exactly-once batch came from: a sink that stores offsets writes them with its rows.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// Source topic and partition.
    pub tp: TopicPartition,
    /// Offset of the batch's first record.
    pub first_offset: i64,
    /// Offset after its last record.
    pub next_offset: i64,
}

/// The outcome of a sink's write of one batch.
#[derive(Debug, Default)]
pub struct Written {
    /// Inputs whose records the sink refused while writing (a row the database rejects).
    pub failures: Vec<Failure>,
    /// Exactly-once: the stored offset was already past this batch (written before, or by the
    /// partition's new owner), so nothing was written.
    pub skipped: bool,
}

/// One batch after the chain and the router: what every sink writes from.
pub struct RoutedBatch<'a> {
    /// The chain's outputs; failed inputs have none.
    pub out: &'a ChainOutput,
    /// The pipeline's outputs.
    pub router: &'a Router,
    /// The input records.
    pub input: &'a InputBatch,
    /// The `sluice.version` header every output carries.
    pub version: Header<'a>,
    /// The batch's delivery ticket (asynchronous acknowledgements count on it).
    pub ticket: &'a Arc<Ticket>,
    /// The producer of this worker (transactional when exactly-once into Kafka).
    pub producer: &'a KafkaSink,
    /// The last plugin of the chain, blamed for what its outputs are.
    pub last_plugin: &'a Arc<Plugin>,
    /// True once the pipeline is stopping (a sink waiting for its server gives up).
    pub stopping: &'a (dyn Fn() -> bool + Sync),
}

/// Called by a sink that stores offsets just before its transaction commits, with the inputs it
/// refused while writing: the batch's dead letters are written then, so a crash in between
/// replays them rather than losing them.
pub type BeforeCommit<'a> = dyn FnMut(&[Failure]) -> Result<()> + Send + 'a;

/// One kind of output of one pipeline, connected.
pub trait Sink: Send + Sync {
    /// A writer for one worker (its own connections, buffers).
    fn writer(&self) -> Box<dyn SinkWriter>;

    /// Exactly-once into this sink: where the pipeline's offsets are stored with its writes.
    fn offset_store(&self) -> Option<Arc<dyn OffsetStore>> {
        None
    }
}

/// One worker's writer of a sink.
pub trait SinkWriter: Send {
    /// Before anything of the batch is written: the inputs whose records this sink cannot take
    /// (too large, not a row), which then go to the dead-letter topic whole.
    fn screen(&mut self, batch: &RoutedBatch<'_>) -> Vec<Failure>;

    /// Writes the records of the inputs that have not failed, counting them by output in
    /// `sent`. With `stamp` (exactly-once into this sink) the offsets go into the same
    /// transaction and `before_commit` runs just before it commits.
    fn write(
        &mut self,
        batch: &RoutedBatch<'_>,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
        sent: &mut [u64],
    ) -> Result<Written>;
}

/// The headers an output record is sent with: the plugin's, less any in Sluice's reserved
/// namespace (an input's forged `sluice.version` is not passed on), then `sluice.version`.
pub fn output_headers<'a>(
    record: &OutputRecord<'a>,
    version: Header<'a>,
) -> impl Iterator<Item = Header<'a>> {
    record
        .headers
        .iter()
        .filter(|h| !is_reserved(h.name))
        .chain(std::iter::once(version))
}

/// Connects the sinks of `pipeline`'s outputs, in a fixed order: Kafka topics first (their
/// records are on their way while the others write), then every other kind.
pub async fn connect(pipeline: &SinkSpec<'_>, router: &Router) -> Result<Vec<Arc<dyn Sink>>> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(kafka) = kafka::KafkaOutputs::new(pipeline, router) {
        sinks.push(Arc::new(kafka));
    }
    if let Some(pg) = postgres::PostgresSink::connect(pipeline, router).await? {
        sinks.push(Arc::new(pg));
    }
    if let Some(file) = file::FileSink::open(pipeline, router)? {
        sinks.push(Arc::new(file));
    }
    Ok(sinks)
}

/// For `sluice check`: one line per output that can be checked without running (a table exists
/// and fits, a file's folder is writable), or the first error.
pub async fn check(pipeline: &SinkSpec<'_>, timeout: Duration) -> Result<Vec<String>> {
    let mut lines = postgres::PostgresSink::check(pipeline, timeout).await?;
    lines.extend(file::check(pipeline)?);
    Ok(lines)
}
