//! The Kafka sink: the producer that writes outputs and dead-letter records.
//!
//! Every record sent carries the [`Ticket`] of its batch as its delivery opaque; the delivery
//! callback counts the ticket down, or fails it, which is what the offset tracker commits on.
//! The producer is idempotent, so librdkafka's retries neither duplicate nor reorder records.
//! Exactly-once pipelines give each worker a transactional producer of its own
//! ([`KafkaSink::transactional`]): a batch's outputs, dead letters and consumed offsets then
//! commit or abort together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};
use sluice_abi::{Header, InputRecord};

use crate::chain::Failure;
use crate::config::KafkaConfig;
use crate::offsets::{Refusal, Ticket};
use crate::runtime::Reason;

/// Output header: `name@version` of every plugin of the chain that produced the record.
pub const HEADER_VERSION: &str = "sluice.version";
/// Dead-letter header: the failure class (`plugin-error`, `trap`, `limit:deadline`…).
pub const HEADER_REASON: &str = "sluice.error.reason";
/// Dead-letter header: the failure message.
pub const HEADER_MESSAGE: &str = "sluice.error.message";
/// Dead-letter header: the plugin that failed the record.
pub const HEADER_PLUGIN: &str = "sluice.plugin";
/// Dead-letter header: that plugin's version (content hash).
pub const HEADER_PLUGIN_VERSION: &str = "sluice.plugin.version";
/// Dead-letter header: the pipeline.
pub const HEADER_PIPELINE: &str = "sluice.pipeline";
/// Dead-letter header: source topic.
pub const HEADER_SOURCE_TOPIC: &str = "sluice.source.topic";
/// Dead-letter header: source partition.
pub const HEADER_SOURCE_PARTITION: &str = "sluice.source.partition";
/// Dead-letter header: source offset.
pub const HEADER_SOURCE_OFFSET: &str = "sluice.source.offset";

/// Dead-letter header, present when the dead letter had to be cut to fit `message.max.bytes`:
/// what was left out (`value`, or `value,key,headers`). The source topic/partition/offset headers
/// still identify the record.
pub const HEADER_DROPPED: &str = "sluice.error.dropped";
/// Header names in this namespace are Sluice's own: a plugin's or an input's header with such a
/// name is never passed on as if Sluice had written it.
pub const RESERVED_PREFIX: &str = "sluice.";
/// An input header in the reserved namespace is kept in a dead letter under this prefix
/// (`original.sluice.version`), so the dead letter's own `sluice.*` headers are the only ones.
pub const RENAMED_PREFIX: &str = "original.";

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_000_000;

/// True for a header name in Sluice's reserved namespace.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Longest `sluice.error.message` header, in bytes.
const MAX_MESSAGE_HEADER: usize = 4096;

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How long one transactional call may take before it is retried or reported.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a commit or abort, retries included, may take before the producer is given up.
const TXN_HUNG: Duration = Duration::from_secs(30);

/// Why a transactional call failed.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The transaction cannot commit (a delivery failed, the group moved on, a broker timed
    /// out…): abort it and process its records again.
    #[error("the transaction must be aborted: {0}")]
    Abortable(KafkaError),
    /// The producer is unusable, most often fenced by a newer producer with the same
    /// transactional id (another process with the same `runtime.instance_id`).
    #[error("the transactional producer failed for good: {0}")]
    Fatal(KafkaError),
    /// The call did not return (see [`KafkaSink::commit`]): the producer must be replaced.
    #[error("the transactional producer is stuck: {0}")]
    Hung(String),
}

impl From<KafkaError> for TxnError {
    fn from(e: KafkaError) -> Self {
        if is_fatal(&e) {
            TxnError::Fatal(e)
        } else {
            TxnError::Abortable(e)
        }
    }
}

/// A delivery error that says the record itself cannot be written (its size, its form), not
/// that the topic or the producer is wrong: the input can be dead-lettered with this reason.
fn record_refusal(e: &KafkaError) -> Option<Reason> {
    use RDKafkaErrorCode::*;
    match e.rdkafka_error_code()? {
        MessageSizeTooLarge | MessageBatchTooLarge | InvalidMessageSize => {
            Some(Reason::SinkTooLarge)
        }
        InvalidRecord | InvalidMessage => Some(Reason::SinkInvalidRecord),
        _ => None,
    }
}

/// A delivery error that a retry would meet again.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | UnknownTopicOrPartition
                | UnknownTopic
                | UnknownPartition
                | TopicAuthorizationFailed
                | InvalidRecord
                | MessageBatchTooLarge
                | InvalidMessageSize
                | InvalidTopic
        )
    )
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

/// Runs a transactional call again while librdkafka says it may be retried.
fn retry(mut call: impl FnMut() -> KafkaResult<()>) -> Result<(), TxnError> {
    let mut backoff = Backoff::default();
    loop {
        match call() {
            Err(KafkaError::Transaction(t)) if t.is_retriable() && !t.txn_requires_abort() => {
                backoff.wait(&format!("transactional call, retrying: {t}"));
            }
            result => return result.map_err(TxnError::from),
        }
    }
}

/// Exponential backoff from 100 ms to 5 s, logging why it waits.
#[derive(Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Logs `why` and sleeps for the next interval.
    pub fn wait(&mut self, why: &str) {
        let delay =
            Duration::from_millis(100u64 << self.attempt.min(6)).min(Duration::from_secs(5));
        self.attempt += 1;
        tracing::warn!("{why}; again in {} ms", delay.as_millis());
        crate::progress::note(why);
        std::thread::sleep(delay);
    }
}

/// Counts down the batch ticket of every delivered record and records its end-to-end latency.
pub struct DeliveryContext {
    latency: metrics::Histogram,
}

impl ClientContext for DeliveryContext {}

/// What the delivery callback of one record needs: its batch's ticket and, for an output, the
/// offset of the input it was made from (so a record the broker refuses can be dead-lettered).
pub struct Delivery {
    ticket: Arc<Ticket>,
    source_offset: Option<i64>,
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let Delivery {
            ticket,
            source_offset,
        } = *delivery;
        match result {
            Ok(message) => {
                if let Some(ts) = message.timestamp().to_millis() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.latency.record((now - ts).max(0) as f64 / 1000.0);
                }
                ticket.done()
            }
            Err((error, message)) => {
                let reason = format!("delivery to topic `{}` failed: {error}", message.topic());
                if let (Some(offset), Some(class)) = (source_offset, record_refusal(error)) {
                    ticket.refuse(Refusal {
                        offset,
                        reason: class,
                        message: reason,
                    });
                } else if is_permanent(error) {
                    ticket.fail_permanently(reason)
                } else {
                    ticket.fail(reason)
                }
            }
        }
    }
}

/// A Kafka producer shared by every pipeline of the host.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryContext>,
    /// The producer's `message.max.bytes`: a larger record is refused by librdkafka itself.
    max_message_bytes: u64,
}

/// One record to produce.
pub struct OutgoingRecord<'a, H> {
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
    /// Headers.
    pub headers: H,
    /// Timestamp in milliseconds.
    pub timestamp: Option<i64>,
}

impl KafkaSink {
    /// Connects a producer to the configured brokers.
    pub fn new(kafka: &KafkaConfig) -> Result<Self> {
        Self::with_config(kafka, ClientConfig::new())
    }

    fn with_config(kafka: &KafkaConfig, mut config: ClientConfig) -> Result<Self> {
        config
            .set("bootstrap.servers", &kafka.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Java clients' partitioner: the same key lands in the same partition as with
            // Kafka Streams or Connect.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5");
        let mut max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
        for (k, v) in kafka.properties.iter().chain(&kafka.producer) {
            config.set(k, v);
            if k == "message.max.bytes" {
                max_message_bytes = v.trim().parse().with_context(|| {
                    format!("kafka property message.max.bytes = `{v}`: expected a number of bytes")
                })?;
            }
        }
        let producer = config
            .create_with_context(DeliveryContext {
                latency: metrics::histogram!("sluice_end_to_end_latency_seconds"),
            })
            .context("creating the Kafka producer (check kafka.properties / kafka.producer)")?;
        Ok(KafkaSink {
            producer,
            max_message_bytes,
        })
    }

    /// A transactional producer with `transactional_id`, its transactions initialised (which
    /// fences any earlier producer with that id and aborts what it left open). Retries while
    /// the brokers are unreachable, until `give_up` says so.
    pub fn transactional(
        kafka: &KafkaConfig,
        transactional_id: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("transactional.id", transactional_id)
            // A crashed process that does not come back holds its open transaction this long.
            .set("transaction.timeout.ms", "10000");
        let sink = Self::with_config(kafka, config)?;
        let mut backoff = Backoff::default();
        loop {
            match sink.producer.init_transactions(TXN_TIMEOUT) {
                Ok(()) => return Ok(sink),
                Err(e) if !is_fatal(&e) && !give_up() => {
                    backoff.wait(&format!(
                        "initialising transactions for `{transactional_id}`: {e}"
                    ));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("initialising the transactional producer `{transactional_id}`")
                    });
                }
            }
        }
    }

    /// Opens a transaction: what is sent from now on commits or aborts as a whole.
    pub fn begin(&self) -> Result<(), TxnError> {
        self.producer.begin_transaction().map_err(TxnError::from)
    }

    /// Adds `offsets` (the consumer group's next positions) to the open transaction and commits
    /// it, retrying what librdkafka says can be retried.
    pub fn commit(
        self: &Arc<Self>,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), TxnError> {
        self.bounded(move |sink| {
            retry(|| {
                sink.producer
                    .send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)
            })?;
            retry(|| sink.producer.commit_transaction(TXN_TIMEOUT))
        })
    }

    /// Aborts the open transaction: nothing sent in it becomes visible to `read_committed`
    /// readers, and its offsets are not committed.
    pub fn abort(self: &Arc<Self>) -> Result<(), TxnError> {
        self.bounded(|sink| retry(|| sink.producer.abort_transaction(TXN_TIMEOUT)))
    }

    /// Runs a transactional call on a thread of its own and gives up on it after [`TXN_HUNG`].
    /// librdkafka 2.12 can lose track of a call when the coordinators restart under it
    /// (`send_offsets_to_transaction` then never returns, whatever its timeout); the caller
    /// replaces the producer, whose successor fences this one.
    fn bounded(
        self: &Arc<Self>,
        call: impl FnOnce(&KafkaSink) -> Result<(), TxnError> + Send + 'static,
    ) -> Result<(), TxnError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sink = self.clone();
        std::thread::Builder::new()
            .name("sluice-txn-call".into())
            .spawn(move || {
                let _ = tx.send(call(&sink));
            })
            .map_err(|e| TxnError::Hung(format!("cannot start a thread: {e}")))?;
        rx.recv_timeout(TXN_HUNG).unwrap_or_else(|_| {
            Err(TxnError::Hung(format!(
                "a transactional call did not return within {} s",
                TXN_HUNG.as_secs()
            )))
        })
    }

    /// The largest record this producer may send, as [`crate::wire::record_size`] counts it.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
    }

    /// Sends a record to `topic`, counted on `ticket`. Blocks while librdkafka's queue is full.
    /// `source_offset` is the offset of the input an output was made from (`None` for a dead
    /// letter, which must not be refused: that stops the pipeline).
    pub fn send<'h>(
        &self,
        topic: &str,
        record: OutgoingRecord<'_, impl Iterator<Item = Header<'h>>>,
        ticket: &Arc<Ticket>,
        source_offset: Option<i64>,
    ) {
        let mut headers = OwnedHeaders::new();
        for h in record.headers {
            headers = headers.insert(KafkaHeader {
                key: h.name,
                value: h.value,
            });
        }
        let delivery = Box::new(Delivery {
            ticket: ticket.clone(),
            source_offset,
        });
        let mut base = BaseRecord::with_opaque_to(topic, delivery).headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(ts) = record.timestamp {
            base = base.timestamp(ts);
        }
        ticket.add();
        loop {
            match self.producer.send(base) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((error, back)) => {
                    back.delivery_opaque
                        .ticket
                        .fail_permanently(format!("producing to topic `{topic}` failed: {error} (check that the topic exists and the \
                               client may write it; a record too large needs a larger message.max.bytes or a \
                               smaller limits.max_output_bytes)"));
                    return;
                }
            }
        }
    }

    /// Sends `input` to the dead-letter topic with headers saying why: unchanged, except that
    /// its own headers in the `sluice.` namespace are renamed (`original.sluice.…`) and that a
    /// record too large to send with those headers goes without its value (then without its key
    /// and headers), flagged by `sluice.error.dropped`. A dead letter is never refused for size.
    pub fn dead_letter(
        &self,
        topic: &str,
        pipeline: &str,
        input: &InputRecord<'_>,
        failure: &Failure,
        ticket: &Arc<Ticket>,
    ) {
        let (plugin, version) = failure
            .plugin
            .as_ref()
            .map_or(("", ""), |p| (&*p.name, &*p.version));
        let partition = input.partition.to_string();
        let offset = input.offset.to_string();
        // A plugin's message can be any length; keep the dead letter producible.
        let message = truncate(&failure.message, MAX_MESSAGE_HEADER);
        let extra = [
            (HEADER_REASON, failure.reason.as_str()),
            (HEADER_MESSAGE, message),
            (HEADER_PIPELINE, pipeline),
            (HEADER_PLUGIN, plugin),
            (HEADER_PLUGIN_VERSION, version),
            (HEADER_SOURCE_TOPIC, input.topic),
            (HEADER_SOURCE_PARTITION, &partition),
            (HEADER_SOURCE_OFFSET, &offset),
        ];
        let renamed: Vec<String> = input
            .headers
            .iter()
            .filter(|h| is_reserved(h.name))
            .map(|h| format!("{RENAMED_PREFIX}{}", h.name))
            .collect();
        let input_headers = || {
            let mut renamed = renamed.iter();
            input.headers.iter().map(move |h| {
                if is_reserved(h.name) {
                    let name = renamed
                        .next()
                        .expect("one renamed name per reserved header");
                    Header {
                        name,
                        value: h.value,
                    }
                } else {
                    h
                }
            })
        };
        let extra_headers = |dropped: Option<&'static str>| {
            extra
                .iter()
                .map(|(name, value)| (*name, *value))
                .chain(dropped.map(|d| (HEADER_DROPPED, d)))
                .map(|(name, value)| Header {
                    name,
                    value: Some(value.as_bytes()),
                })
                .collect::<Vec<_>>()
        };
        let fits = |key, value, with_input_headers: bool, dropped| {
            let own = extra_headers(dropped);
            let size = if with_input_headers {
                crate::wire::record_size(key, value, input_headers().chain(own))
            } else {
                crate::wire::record_size(key, value, own)
            };
            size <= self.max_message_bytes
        };
        // The whole record if it fits; else without its value; else only the identifying headers.
        let (key, value, with_input_headers, dropped) = if fits(input.key, input.value, true, None)
        {
            (input.key, input.value, true, None)
        } else if fits(input.key, None, true, Some("value")) {
            (input.key, None, true, Some("value"))
        } else {
            (None, None, false, Some("value,key,headers"))
        };
        if dropped.is_some() {
            tracing::warn!(
                pipeline,
                topic = input.topic,
                partition = input.partition,
                offset = input.offset,
                "the dead letter is too large for message.max.bytes ({} bytes): it is written without its {}",
                self.max_message_bytes,
                dropped.unwrap_or_default()
            );
        }
        let own = extra_headers(dropped);
        let headers = input_headers()
            .take(if with_input_headers { usize::MAX } else { 0 })
            .chain(own);
        self.send(
            topic,
            OutgoingRecord {
                key,
                value,
                headers,
                timestamp: input.timestamp,
            },
            ticket,
            None,
        );
    }

    /// Waits until every queued record is acknowledged, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(timeout)
            .context("waiting for the Kafka producer to deliver queued records")
    }

    /// Records queued in librdkafka, not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}
