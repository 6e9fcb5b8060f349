//! Sluice: consume Kafka topics, run WebAssembly component transforms on every record, write the
//! results to Kafka topics.
//!
//! A record's path, one module per step: [`source`] (consumer group, per-partition batches) →
//! [`chain`] (plugins, run by [`runtime`]) → [`router`] (named outputs) → [`sinks`] (Kafka
//! producer) → [`offsets`] (commit what is acknowledged). [`pipeline`] wires the steps together;
//! [`config`] is the TOML file; [`cli`] is the `sluice` command.

#![deny(missing_docs)]

pub(crate) mod admin;
pub(crate) mod chain;
pub mod cli;
pub(crate) mod config;
pub(crate) mod dev;
pub(crate) mod failure;
pub(crate) mod offsets;
pub(crate) mod pipeline;
pub(crate) mod plugin_test;
pub(crate) mod progress;
pub(crate) mod reload;
pub(crate) mod router;
pub(crate) mod runtime;
pub(crate) mod scaffold;
pub(crate) mod sinks;
pub(crate) mod source;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod wire;

/// What the integration tests and benchmarks drive directly; everything else is the crate's
/// own. Programs use the `sluice` command ([`cli`]).
pub mod testing {
    /// The admin endpoints beside a running host.
    pub mod admin {
        pub use crate::admin::AdminServer;
    }
    /// A plugin chain, run directly.
    pub mod chain {
        pub use crate::chain::Chain;
    }
    /// The config file.
    pub mod config {
        pub use crate::config::{Config, Limits};
    }
    /// Hosts and their pipelines.
    pub mod pipeline {
        pub use crate::pipeline::{Host, PipelineStats};
    }
    /// Hot reload.
    pub mod reload {
        pub use crate::reload::{LiveChain, Offer};
    }
    /// The WebAssembly runtime.
    pub mod runtime {
        pub use crate::runtime::{
            Compiler, ComponentCache, LoadError, MAX_WASI_RESOURCES, Plugin, PluginSpec, Reason,
            Runtime, content_version,
        };
    }
    /// Keyed state of stateful plugins.
    pub mod state {
        pub use crate::state::{PartitionStore, Stores, changelog_key, restore_in_memory};
    }
    /// Sinks.
    pub mod sinks {
        pub use crate::sinks::Stamp;
        /// The Postgres sink.
        pub mod postgres {
            pub use crate::sinks::postgres::{PostgresSink, Rows, Session};
        }
    }
    /// The metrics recorder.
    pub mod telemetry {
        pub use crate::telemetry::metrics_handle;
    }
}
