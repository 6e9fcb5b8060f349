//! The Kafka connection settings, shared by the source's consumers and the producer.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Kafka connection settings shared by every pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// librdkafka properties for the consumers and the producer (SASL, SSL, timeouts…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}
