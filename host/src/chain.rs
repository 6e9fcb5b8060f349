//! The plugin chain: a batch goes through plugin 1, its outputs through plugin 2, and so on.
//!
//! Every record keeps its *origin* (the index of the input record of the batch it came from), so a
//! failure anywhere in the chain rejects that one input as a whole: it goes to the dead-letter
//! topic unchanged and none of its outputs are emitted. A trap fails a whole call; the chain then
//! bisects the call's records on fresh instances until it has isolated the record(s) responsible,
//! keeping the outputs of every call that succeeded.
//!
//! A record is blamed only for a failure it reproduces on a *fresh* instance (one that has run
//! nothing else): a single-record call that fails on an instance that ran other records before is
//! run once more on a fresh one. A failed call of which no record fails on a fresh instance is a
//! *state failure*: the plugin's own in-memory state went bad (a counter, a leak, corrupted
//! memory), not a record. Its records keep the outputs the fresh instances made (none is
//! dead-lettered for something it did not cause), but the failure is not masked: it is logged as a
//! warning naming the plugin and version, reported in [`ChainOutput::state_failures`] (counted in
//! `sluice_plugin_state_failures_total` by the pipeline), and while the version is on probation its
//! inputs count as failures of the new version, so a version that keeps doing it is rolled back.
//! Every state failure costs a bisection on fresh instances, so a plugin that keeps failing this
//! way slows only its own pipeline.
//!
//! Routing is sticky: an output name set by an earlier plugin stays with the records made from it
//! unless a later plugin names another.

use std::ops::Range;
use std::sync::Arc;

use sluice_abi::{InputBatch, NONE, OutputBatch, OutputRecord};

use crate::runtime::limits::over_output_limits;
use crate::runtime::{
    CallFailure, FiredTimers, LoadError, Plugin, PluginInstance, Reason, TIMER_BYTES,
};
use crate::state::PartitionStore;

/// The rejection of one input record of a batch.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Index of the input record in the batch.
    pub input: u32,
    /// The class of failure.
    pub reason: Reason,
    /// Details for people.
    pub message: String,
    /// The plugin that failed it (`None` for failures after the chain).
    pub plugin: Option<Arc<Plugin>>,
}

/// A plugin call that failed on the plugin's live instance although none of its records fails
/// on a fresh instance: the instance's own state went bad.
#[derive(Clone, Debug)]
pub struct StateFailure {
    /// The plugin whose call failed.
    pub plugin: Arc<Plugin>,
    /// The batch inputs whose records were in the failed call.
    pub inputs: Vec<u32>,
    /// How the call failed.
    pub failure: CallFailure,
}

/// The plugins of a pipeline, with one lazily (re)built instance each, owned by one worker.
pub struct Chain {
    plugins: Vec<Arc<Plugin>>,
    instances: Vec<Option<PluginInstance>>,
    /// The state store of the partition being processed, for stateful plugins.
    partition: Option<Arc<PartitionStore>>,
}

/// Outputs of one successful plugin call, covering inputs from `first_input` on.
struct Piece {
    first_input: u32,
    out: OutputBatch,
}

/// What one plugin did with its input batch.
struct Stage {
    pieces: Vec<Piece>,
    failures: Vec<(u32, CallFailure)>,
    /// Records isolated as failing on a fresh instance.
    isolated: usize,
    /// Failed calls (their ranges) that no record reproduces on a fresh instance.
    state_failures: Vec<(Range<usize>, CallFailure)>,
}

/// The result of running a batch through the chain.
pub struct ChainOutput {
    pieces: Vec<Piece>,
    /// Last plugin's input index → batch input index (`None`: the identity, one plugin).
    origin: Option<Vec<u32>>,
    /// Last plugin's input index → sticky output name index (`NONE` = no name).
    routes: Option<Vec<u32>>,
    route_names: Vec<String>,
    failed: Vec<bool>,
    /// Rejected inputs, in input order, one per input.
    pub failures: Vec<Failure>,
    /// Calls that failed through the plugin's own state, not a record (their records were
    /// processed by fresh instances).
    pub state_failures: Vec<StateFailure>,
}

/// One output record of the chain, ready to route.
#[derive(Clone, Copy, Debug)]
pub struct Emitted<'a> {
    /// Index of the input record of the batch it was made from.
    pub input: u32,
    /// The record; its timestamp is `None` when the input's should be kept.
    pub record: OutputRecord<'a>,
    /// The output it names, or `None` for the default output.
    pub output: Option<&'a str>,
}

impl ChainOutput {
    /// Re-indexes an output computed on the `kept` inputs of a batch of `total` inputs, the
    /// others failed by `rejected`.
    fn remap(mut self, kept: &[u32], total: usize, rejected: Vec<Failure>) -> ChainOutput {
        self.origin = Some(match self.origin.take() {
            None => kept.to_vec(),
            Some(o) => o.iter().map(|i| kept[*i as usize]).collect(),
        });
        let mut failed = vec![false; total];
        for (i, f) in self.failed.iter().enumerate() {
            failed[kept[i] as usize] = *f;
        }
        for f in &rejected {
            failed[f.input as usize] = true;
        }
        self.failed = failed;
        for f in &mut self.failures {
            f.input = kept[f.input as usize];
        }
        self.failures.extend(rejected);
        self.failures.sort_by_key(|f| f.input);
        for s in &mut self.state_failures {
            for i in &mut s.inputs {
                *i = kept[*i as usize];
            }
        }
        self
    }

    /// True when input `input` was rejected.
    pub fn is_failed(&self, input: u32) -> bool {
        self.failed[input as usize]
    }

    /// Rejects input `input` after the chain (for example for an undeclared output). Returns
    /// false if it had already failed.
    pub fn fail(&mut self, failure: Failure) -> bool {
        let i = failure.input as usize;
        if self.failed[i] {
            return false;
        }
        self.failed[i] = true;
        let at = self.failures.partition_point(|f| f.input < failure.input);
        self.failures.insert(at, failure);
        true
    }

    /// Every output record of the inputs that did not fail, in input order.
    pub fn emitted(&self) -> impl Iterator<Item = Emitted<'_>> {
        self.pieces.iter().flat_map(move |piece| {
            piece.out.iter().filter_map(move |record| {
                let local = (piece.first_input + record.input) as usize;
                let input = self.origin.as_ref().map_or(local as u32, |o| o[local]);
                if self.failed[input as usize] {
                    return None;
                }
                let output = match record.output {
                    Some(i) => Some(piece.out.outputs[i as usize].as_str()),
                    None => self
                        .routes
                        .as_ref()
                        .map(|r| r[local])
                        .filter(|r| *r != NONE)
                        .map(|r| self.route_names[r as usize].as_str()),
                };
                Some(Emitted {
                    input,
                    record,
                    output,
                })
            })
        })
    }
}

impl Chain {
    /// A chain over validated plugins; instances are created on first use.
    pub fn new(plugins: Vec<Arc<Plugin>>) -> Self {
        let instances = plugins.iter().map(|_| None).collect();
        Chain {
            plugins,
            instances,
            partition: None,
        }
    }

    /// Sets the state store the stateful plugins' calls act on (the batch's partition's).
    pub fn set_partition(&mut self, partition: Option<Arc<PartitionStore>>) {
        self.partition = partition;
    }

    /// As [`Chain::process`], with the inputs of `rejected` failed before the chain (late
    /// records): the plugins never see them.
    pub fn process_without(
        &mut self,
        batch: &mut InputBatch,
        rejected: Vec<Failure>,
    ) -> Result<ChainOutput, LoadError> {
        if rejected.is_empty() {
            return self.process(batch);
        }
        let total = batch.len();
        let mut skip = vec![false; total];
        for f in &rejected {
            skip[f.input as usize] = true;
        }
        let kept: Vec<u32> = (0..total as u32).filter(|i| !skip[*i as usize]).collect();
        let mut filtered = copy_records(batch, kept.iter().map(|&i| i as usize));
        let out = self.process(&mut filtered)?;
        Ok(out.remap(&kept, total, rejected))
    }

    /// Hands `fired` timers to stateful plugin `k`'s `on-timer`, and its outputs through the
    /// plugins after it. `pseudo` holds one record per timer (its key, no value, headers naming
    /// it): what a rejected timer is dead-lettered as.
    pub fn process_timers(
        &mut self,
        k: usize,
        fired: &FiredTimers,
        pseudo: &mut InputBatch,
    ) -> Result<ChainOutput, LoadError> {
        self.run(pseudo, k, Some(fired))
    }

    /// The plugins, in chain order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Replaces the plugins (a hot swap); instances are rebuilt on the next batch.
    pub fn replace(&mut self, plugins: Vec<Arc<Plugin>>) {
        *self = Chain::new(plugins);
    }

    /// Runs `batch` through every plugin. `Err` only when an instance cannot be created at all,
    /// which stops the pipeline: the batch is then not acknowledged.
    pub fn process(&mut self, batch: &mut InputBatch) -> Result<ChainOutput, LoadError> {
        self.run(batch, 0, None)
    }

    fn run(
        &mut self,
        batch: &mut InputBatch,
        first: usize,
        timers: Option<&FiredTimers>,
    ) -> Result<ChainOutput, LoadError> {
        let inputs = batch.len();
        let mut failed = vec![false; inputs];
        let mut failures = Vec::new();
        let mut origin: Option<Vec<u32>> = None;
        let mut routes: Option<Vec<u32>> = None;
        let mut route_names = Vec::new();
        let mut state_failures = Vec::new();
        let mut next_batch: Option<InputBatch> = None;
        let last = self.plugins.len() - 1;
        for k in first..=last {
            let stage_input = match next_batch.as_mut() {
                Some(next) => next,
                None => &mut *batch,
            };
            let stage = match timers {
                Some(fired) if k == first => self.run_timer_stage(k, fired)?,
                _ => self.run_stage(k, stage_input)?,
            };
            for (range, failure) in stage.state_failures {
                let plugin = &self.plugins[k];
                let records = range.len();
                let mut inputs: Vec<u32> = range
                    .map(|local| origin.as_ref().map_or(local as u32, |o| o[local]))
                    .collect();
                inputs.sort_unstable();
                inputs.dedup();
                tracing::warn!(
                    plugin = %plugin.name, version = %plugin.version, records,
                    "a call of plugin `{}` failed on its live instance ({failure}), but none of \
                     its records fails on a fresh instance: the plugin's own state went bad, not \
                     a record. The records were processed by fresh instances; on probation this \
                     counts as a failure of the version",
                    plugin.name
                );
                state_failures.push(StateFailure {
                    plugin: plugin.clone(),
                    inputs,
                    failure,
                });
            }
            for (local, failure) in stage.failures {
                let input = origin.as_ref().map_or(local, |o| o[local as usize]);
                if !failed[input as usize] {
                    failed[input as usize] = true;
                    failures.push(Failure {
                        input,
                        reason: failure.reason,
                        message: failure.message,
                        plugin: Some(self.plugins[k].clone()),
                    });
                }
            }
            if k == last {
                failures.sort_by_key(|f| f.input);
                return Ok(ChainOutput {
                    pieces: stage.pieces,
                    origin,
                    routes,
                    route_names,
                    failed,
                    failures,
                    state_failures,
                });
            }
            let (next, next_origin, next_routes) = feed_forward(
                &stage.pieces,
                origin.as_deref(),
                routes.as_deref(),
                &mut route_names,
                &failed,
                batch,
            );
            next_batch = Some(next);
            origin = Some(next_origin);
            routes = Some(next_routes);
        }
        unreachable!("the loop returns at the last plugin")
    }

    fn run_stage(&mut self, k: usize, batch: &mut InputBatch) -> Result<Stage, LoadError> {
        let mut stage = Stage {
            pieces: Vec::new(),
            failures: Vec::new(),
            isolated: 0,
            state_failures: Vec::new(),
        };
        if !batch.is_empty() {
            self.call_range(k, batch, 0..batch.len(), &mut stage)?;
        }
        Ok(stage)
    }

    /// Calls plugin `k`'s `on-timer` with every fired timer; on a trap, with each timer alone on
    /// fresh instances, so that only the timers that fail are rejected.
    fn run_timer_stage(&mut self, k: usize, fired: &FiredTimers) -> Result<Stage, LoadError> {
        let mut stage = Stage {
            pieces: Vec::new(),
            failures: Vec::new(),
            isolated: 0,
            state_failures: Vec::new(),
        };
        let n = fired.timers.len() / TIMER_BYTES;
        if n == 0 {
            return Ok(stage);
        }
        let mut calls: Vec<(u32, FiredTimers)> = vec![(0, fired.clone())];
        let mut alone = false;
        while let Some((first, timers)) = calls.pop() {
            let instance = match &mut self.instances[k] {
                Some(instance) => instance,
                slot => slot.insert(self.plugins[k].instantiate()?),
            };
            match instance.on_timer(&timers, self.partition.as_ref()) {
                Ok(out) => {
                    for (input, message) in over_output_limits(&out, self.plugins[k].limits()) {
                        stage.failures.push((
                            first + input,
                            CallFailure {
                                reason: Reason::Output,
                                message,
                            },
                        ));
                    }
                    for e in &out.errors {
                        stage.failures.push((
                            first + e.input,
                            CallFailure {
                                reason: Reason::PluginError,
                                message: e.message.clone(),
                            },
                        ));
                    }
                    stage.pieces.push(Piece {
                        first_input: first,
                        out,
                    });
                }
                Err(failure) => {
                    self.instances[k] = None;
                    if alone {
                        stage.failures.push((first, failure));
                        continue;
                    }
                    alone = true;
                    for i in (0..n).rev() {
                        let w: [u32; 5] = sluice_abi::words(&fired.timers[i * TIMER_BYTES..]);
                        let key = &fired.data[w[0] as usize..(w[0] + w[1]) as usize];
                        calls.push((
                            i as u32,
                            FiredTimers {
                                data: key.to_vec(),
                                timers: sluice_abi::from_words(&[0, w[1], w[2], w[3], w[4]]),
                            },
                        ));
                    }
                }
            }
        }
        stage.pieces.sort_by_key(|p| p.first_input);
        stage.failures.sort_by_key(|f| f.0);
        Ok(stage)
    }

    /// Calls plugin `k` on `range` of `batch`; on a trap, bisects on fresh instances.
    fn call_range(
        &mut self,
        k: usize,
        batch: &mut InputBatch,
        range: Range<usize>,
        stage: &mut Stage,
    ) -> Result<(), LoadError> {
        let fresh = self.instances[k].is_none();
        let instance = match &mut self.instances[k] {
            Some(instance) => instance,
            slot => slot.insert(self.plugins[k].instantiate()?),
        };
        let state = self.partition.as_ref();
        let result = if range.len() == batch.len() {
            instance.process_with_state(batch, state)
        } else {
            instance.process_with_state(&mut slice(batch, range.clone()), state)
        };
        match result {
            Ok(out) => {
                if range.len() < batch.len() {
                    // A slice of a bisection: a record the plugin rejects here explains the trap
                    // (a batch-at-a-time plugin traps when it cannot tell which record failed).
                    stage.isolated += out.errors.len();
                }
                for (input, message) in over_output_limits(&out, self.plugins[k].limits()) {
                    stage.failures.push((
                        range.start as u32 + input,
                        CallFailure {
                            reason: Reason::Output,
                            message,
                        },
                    ));
                }
                for e in &out.errors {
                    stage.failures.push((
                        range.start as u32 + e.input,
                        CallFailure {
                            reason: Reason::PluginError,
                            message: e.message.clone(),
                        },
                    ));
                }
                stage.pieces.push(Piece {
                    first_input: range.start as u32,
                    out,
                });
            }
            Err(failure) => {
                // A trapped instance may be poisoned: never reuse it.
                self.instances[k] = None;
                // A record that runs past the deadline is blamed at once, even on an instance
                // that ran others first: re-running it on a fresh one would cost one more whole
                // deadline, and state gone bad makes calls trap, not sleep.
                if range.len() == 1 && (fresh || failure.reason == Reason::Deadline) {
                    tracing::debug!(plugin = %self.plugins[k].name, record = range.start, "isolated a failing record: {failure}");
                    stage.isolated += 1;
                    stage.failures.push((range.start as u32, failure));
                    return Ok(());
                }
                let explained = (stage.isolated, stage.state_failures.len());
                if range.len() == 1 {
                    // The instance had run other records: blame the record only if a fresh
                    // instance fails on it too.
                    self.call_range(k, batch, range.clone(), stage)?;
                } else if failure.reason == Reason::Deadline {
                    // Halving would re-run a slow record once per level, each time until the
                    // deadline: run each record alone instead, so that a record that cannot
                    // finish in time costs one more deadline, not log2(batch) of them.
                    for i in range.clone() {
                        self.call_range(k, batch, i..i + 1, stage)?;
                    }
                } else {
                    let mid = range.start + range.len() / 2;
                    self.call_range(k, batch, range.start..mid, stage)?;
                    self.call_range(k, batch, mid..range.end, stage)?;
                }
                if (stage.isolated, stage.state_failures.len()) == explained {
                    stage.state_failures.push((range, failure));
                }
            }
        }
        Ok(())
    }
}

/// Copies `range` of `batch` into a batch of its own (only after a trap).
fn slice(batch: &InputBatch, range: Range<usize>) -> InputBatch {
    copy_records(batch, range)
}

/// Copies the records of `batch` at `indices` into a batch of their own.
fn copy_records(batch: &InputBatch, indices: impl Iterator<Item = usize>) -> InputBatch {
    let mut out = InputBatch::default();
    for i in indices {
        let r = batch.record(i);
        let topic = out.topic_index(r.topic);
        out.push(
            r.key,
            r.value,
            r.headers.iter(),
            r.timestamp,
            topic,
            r.partition,
            r.offset,
        );
    }
    out
}

/// Builds the next plugin's input from this plugin's outputs, skipping failed inputs. Each record
/// keeps the source coordinates of its origin, and its timestamp unless the plugin set one.
fn feed_forward(
    pieces: &[Piece],
    origin: Option<&[u32]>,
    routes: Option<&[u32]>,
    route_names: &mut Vec<String>,
    failed: &[bool],
    source: &InputBatch,
) -> (InputBatch, Vec<u32>, Vec<u32>) {
    let mut next = InputBatch::default();
    let mut next_origin = Vec::new();
    let mut next_routes = Vec::new();
    for piece in pieces {
        for record in piece.out.iter() {
            let local = (piece.first_input + record.input) as usize;
            let input = origin.map_or(local as u32, |o| o[local]);
            if failed[input as usize] {
                continue;
            }
            let src = source.record(input as usize);
            let topic = next.topic_index(src.topic);
            next.push(
                record.key,
                record.value,
                record.headers.iter(),
                record.timestamp.or(src.timestamp),
                topic,
                src.partition,
                src.offset,
            );
            next_origin.push(input);
            let route = match record.output {
                Some(i) => {
                    let name = &piece.out.outputs[i as usize];
                    match route_names.iter().position(|n| n == name) {
                        Some(p) => p as u32,
                        None => {
                            route_names.push(name.clone());
                            (route_names.len() - 1) as u32
                        }
                    }
                }
                None => routes.map_or(NONE, |r| r[local]),
            };
            next_routes.push(route);
        }
    }
    (next, next_origin, next_routes)
}
