//! Kafka topics as a pipeline's outputs: each routed record is produced to its output's topic
//! through the worker's producer, acknowledged asynchronously on the batch's ticket.

use std::sync::Arc;

use anyhow::Result;

use super::OutgoingRecord;
use crate::chain::Failure;
use crate::router::Router;
use crate::sinks::{
    BeforeCommit, RoutedBatch, Sink, SinkSpec, SinkWriter, Stamp, Written, output_headers,
};

/// Checks a Kafka output's topic name.
pub fn validate_topic(topic: &str, inputs: &[String]) -> Result<(), String> {
    if topic.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if inputs.iter().any(|i| i == topic) {
        return Err(format!(
            "`{topic}` is also an input: the pipeline would consume its own output"
        ));
    }
    Ok(())
}

/// The Kafka outputs of one pipeline: the topic of each router output (`None`: another sink's).
#[derive(Clone)]
pub struct KafkaOutputs {
    topics: Arc<[Option<String>]>,
}

impl KafkaOutputs {
    /// The Kafka outputs of `pipeline`, if it has any.
    pub fn new(pipeline: &SinkSpec<'_>, router: &Router) -> Option<KafkaOutputs> {
        let topics: Vec<Option<String>> = router
            .names()
            .iter()
            .map(|name| pipeline.outputs[name].kafka_topic().cloned())
            .collect();
        topics.iter().any(Option::is_some).then(|| KafkaOutputs {
            topics: topics.into(),
        })
    }
}

impl Sink for KafkaOutputs {
    fn writer(&self) -> Box<dyn SinkWriter> {
        Box::new(self.clone())
    }
}

impl SinkWriter for KafkaOutputs {
    /// The inputs with an output larger than the producer's `message.max.bytes`, caught before
    /// anything of the batch is sent so the input goes to the dead-letter topic whole.
    fn screen(&mut self, batch: &RoutedBatch<'_>) -> Vec<Failure> {
        let max = batch.producer.max_message_bytes();
        let mut failures: Vec<Failure> = Vec::new();
        for (emitted, output) in batch.router.routes(batch.out) {
            let Some(topic) = &self.topics[output] else {
                continue;
            };
            if failures.last().is_some_and(|f| f.input == emitted.input) {
                continue;
            }
            let r = &emitted.record;
            let size = crate::wire::record_size(r.key, r.value, output_headers(r, batch.version));
            if size > max {
                failures.push(Failure {
                    input: emitted.input,
                    reason: super::TOO_LARGE,
                    message: format!(
                        "an output record of {size} bytes for topic `{topic}` (output `{}`) is \
                         larger than the producer's message.max.bytes ({max}); emit smaller \
                         records, or raise message.max.bytes in [kafka.producer] together with \
                         the topic's max.message.bytes",
                        batch.router.names()[output]
                    ),
                    plugin: Some(batch.last_plugin.clone()),
                });
            }
        }
        failures
    }

    /// Produces every routed record to its topic; acknowledgements count on the batch's ticket.
    fn write(
        &mut self,
        batch: &RoutedBatch<'_>,
        _stamp: Option<&Stamp>,
        _before_commit: &mut BeforeCommit<'_>,
        sent: &mut [u64],
    ) -> Result<Written> {
        for (emitted, output) in batch.router.routes(batch.out) {
            let Some(topic) = &self.topics[output] else {
                continue;
            };
            sent[output] += 1;
            let record = &emitted.record;
            let input = batch.input.record(emitted.input as usize);
            batch.producer.send(
                topic,
                OutgoingRecord {
                    key: record.key,
                    value: record.value,
                    headers: output_headers(record, batch.version),
                    timestamp: record.timestamp.or(input.timestamp),
                },
                batch.ticket,
                Some(input.offset),
            );
        }
        Ok(Written::default())
    }
}
