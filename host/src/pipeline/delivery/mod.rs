//! How a batch becomes durable. Three ways, chosen per pipeline:
//!
//! - at-least-once ([`at_least_once`]): outputs are acknowledged by their sinks, and the consumer
//!   group's offsets are committed up to the last batch whose every record is acknowledged;
//! - exactly-once into Kafka ([`kafka_transactions`]): the batch's outputs, dead letters and next
//!   offset commit in one Kafka transaction;
//! - exactly-once into a sink that stores offsets (a database sink): rows and offsets commit in
//!   the sink's own transaction, written by the batch step.

pub(super) mod at_least_once;
pub(super) mod kafka_transactions;
