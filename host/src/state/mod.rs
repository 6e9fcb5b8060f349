//! Keyed state and timers of stateful plugins (issue 15), kept by the host.
//!
//! One [`PartitionStore`] per assigned input partition of a stateful pipeline: a read cache over
//! a redb file under `runtime.state_dir`. A plugin call's changes stay in the call's overlay
//! ([`CallState`]) until it returns; the batch's changes are then written to the pipeline's
//! compacted changelog topic through the batch's delivery (in its Kafka transaction under
//! exactly-once, acknowledged before its offsets commit under at-least-once) and applied to the
//! store when it commits. A partition's store is restored from the changelog when the partition
//! is assigned, before its first batch is processed, and closed when it is revoked.
//!
//! The flow stays one-way: the pipeline's workers hold the stores and hand the store of a
//! batch's partition to the chain; the runtime's host calls act on it through [`CallState`].

mod call;
pub(crate) mod changelog;
pub(crate) mod keys;
mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;

pub use call::CallState;
pub(crate) use call::{EVENT_TIME, PROCESSING_TIME, take_due};
pub use store::{PartitionStore, Quota, StateLimitHit};
pub(crate) use store::Shared;

use crate::offsets::TopicPartition;

/// Metric handles of one stateful pipeline.
#[derive(Clone)]
pub(crate) struct StateMeters {
    pub(crate) reads: metrics::Counter,
    pub(crate) writes: metrics::Counter,
    pub(crate) written_bytes: metrics::Counter,
    pub(crate) bytes: metrics::Gauge,
    pub(crate) restored: metrics::Counter,
    pub(crate) restore_seconds: metrics::Histogram,
    pub(crate) changelog_records: metrics::Counter,
}

impl StateMeters {
    pub(crate) fn new(pipeline: &str, tenant: &str) -> Self {
        let l = |op: &'static str| {
            metrics::counter!("sluice_state_operations_total", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string(), "op" => op)
        };
        StateMeters {
            reads: l("read"),
            writes: l("write"),
            written_bytes: metrics::counter!("sluice_state_written_bytes_total", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string()),
            bytes: metrics::gauge!("sluice_state_bytes", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string()),
            restored: metrics::counter!("sluice_state_restored_records_total", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string()),
            restore_seconds: metrics::histogram!("sluice_state_restore_seconds", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string()),
            changelog_records: metrics::counter!("sluice_state_changelog_records_total", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string()),
        }
    }
}

/// Where a stateful pipeline's stores live and are restored from.
pub(crate) struct StoresConfig {
    pub(crate) pipeline: String,
    pub(crate) tenant: String,
    /// `<state_dir>/<pipeline>`, or `None` to keep stores in memory.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) changelog: String,
    pub(crate) kafka: Option<crate::config::KafkaConfig>,
    pub(crate) max_bytes: u64,
    pub(crate) quota: Option<Arc<Quota>>,
    pub(crate) lateness_ms: i64,
}

/// The stores of one stateful pipeline in this process, by input partition.
pub struct Stores {
    shared: Arc<Shared>,
    dir: Option<PathBuf>,
    /// The changelog topic.
    pub(crate) changelog: String,
    kafka: Option<crate::config::KafkaConfig>,
    open: Mutex<HashMap<TopicPartition, Arc<PartitionStore>>>,
    /// Partitions assigned and not revoked since; `None` = every partition (no consumer group).
    assigned: Mutex<Option<HashSet<TopicPartition>>>,
}

impl Stores {
    pub(crate) fn new(config: StoresConfig) -> Arc<Stores> {
        let meters = StateMeters::new(&config.pipeline, &config.tenant);
        Arc::new(Stores {
            shared: Arc::new(Shared {
                pipeline: config.pipeline,
                max_bytes: config.max_bytes,
                quota: config.quota,
                cache_bytes: crate::runtime::limits::STATE_CACHE_BYTES,
                lateness_ms: config.lateness_ms,
                meters,
            }),
            dir: config.dir,
            changelog: config.changelog,
            assigned: Mutex::new(config.kafka.as_ref().map(|_| HashSet::new())),
            kafka: config.kafka,
            open: Mutex::default(),
        })
    }

    /// Stores in memory with no changelog, for running a stateful plugin in-process (`sluice
    /// test`, benches): every partition is "assigned" and starts empty.
    pub fn ephemeral(pipeline: &str, lateness_ms: i64) -> Arc<Stores> {
        Stores::new(StoresConfig {
            pipeline: pipeline.to_string(),
            tenant: String::new(),
            dir: None,
            changelog: String::new(),
            kafka: None,
            max_bytes: crate::runtime::limits::Limits::default().max_state_bytes,
            quota: None,
            lateness_ms,
        })
    }

    /// The pipeline's allowed lateness.
    pub fn lateness_ms(&self) -> i64 {
        self.shared.lateness_ms
    }

    /// The group assigned `tp` to this process: its store is restored before its next batch.
    pub(crate) fn assigned(&self, tp: &TopicPartition) {
        self.close(tp);
        if let Some(set) = self.assigned.lock().expect("assigned lock").as_mut() {
            set.insert(tp.clone());
        }
    }

    /// `tp` was revoked: its store is closed (the changelog keeps its state).
    pub(crate) fn revoked(&self, tp: &TopicPartition) {
        if let Some(set) = self.assigned.lock().expect("assigned lock").as_mut() {
            set.remove(tp);
        }
        self.close(tp);
    }

    fn close(&self, tp: &TopicPartition) {
        if let Some(store) = self.open.lock().expect("stores lock").remove(tp) {
            store.close();
            tracing::info!(pipeline = %self.shared.pipeline, topic = %tp.0, partition = tp.1, "state store closed");
        }
    }

    /// The store of `tp`, restored from the changelog first if it is not open. `None` when the
    /// partition is not assigned to this process (a batch read before a revoke).
    pub(crate) fn partition(&self, tp: &TopicPartition) -> Result<Option<Arc<PartitionStore>>> {
        if let Some(store) = self.open.lock().expect("stores lock").get(tp) {
            return Ok(Some(store.clone()));
        }
        let assigned = match &*self.assigned.lock().expect("assigned lock") {
            Some(set) => set.contains(tp),
            None => true,
        };
        if !assigned {
            return Ok(None);
        }
        let path = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.redb", sanitize(&tp.0), tp.1)));
        let store = PartitionStore::open(tp.0.clone(), tp.1, path.as_deref(), self.shared.clone())?;
        if let Some(kafka) = &self.kafka {
            changelog::restore(kafka, &self.changelog, &store, &self.shared.meters)?;
        }
        self.open
            .lock()
            .expect("stores lock")
            .insert(tp.clone(), store.clone());
        Ok(Some(store))
    }

    /// What plugin `plugin` keeps under `key` in each store this process holds, by partition
    /// (for `GET /api/pipelines/NAME/state?key=`).
    pub fn value_of(&self, plugin: &str, key: &[u8]) -> Result<Vec<(TopicPartition, Vec<u8>)>> {
        let stores: Vec<_> = self
            .open
            .lock()
            .expect("stores lock")
            .iter()
            .map(|(tp, s)| (tp.clone(), s.clone()))
            .collect();
        let mut found = Vec::new();
        for (tp, store) in stores {
            if let Some(v) = store.value_of(plugin, key)? {
                found.push((tp, v));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Closes every store (the pipeline stopped).
    pub(crate) fn close_all(&self) {
        let all: Vec<_> = self.open.lock().expect("stores lock").drain().collect();
        for (_, store) in all {
            store.close();
        }
    }
}

/// A topic name as a file name.
fn sanitize(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
