//! What a pipeline reports: live counters and the status the admin API and `/readyz` read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::mpsc;

use crate::config::Delivery;
use crate::offsets::{OffsetTracker, TopicPartition};
use crate::progress::Progress;
use crate::reload::LiveChain;
use crate::source::{self, ReplayFrom};

/// Live counters of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Input records processed.
    pub records_in: AtomicU64,
    /// Output records sent.
    pub records_out: AtomicU64,
    /// Input records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
}

/// What `/readyz` reports about one pipeline.
pub struct PipelineStatus {
    /// Pipeline name.
    pub name: String,
    /// Tenant name (empty without tenants).
    pub tenant: String,
    /// The live plugin chain (versions, reloads, uploads); `None` when the pipeline's plugins
    /// could not be loaded at start.
    pub live: Option<Arc<LiveChain>>,
    pub(crate) delivery: Delivery,
    /// Exactly-once into a sink that stores offsets: the positions are the ones stored there.
    pub(crate) offsets_in_sink: bool,
    pub(crate) tracker: Arc<OffsetTracker>,
    pub(crate) state: Mutex<String>,
    /// Paused through the admin API.
    pub(crate) paused: Arc<AtomicBool>,
    /// Commands to the source, while the pipeline runs.
    pub(crate) control: Mutex<Option<mpsc::UnboundedSender<source::Control>>>,
    /// What the workers are doing.
    pub(crate) progress: Arc<Progress>,
    /// Stalled partitions and why, as last found by the stall watch (empty: all moving).
    pub(crate) stalls: Mutex<Vec<String>>,
    /// A stateful pipeline's stores, while it runs.
    pub(crate) stores: Mutex<Option<Arc<crate::state::Stores>>>,
}

impl PipelineStatus {
    /// What stateful plugin `plugin` keeps under `key`, in every partition store this process
    /// holds (for `GET /api/pipelines/NAME/state?key=`); empty when the pipeline is not stateful
    /// or not running.
    pub fn state_value(
        &self,
        plugin: &str,
        key: &[u8],
    ) -> anyhow::Result<Vec<(crate::offsets::TopicPartition, Vec<u8>)>> {
        let stores = self.stores.lock().expect("stores lock").clone();
        match stores {
            Some(stores) => stores.value_of(plugin, key),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn set(&self, state: impl Into<String>) {
        *self.state.lock().expect("state lock") = state.into();
    }

    /// Records behind the ends of the assigned partitions, as last reported (every 5 s).
    pub fn lag(&self) -> i64 {
        self.tracker.lag()
    }

    /// Ready: running, with an assignment from its consumer group, and no stalled partition.
    pub fn is_ready(&self) -> bool {
        *self.state.lock().expect("state lock") == "running"
            && self.tracker.has_assignment()
            && self.stalls.lock().expect("stalls lock").is_empty()
    }

    /// Stalled partitions with their causes (empty while every partition moves).
    pub fn stalls(&self) -> Vec<String> {
        self.stalls.lock().expect("stalls lock").clone()
    }

    /// Sends a command to the running source and waits for its reply.
    pub(crate) async fn command<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> source::Control,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .control
            .lock()
            .expect("control lock")
            .as_ref()
            .is_some_and(|c| c.send(make(tx)).is_ok());
        if !sent {
            return Err(format!("pipeline `{}` is not running", self.name));
        }
        rx.await
            .map_err(|_| format!("pipeline `{}` stopped", self.name))?
            .map_err(|e| format!("{e:#}"))
    }

    /// Pauses (or resumes) fetching; batches in flight finish and commit, offsets are kept.
    pub async fn set_paused(&self, pause: bool) -> Result<(), String> {
        self.command(|reply| source::Control::Pause(pause, reply))
            .await
    }

    /// Seeks every partition assigned in this process; returns where each one restarts.
    pub async fn replay(&self, from: ReplayFrom) -> Result<Vec<(TopicPartition, i64)>, String> {
        if self.offsets_in_sink {
            return Err(format!(
                "pipeline `{}` is exactly-once: its positions are the offsets its sink stores with \
                 its rows (table sluice_offsets), which a replay would skip; change them there \
                 instead",
                self.name
            ));
        }
        self.command(|reply| source::Control::Replay(from, reply))
            .await
    }

    /// True while paused through the admin API.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The pipeline as the admin API shows it: state, assignment, lag, live plugin versions.
    pub fn describe(&self) -> serde_json::Value {
        let mut v = self.snapshot();
        let Some(live) = &self.live else {
            v["plugins"] = serde_json::Value::Array(Vec::new());
            return v;
        };
        let current = live.current();
        v["paused"] = self.is_paused().into();
        v["delivery"] = match self.delivery {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        }
        .into();
        v["version"] = (*current.label).into();
        v["on_probation"] = current.on_probation().into();
        v["plugins"] = current
            .plugins
            .iter()
            .map(|p| serde_json::json!({ "name": &*p.name, "version": &*p.version }))
            .collect();
        v
    }

    /// The pipeline's state as JSON.
    pub fn snapshot(&self) -> serde_json::Value {
        let assigned: Vec<String> = self
            .tracker
            .assigned()
            .iter()
            .map(|(t, p)| format!("{t}[{p}]"))
            .collect();
        serde_json::json!({
            "name": self.name,
            "tenant": self.tenant,
            "state": *self.state.lock().expect("state lock"),
            "has_assignment": self.tracker.has_assignment(),
            "assigned": assigned,
            "lag": self.tracker.lag(),
            "ready": self.is_ready(),
            "stalled": self.stalls(),
        })
    }
}

/// The stats of every pipeline of a host, by pipeline name.
pub type HostStats = Vec<(String, Arc<PipelineStats>)>;
