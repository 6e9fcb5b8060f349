//! Sluice: consume Kafka topics, run WebAssembly component transforms on every record, write the
//! results to Kafka topics.
//!
//! A record's path, one module per step: [`source`] (consumer group, per-partition batches) →
//! [`chain`] (plugins, run by [`runtime`]) → [`router`] (named outputs) → [`sinks`] (Kafka
//! producer) → [`offsets`] (commit what is acknowledged). [`pipeline`] wires the steps together;
//! [`config`] is the TOML file; [`cli`] is the `sluice` command.

#![deny(missing_docs)]

pub mod admin;
pub mod chain;
pub mod cli;
pub mod config;
pub mod dev;
pub mod failure;
pub mod offsets;
pub mod pipeline;
pub mod plugin_test;
pub mod progress;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod sinks;
pub mod source;
pub mod telemetry;
pub mod wire;
