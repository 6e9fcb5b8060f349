//! The stall watch: a partition that does not move is reported, not silent.

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::watch;

use super::*;

/// Checks every second for partitions that have not moved for `timeout`: a worker holding one
/// batch that long (a plugin that cannot start, a producer that cannot initialise its
/// transactions) or a batch whose records are not acknowledged. Logs an error naming each
/// partition and the cause, and keeps `/readyz` failing until it moves again.
pub(crate) async fn watch_stalls(
    status: Arc<PipelineStatus>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut reported: Vec<String> = Vec::new();
    let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let gauge = metrics::gauge!("sluice_stalled_partitions", "pipeline" => status.name.clone(), "tenant" => status.tenant.clone());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut stalls: Vec<String> = status
            .progress
            .stalled(timeout)
            .into_iter()
            .map(|s| {
                let at = s
                    .partition
                    .map_or("a batch".to_string(), |(t, p)| format!("{t}[{p}]"));
                format!(
                    "{at}: worker {} has held its batch for {} s: {}",
                    s.worker, s.for_secs, s.cause
                )
            })
            .collect();
        for ((topic, partition), age) in status.tracker.unacknowledged_for(timeout) {
            let at = format!("{topic}[{partition}]");
            if !stalls.iter().any(|s| s.starts_with(&format!("{at}:"))) {
                stalls.push(format!(
                    "{at}: its oldest batch has not been processed and acknowledged for {} s \
                     (the sinks do not acknowledge its records; see the warnings above)",
                    age.as_secs()
                ));
            }
        }
        let keys = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.split(':').next().unwrap_or_default().to_string())
                .collect()
        };
        let (now, before) = (keys(&stalls), keys(&reported));
        for (stall, key) in stalls.iter().zip(&now) {
            if !before.contains(key) {
                tracing::error!(pipeline = %status.name, "partition stalled (runtime.stall_timeout_ms = {} ms; /readyz fails until it moves): {stall}", timeout.as_millis());
            }
        }
        for key in before.iter().filter(|k| !now.contains(k)) {
            tracing::info!(pipeline = %status.name, "partition {key} moves again");
        }
        gauge.set(stalls.len() as f64);
        *status.stalls.lock().expect("stalls lock") = stalls.clone();
        reported = stalls;
    }
}
