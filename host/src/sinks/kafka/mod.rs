//! The Kafka sink: the producer that writes outputs and dead-letter records.
//!
//! Every record sent carries the [`Ticket`] of its batch as its delivery opaque; the delivery
//! callback counts the ticket down, or fails it, which is what the offset tracker commits on.
//! The producer is idempotent, so librdkafka's retries neither duplicate nor reorder records.
//! Exactly-once pipelines give each worker a transactional producer of its own
//! ([`KafkaSink::transactional`]): a batch's outputs, dead letters and consumed offsets then
//! commit or abort together.

mod config;
mod outputs;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};
use sluice_abi::Header;

pub use config::KafkaConfig;
pub use outputs::{KafkaOutputs, validate_topic};

use crate::failure::{Reason, SinkReason};
use crate::offsets::{Refusal, Ticket};

/// An output larger than the producer or the broker accepts (`message.max.bytes`).
pub const TOO_LARGE: Reason = Reason::Sink(SinkReason("sink:too-large"));
/// An output the broker refuses as invalid (for example a null key on a compacted topic).
pub const INVALID_RECORD: Reason = Reason::Sink(SinkReason("sink:invalid-record"));
/// The reasons this sink dead-letters with.
pub const REASONS: &[Reason] = &[TOO_LARGE, INVALID_RECORD];

/// Output header: `name@version` of every plugin of the chain that produced the record.
pub const HEADER_VERSION: &str = "sluice.version";
/// Header names in this namespace are Sluice's own: a plugin's or an input's header with such a
/// name is never passed on as if Sluice had written it.
pub const RESERVED_PREFIX: &str = "sluice.";
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_000_000;

/// True for a header name in Sluice's reserved namespace.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
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
        MessageSizeTooLarge | MessageBatchTooLarge | InvalidMessageSize => Some(TOO_LARGE),
        InvalidRecord | InvalidMessage => Some(INVALID_RECORD),
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
    /// An output or dead letter, whose end-to-end latency is recorded; not a state changelog
    /// record (its timestamp is when it was produced, which would only dilute the histogram).
    record_latency: bool,
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let Delivery {
            ticket,
            source_offset,
            record_latency,
        } = *delivery;
        match result {
            Ok(message) => {
                if record_latency && let Some(ts) = message.timestamp().to_millis() {
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
        // No header list for a record without headers: librdkafka allocates and frees one per
        // record otherwise (a few % of a stateful pipeline's CPU, whose outputs have none).
        let mut headers: Option<OwnedHeaders> = None;
        for h in record.headers {
            headers = Some(headers.unwrap_or_default().insert(KafkaHeader {
                key: h.name,
                value: h.value,
            }));
        }
        let delivery = Box::new(Delivery {
            ticket: ticket.clone(),
            source_offset,
            record_latency: true,
        });
        let mut base = BaseRecord::with_opaque_to(topic, delivery);
        if let Some(headers) = headers {
            base = base.headers(headers);
        }
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

    /// Sends a state changelog record to `partition` of `topic` (a delete when `value` is
    /// `None`), counted on `ticket`. Blocks while librdkafka's queue is full; a failure fails the
    /// ticket, so the batch is not committed.
    pub fn send_to_partition(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
        ticket: &Arc<Ticket>,
    ) {
        let delivery = Box::new(Delivery {
            ticket: ticket.clone(),
            source_offset: None,
            record_latency: false,
        });
        let mut base = BaseRecord::with_opaque_to(topic, delivery)
            .partition(partition)
            .key(key);
        if let Some(value) = value {
            base = base.payload(value);
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
                    back.delivery_opaque.ticket.fail_permanently(format!(
                        "writing the state changelog `{topic}` [{partition}] failed: {error}"
                    ));
                    return;
                }
            }
        }
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
