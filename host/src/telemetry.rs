//! The process's metrics recorder: installed once, before any metric handle is made (a handle
//! made earlier would be a no-op), with every metric described. Metrics are recorded through the
//! `metrics` facade where they happen; the admin endpoints render them.

use std::sync::Mutex;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for durations in seconds, from 100 µs to a minute.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Buckets for batch sizes.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle> {
    // A lock, not a OnceLock check-then-set: two hosts starting at once must not both install.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().expect("metrics handle lock");
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("sluice_batch_size".into()), SIZE_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    Ok(slot.insert(handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "sluice_records_in_total",
        "Input records processed, by pipeline."
    );
    describe_counter!(
        "sluice_records_out_total",
        "Output records sent, by pipeline and output."
    );
    describe_counter!(
        "sluice_records_dead_lettered_total",
        "Input records sent to the dead-letter topic, by pipeline and reason (limit:* are limit hits)."
    );
    describe_counter!("sluice_batches_total", "Batches processed, by pipeline.");
    describe_counter!(
        "sluice_state_operations_total",
        "State operations of stateful plugins (op = read: get, scan; write: put, delete, timer register/cancel), by pipeline."
    );
    describe_counter!(
        "sluice_state_written_bytes_total",
        "Bytes of keys and values written to state by stateful plugins, by pipeline."
    );
    describe_gauge!(
        "sluice_state_bytes",
        "Bytes of keys and values in the last state store of the pipeline to commit a batch, by pipeline."
    );
    describe_counter!(
        "sluice_state_changelog_records_total",
        "State changes written to the pipeline's changelog topic, by pipeline."
    );
    describe_counter!(
        "sluice_state_restored_records_total",
        "Changelog records applied while restoring state stores on assignment, by pipeline."
    );
    describe_histogram!(
        "sluice_state_restore_seconds",
        "Time to restore one partition's state store from its changelog, by pipeline."
    );
    describe_histogram!("sluice_batch_size", "Records per batch, by pipeline.");
    describe_histogram!(
        "sluice_plugin_call_seconds",
        "Time of one plugin call (a batch), by pipeline and plugin."
    );
    describe_histogram!(
        "sluice_end_to_end_latency_seconds",
        "From an output record's timestamp (its input's, unless the plugin set one) to its acknowledgement."
    );
    describe_gauge!(
        "sluice_consumer_lag",
        "Records between the consumer's position and the partition's end."
    );
    describe_counter!(
        "sluice_commits_total",
        "Offset commits (exactly-once into Kafka: committed transactions), by pipeline."
    );
    describe_counter!(
        "sluice_transactions_aborted_total",
        "Exactly-once transactions aborted, by pipeline; the partition is read again from its last commit."
    );
    describe_gauge!(
        "sluice_producer_queue_depth",
        "Records queued in the producer, not yet acknowledged."
    );
    describe_counter!(
        "sluice_plugin_reloads_total",
        "Hot-reload outcomes by pipeline, plugin and result (swapped, rejected, rolled_back)."
    );
    describe_gauge!(
        "sluice_plugin_info",
        "1 for the live version of each plugin, 0 for versions replaced."
    );
    describe_counter!(
        "sluice_plugin_state_failures_total",
        "Plugin calls that failed on a live instance while none of their records fails on a fresh one (the plugin's own state went bad)."
    );
    describe_counter!(
        "sluice_guest_log_dropped_bytes_total",
        "Guest log bytes dropped over the plugin's limits.log_bytes_per_second budget."
    );
    describe_gauge!(
        "sluice_stalled_partitions",
        "Partitions whose oldest batch has not moved for runtime.stall_timeout_ms, by pipeline."
    );
    crate::sinks::describe_metrics();
}
