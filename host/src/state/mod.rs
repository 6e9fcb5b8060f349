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
mod root;
mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;

pub use call::CallState;
pub(crate) use call::{EVENT_TIME, PROCESSING_TIME, take_due};
pub use root::StateRoot;
pub(crate) use store::Shared;
pub use store::{PartitionStore, Quota, StateLimitHit};

use crate::offsets::TopicPartition;

/// A key a plugin keeps, with its value, and the input partition whose store holds it.
pub type Entry = (TopicPartition, Vec<u8>, Vec<u8>);

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
        let l = |op: &'static str| metrics::counter!("sluice_state_operations_total", "pipeline" => pipeline.to_string(), "tenant" => tenant.to_string(), "op" => op);
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
    pub fn partition(&self, tp: &TopicPartition) -> Result<Option<Arc<PartitionStore>>> {
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

    /// Every key plugin `plugin` keeps, with its value, in each store this process holds, by
    /// partition then key (`sluice test --print-state`).
    pub fn entries_of(&self, plugin: &str) -> Result<Vec<Entry>> {
        let mut stores: Vec<_> = self
            .open
            .lock()
            .expect("stores lock")
            .iter()
            .map(|(tp, s)| (tp.clone(), s.clone()))
            .collect();
        stores.sort_by(|a, b| a.0.cmp(&b.0));
        let prefix = keys::state_key(plugin, b"");
        let header = keys::state_header_len(plugin);
        let mut found = Vec::new();
        for (tp, store) in stores {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = store.scan(
                    &prefix,
                    after.as_deref(),
                    crate::runtime::limits::MAX_STATE_SCAN,
                    &store::Changes::default(),
                )?;
                let Some((last, _)) = page.last() else {
                    break;
                };
                after = Some(last.clone());
                for (k, v) in page {
                    found.push((tp.clone(), k[header..].to_vec(), v));
                }
            }
        }
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

/// Restores partition `partition` of input `topic`'s store from `changelog` on the brokers at
/// `bootstrap` into a fresh in-memory store, as an assignment does; returns the changelog
/// records read and the store (for the restore benchmark).
pub fn restore_in_memory(
    bootstrap: &str,
    changelog: &str,
    topic: &str,
    partition: i32,
) -> Result<(u64, Arc<PartitionStore>)> {
    let stores = Stores::ephemeral("restore", 0);
    let store = PartitionStore::open(topic.into(), partition, None, stores.shared.clone())?;
    let kafka = crate::config::KafkaConfig {
        bootstrap_servers: bootstrap.to_string(),
        properties: Default::default(),
        consumer: Default::default(),
        producer: Default::default(),
    };
    let read = changelog::restore(&kafka, changelog, &store, &stores.shared.meters)?;
    Ok((read, store))
}

/// The changelog key of plugin `plugin`'s `key` in input `topic`'s store (to write a changelog
/// for the restore benchmark).
pub fn changelog_key(topic: &str, plugin: &str, key: &[u8]) -> Vec<u8> {
    keys::changelog_key(topic, &keys::state_key(plugin, key))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::Changes;

    fn store() -> Arc<PartitionStore> {
        let stores = Stores::ephemeral("p", 0);
        stores
            .partition(&("t".into(), 0))
            .unwrap()
            .expect("every partition is assigned")
    }

    #[test]
    fn a_call_that_fails_changes_nothing_and_one_that_returns_is_applied_once() {
        let store = store();
        let mut call = CallState::new(store.clone(), "plugin".into());
        call.put(b"a", Some(b"1".to_vec())).unwrap();
        assert_eq!(call.get(b"a").unwrap(), Some(b"1".to_vec()));
        call.finish(false);
        let mut call = CallState::new(store.clone(), "plugin".into());
        assert_eq!(
            call.get(b"a").unwrap(),
            None,
            "a trapped call's write is dropped"
        );
        call.put(b"a", Some(b"2".to_vec())).unwrap();
        call.put(b"b", Some(b"3".to_vec())).unwrap();
        call.finish(true);
        // Another plugin of the chain has its own keys.
        let mut other = CallState::new(store.clone(), "other".into());
        assert_eq!(other.get(b"a").unwrap(), None);
        other.finish(true);
        store.apply_pending().unwrap();
        assert_eq!(store.value_of("plugin", b"a").unwrap(), Some(b"2".to_vec()));
        let mut call = CallState::new(store.clone(), "plugin".into());
        call.put(b"a", None).unwrap();
        call.put(b"ab", Some(b"4".to_vec())).unwrap();
        let scanned = call.scan(b"a", None, 10).unwrap();
        assert_eq!(
            scanned,
            vec![(b"ab".to_vec(), b"4".to_vec())],
            "overlay over the store"
        );
        call.finish(true);
        store.discard_pending();
        assert_eq!(store.value_of("plugin", b"a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn a_scan_merges_the_file_unflushed_pending_and_call_layers_newest_winning() {
        let store = store();
        let key = |k: &str| keys::state_key("plugin", k.as_bytes());
        // The file: k01..k10, and neighbours outside the prefix.
        let mut file = Changes::new();
        for k in [
            "j", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "l",
        ] {
            file.insert(key(k), Some(b"file".to_vec()));
        }
        store.restore(&file).unwrap();
        // Applied but not yet written to the file.
        let mut call = CallState::new(store.clone(), "plugin".into());
        call.put(b"k02", Some(b"unflushed".to_vec())).unwrap();
        call.put(b"k03", None).unwrap();
        call.put(b"k11", Some(b"unflushed".to_vec())).unwrap();
        call.finish(true);
        store.apply_pending().unwrap();
        // The batch's pending changes.
        let mut call = CallState::new(store.clone(), "plugin".into());
        call.put(b"k02", None).unwrap();
        call.put(b"k04", Some(b"pending".to_vec())).unwrap();
        call.put(b"k12", Some(b"pending".to_vec())).unwrap();
        call.finish(true);
        // This call's own.
        let mut call = CallState::new(store.clone(), "plugin".into());
        call.put(b"k01", Some(b"call".to_vec())).unwrap();
        call.put(b"k05", None).unwrap();
        call.put(b"k11", None).unwrap();
        call.put(b"k13", Some(b"call".to_vec())).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = [
            ("k01", "call"),
            ("k04", "pending"),
            ("k06", "file"),
            ("k07", "file"),
            ("k08", "file"),
            ("k09", "file"),
            ("k10", "file"),
            ("k12", "pending"),
            ("k13", "call"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(call.scan(b"k", None, 100).unwrap(), expected);
        // Page by page, each page after the last key of the one before.
        for page_len in [1, 2, 3, 4] {
            let mut paged = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = call.scan(b"k", after.as_deref(), page_len).unwrap();
                assert!(page.len() <= page_len as usize);
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                paged.extend(page);
            }
            assert_eq!(paged, expected, "pages of {page_len}");
        }
        assert_eq!(
            call.scan(b"k1", Some(b"k10"), 100).unwrap(),
            expected[7..].to_vec(),
            "after a key, within a longer prefix"
        );
        call.finish(false);
    }

    #[test]
    fn a_write_over_the_limit_fails_and_deletes_make_room() {
        let stores = Stores::new(StoresConfig {
            pipeline: "p".into(),
            tenant: String::new(),
            dir: None,
            changelog: String::new(),
            kafka: None,
            max_bytes: 100,
            quota: None,
            lateness_ms: 0,
        });
        let store = stores.partition(&("t".into(), 0)).unwrap().unwrap();
        let mut call = CallState::new(store.clone(), "p".into());
        call.put(b"k", Some(vec![0; 80])).unwrap();
        let err = call.put(b"j", Some(vec![0; 80])).unwrap_err();
        assert!(err.downcast_ref::<StateLimitHit>().is_some(), "{err:#}");
        // Overwriting a value with a smaller one, or deleting, is always allowed.
        call.put(b"k", None).unwrap();
        call.put(b"j", Some(vec![0; 80])).unwrap();
        call.finish(true);
        store.apply_pending().unwrap();
        let mut call = CallState::new(store.clone(), "p".into());
        assert!(
            call.put(b"x", Some(vec![0; 80])).is_err(),
            "the limit counts committed state"
        );
        call.finish(false);
    }
}
