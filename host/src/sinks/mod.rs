//! Sinks: where routed records go. Kafka topics (the producer shared by the host, which also
//! writes dead letters) and PostgreSQL tables (one connection per worker).

pub mod kafka;
pub mod postgres;

pub use kafka::*;
