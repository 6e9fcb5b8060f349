//! Metric handles of one pipeline, made once so the record path only adds numbers.

use crate::router::Router;
use crate::runtime::Reason;

/// Metric handles of one pipeline, made once so the record path only adds numbers.
pub(crate) struct PipelineMetrics {
    pub(crate) records_in: metrics::Counter,
    pub(crate) batches: metrics::Counter,
    pub(crate) batch_size: metrics::Histogram,
    /// By output index of the router.
    pub(crate) records_out: Vec<metrics::Counter>,
    /// By reason: every reason of the sandbox, the router and the sinks.
    pub(crate) dead_lettered: Vec<(Reason, metrics::Counter)>,
    pub(crate) commits: metrics::Counter,
    pub(crate) producer_queue: metrics::Gauge,
}

impl PipelineMetrics {
    pub(crate) fn new(pipeline: &str, tenant: &str, router: &Router) -> Self {
        let labels = [
            ("pipeline", pipeline.to_string()),
            ("tenant", tenant.to_string()),
        ];
        let with = |extra: (&'static str, String)| {
            let mut l: Vec<(&'static str, String)> = labels.to_vec();
            l.push(extra);
            l
        };
        PipelineMetrics {
            records_in: metrics::counter!("sluice_records_in_total", &labels),
            batches: metrics::counter!("sluice_batches_total", &labels),
            batch_size: metrics::histogram!("sluice_batch_size", &labels),
            records_out: router
                .names()
                .iter()
                .map(|o| {
                    metrics::counter!("sluice_records_out_total", &with(("output", o.clone())))
                })
                .collect(),
            dead_lettered: Reason::ALL
                .iter()
                .copied()
                .chain(crate::sinks::reasons())
                .map(|r| {
                    let counter = metrics::counter!(
                        "sluice_records_dead_lettered_total",
                        &with(("reason", r.as_str().to_string()))
                    );
                    (r, counter)
                })
                .collect(),
            commits: metrics::counter!("sluice_commits_total", &labels),
            producer_queue: metrics::gauge!("sluice_producer_queue_depth"),
        }
    }
}
