//! Hot reload: a pipeline's plugin chain is replaced while records flow, with no record lost,
//! processed twice, or dead-lettered because of a bad deploy.
//!
//! - [`LiveChain`] holds the chain version a pipeline's workers run. A new plugin file is
//!   compiled, linked and initialised by [`LiveChain::offer`] on a blocking thread, off the record
//!   path; only a valid version is published. Workers pick it up at their next batch boundary, so
//!   on each partition every record after the switch is processed by the new version and none
//!   before it. Offsets are untouched.
//! - A new version is on *probation* for its first `probation_records` input records, counted
//!   over all workers (records, not batches: a window of 1000 is 1000 inputs whatever the batch
//!   size). During probation the *last version that passed probation* (the version loaded at start
//!   counts as passed) runs on every batch too, as a shadow, and the two are compared per input
//!   (see [`Comparison`]): a *failure* is an input the new version rejects, or fails through its
//!   own state (see [`crate::chain`]), that the previous version handles; a *divergence* is an
//!   input that had outputs under the previous version and has none (dropped), fewer (missing) or
//!   goes to other outputs (rerouted). Values are not compared: a new version is expected to
//!   change them. A batch with any failure or divergence is served wholly by the previous version,
//!   so a bad deploy loses, dead-letters and misroutes nothing. Once failures exceed
//!   `max_failure_ratio` or divergences exceed `max_divergence_ratio` of the window, the host rolls
//!   back by itself.
//! - A rollback always returns to the last version that passed probation, never to a version that
//!   was itself on probation: a version published while its predecessor is still on probation
//!   supersedes it and is compared with (and rolled back to) the version before. The last
//!   [`PASSED_KEPT`] passed versions are kept, so the operator can also roll back a version that
//!   passed ([`LiveChain::roll_back_to_passed`], `POST /api/pipelines/NAME/rollback`): a version
//!   that behaves for its first records and fails after its window is outside probation by
//!   definition, and this is the way back. Rolled-back content (every plugin file of the
//!   rolled-back version that differs from the restored one) is not loaded again until the file
//!   changes.
//! - [`watch`](fn@watch) follows the plugin files (notify), waits until a file has stopped changing
//!   and offers it; a recheck request (SIGHUP) offers every file at once. Each file is validated in
//!   a task of its own, each of its pipelines on a thread of its own, with at most one validation
//!   per file in flight (a newer change waits for it and is offered next): one tenant's slow
//!   compile or `init` (bounded by its own limits) delays no other tenant's reload.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::chain::{ChainOutput, StateFailure};
use crate::config::ReloadPolicy;
use crate::router::Router;
use crate::runtime::{LoadError, Plugin, PluginSpec, Runtime, content_version};

mod watch;

pub use watch::watch;

/// How many versions that passed probation a pipeline keeps (the live one included): the ones an
/// operator's rollbacks can return to, one after the other.
pub const PASSED_KEPT: usize = 3;

/// One version of a pipeline's chain.
pub struct ChainVersion {
    /// Increases with every swap and rollback.
    pub generation: u64,
    /// The plugins, in chain order.
    pub plugins: Vec<Arc<Plugin>>,
    /// `name@version` of every plugin, comma-separated: the `sluice.version` output header.
    pub label: Arc<str>,
    /// While this version is on probation: the last version that passed probation, which runs
    /// alongside it and which a rollback returns to.
    pub previous: Option<Arc<ChainVersion>>,
    probation: Option<Probation>,
}

struct Probation {
    window: u64,
    failure_budget: u64,
    divergence_budget: u64,
    records: AtomicU64,
    failures: AtomicU64,
    divergences: AtomicU64,
    /// Set under the versions lock, together with the passed history.
    passed: AtomicBool,
}

impl ChainVersion {
    fn new(generation: u64, plugins: Vec<Arc<Plugin>>) -> Self {
        let label = plugins
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(",");
        ChainVersion {
            generation,
            plugins,
            label: label.into(),
            previous: None,
            probation: None,
        }
    }

    /// The same plugins as a new generation, without probation or history.
    fn again(&self, generation: u64) -> Self {
        ChainVersion {
            generation,
            plugins: self.plugins.clone(),
            label: self.label.clone(),
            previous: None,
            probation: None,
        }
    }

    /// True while the version's first records are checked against the previous version.
    pub fn on_probation(&self) -> bool {
        self.probation
            .as_ref()
            .is_some_and(|p| !p.passed.load(Ordering::Acquire))
    }

    /// The plugins of this version whose content differs from `other`'s.
    fn differing<'a>(&'a self, other: &ChainVersion) -> Vec<&'a Arc<Plugin>> {
        self.plugins
            .iter()
            .zip(&other.plugins)
            .filter(|(a, b)| a.version != b.version)
            .map(|(a, _)| a)
            .collect()
    }
}

/// What [`LiveChain::offer`] did with a file.
#[derive(Debug)]
pub enum Offer {
    /// Same content as the running version.
    Unchanged,
    /// This content was rolled back before; it is not loaded again until it changes.
    Rejected,
    /// Not a valid plugin: the running version stays.
    Invalid(LoadError),
    /// Published; workers switch at their next batch.
    Swapped {
        /// The new version's label.
        label: Arc<str>,
    },
}

/// The outcome of a probation report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still on probation (or not on probation at all).
    Continue,
    /// The probation window passed: the previous version is no longer needed.
    Passed,
    /// Too many regressions: the previous version is live again.
    RolledBack,
}

/// How a version on probation did on one batch, compared per input with the previous version
/// run on the same batch. Inputs the previous version rejects count in none of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Inputs the new version rejects, or fails through its own state, that the previous handles.
    pub failures: u64,
    /// Inputs with outputs under the previous version and none under the new one.
    pub dropped: u64,
    /// Inputs with fewer outputs than under the previous version (but some).
    pub missing: u64,
    /// Inputs whose outputs go to other declared outputs than under the previous version.
    pub rerouted: u64,
}

impl Comparison {
    /// Compares `new` with `old`, both results of the same batch of `inputs` records, routed by
    /// `router` (after [`Router::fail_unroutable`]).
    pub fn of(router: &Router, new: &ChainOutput, old: &ChainOutput, inputs: usize) -> Self {
        // Per input: the number of outputs and the set of outputs they go to.
        let tally = |out: &ChainOutput| {
            let mut counts = vec![0u32; inputs];
            let mut routes: Vec<(u32, usize)> = router
                .routes(out)
                .map(|(e, output)| {
                    counts[e.input as usize] += 1;
                    (e.input, output)
                })
                .collect();
            routes.sort_unstable();
            routes.dedup();
            (counts, routes)
        };
        let (new_counts, new_routes) = tally(new);
        let (old_counts, old_routes) = tally(old);
        let mut state_failed = vec![false; inputs];
        for f in &new.state_failures {
            for &i in &f.inputs {
                state_failed[i as usize] = true;
            }
        }
        let outputs_of = |routes: &[(u32, usize)], i: u32| -> Vec<usize> {
            let from = routes.partition_point(|(input, _)| *input < i);
            routes[from..]
                .iter()
                .take_while(|(input, _)| *input == i)
                .map(|(_, o)| *o)
                .collect()
        };
        let mut c = Comparison::default();
        for i in 0..inputs as u32 {
            if old.is_failed(i) {
                continue;
            }
            if new.is_failed(i) || state_failed[i as usize] {
                c.failures += 1;
                continue;
            }
            let (n, o) = (new_counts[i as usize], old_counts[i as usize]);
            if o == 0 {
                continue;
            }
            if n == 0 {
                c.dropped += 1;
            } else if n < o {
                c.missing += 1;
            } else if outputs_of(&new_routes, i) != outputs_of(&old_routes, i) {
                c.rerouted += 1;
            }
        }
        c
    }

    /// Inputs that diverge: dropped, missing or rerouted.
    pub fn divergences(&self) -> u64 {
        self.dropped + self.missing + self.rerouted
    }

    /// Inputs that fail or diverge: a batch with any is served by the previous version.
    pub fn regressions(&self) -> u64 {
        self.failures + self.divergences()
    }
}

/// Counters of reload activity.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Versions published.
    pub swaps: AtomicU64,
    /// Files rejected as invalid.
    pub failures: AtomicU64,
    /// Versions rolled back (after failing probation, or by the operator).
    pub rollbacks: AtomicU64,
    /// Plugin calls that failed on a live instance while no record of them fails on a fresh one
    /// (the plugin's own state went bad; see [`crate::chain`]).
    pub state_failures: AtomicU64,
}

/// The versions of a live chain, changed together under one lock.
struct Versions {
    /// The version workers run.
    current: Arc<ChainVersion>,
    /// Versions that passed probation (the first one loaded counts), oldest first, at most
    /// [`PASSED_KEPT`]. The last is the one a rollback returns to; when `current` is not on
    /// probation it is `current`'s content.
    passed: Vec<Arc<ChainVersion>>,
}

impl Versions {
    fn last_passed(&self) -> Arc<ChainVersion> {
        self.passed
            .last()
            .expect("one version always passed")
            .clone()
    }

    fn record_passed(&mut self, version: &ChainVersion) {
        self.passed
            .push(Arc::new(version.again(version.generation)));
        if self.passed.len() > PASSED_KEPT {
            self.passed.remove(0);
        }
    }
}

/// The live chain of one pipeline.
pub struct LiveChain {
    pipeline: String,
    specs: Vec<PluginSpec>,
    policy: ReloadPolicy,
    versions: Mutex<Versions>,
    /// Whether the pipeline started with a stateful plugin: its state stores and changelog are
    /// set up at start, so only then may a new version be stateful.
    has_state: bool,
    generation: AtomicU64,
    rejected: Mutex<HashSet<Arc<str>>>,
    /// One offer at a time per plugin of the chain.
    offer_locks: Vec<Mutex<()>>,
    /// Reload counters.
    pub stats: ReloadStats,
}

impl LiveChain {
    /// A live chain starting with `plugins`, loaded from `specs`.
    pub fn new(
        pipeline: &str,
        specs: Vec<PluginSpec>,
        plugins: Vec<Arc<Plugin>>,
        policy: ReloadPolicy,
    ) -> Arc<Self> {
        for p in &plugins {
            version_info(pipeline, p, true);
        }
        let has_state = plugins.iter().any(|p| p.is_stateful());
        let first = Arc::new(ChainVersion::new(1, plugins));
        Arc::new(LiveChain {
            has_state,
            pipeline: pipeline.to_string(),
            offer_locks: specs.iter().map(|_| Mutex::new(())).collect(),
            specs,
            policy,
            versions: Mutex::new(Versions {
                current: first.clone(),
                passed: vec![first],
            }),
            generation: AtomicU64::new(1),
            rejected: Mutex::new(HashSet::new()),
            stats: ReloadStats::default(),
        })
    }

    /// The generation of the live version; cheap enough to check every batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The live version.
    pub fn current(&self) -> Arc<ChainVersion> {
        self.versions.lock().expect("versions lock").current.clone()
    }

    /// The plugin specs, in chain order.
    pub fn specs(&self) -> &[PluginSpec] {
        &self.specs
    }

    /// Offers new content for plugin `index`: validated (compiled, instantiated, `init` run) on
    /// the calling thread, which must not be a record-path thread, then published. Offers for
    /// different plugins (and different pipelines) run concurrently.
    pub fn offer(&self, runtime: &Arc<Runtime>, index: usize, bytes: &[u8]) -> Offer {
        let _serial = self.offer_locks[index].lock().expect("offer lock");
        let spec = &self.specs[index];
        let version = content_version(bytes);
        let current = self.current();
        if *current.plugins[index].version == *version {
            return Offer::Unchanged;
        }
        if self
            .rejected
            .lock()
            .expect("rejected lock")
            .contains(version.as_str())
        {
            return Offer::Rejected;
        }
        let started = Instant::now();
        let loaded = runtime.load_bytes(spec, bytes).and_then(|p| {
            if p.is_stateful() && !self.has_state {
                return Err(LoadError::StateNeedsRestart {
                    name: spec.name.clone(),
                    path: spec.path.clone(),
                    pipeline: self.pipeline.clone(),
                });
            }
            Ok(p)
        });
        let plugin = match loaded {
            Ok(p) => p,
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                reload_outcome(&self.pipeline, &spec.name, "rejected");
                tracing::warn!(pipeline = %self.pipeline, plugin = %spec.name, path = %spec.path.display(), "new plugin version rejected, the running version stays: {e}");
                return Offer::Invalid(e);
            }
        };
        // Build on the version live *now*: a rollback may have landed during the compile.
        let mut versions = self.versions.lock().expect("versions lock");
        let current = versions.current.clone();
        if *current.plugins[index].version == *version {
            return Offer::Unchanged;
        }
        let mut plugins = current.plugins.clone();
        let old = std::mem::replace(&mut plugins[index], plugin);
        let mut next = ChainVersion::new(current.generation + 1, plugins);
        let passed = versions.last_passed();
        if current.on_probation() {
            tracing::info!(pipeline = %self.pipeline, superseded = %current.label, "a version on probation is superseded before passing; the new one is compared with (and rolls back to) the last version that passed, {}", passed.label);
        }
        let proven = next.differing(&passed).is_empty();
        if !proven && self.policy.probation_records > 0 {
            let window = self.policy.probation_records;
            let budget = |ratio: f64| (window as f64 * ratio).floor() as u64;
            next.previous = Some(passed);
            next.probation = Some(Probation {
                window,
                failure_budget: budget(self.policy.max_failure_ratio),
                divergence_budget: budget(self.policy.max_divergence_ratio),
                records: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                divergences: AtomicU64::new(0),
                passed: AtomicBool::new(false),
            });
        } else if !proven {
            // No probation: a published version counts as passed.
            versions.record_passed(&next);
        }
        let label = next.label.clone();
        version_info(&self.pipeline, &old, false);
        version_info(&self.pipeline, &next.plugins[index], true);
        let next = Arc::new(next);
        versions.current = next.clone();
        self.generation.store(next.generation, Ordering::Release);
        drop(versions);
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        reload_outcome(&self.pipeline, &spec.name, "swapped");
        tracing::info!(pipeline = %self.pipeline, plugin = %spec.name, from = %old.version, to = %version, prepare_ms = started.elapsed().as_millis() as u64, "hot-swapped plugin; workers switch at their next batch");
        Offer::Swapped { label }
    }

    /// Reports a probation batch of `records` inputs run by `version` and compared with its
    /// previous version.
    pub fn report(&self, version: &ChainVersion, records: u64, batch: &Comparison) -> Verdict {
        let Some(p) = &version.probation else {
            return Verdict::Continue;
        };
        if p.passed.load(Ordering::Acquire) {
            return Verdict::Passed;
        }
        let seen = p.records.fetch_add(records, Ordering::AcqRel) + records;
        let failed = p.failures.fetch_add(batch.failures, Ordering::AcqRel) + batch.failures;
        let diverged = p
            .divergences
            .fetch_add(batch.divergences(), Ordering::AcqRel)
            + batch.divergences();
        if failed > p.failure_budget || diverged > p.divergence_budget {
            let why = format!(
                "of the first {seen} records of its {}-record probation, the new version failed \
                 {failed} that the previous version handles (at most {} tolerated: \
                 reload.max_failure_ratio) and diverged from it on {diverged} (at most {} \
                 tolerated: reload.max_divergence_ratio; in the last batch {} dropped, {} with \
                 fewer outputs, {} sent to other outputs)",
                p.window,
                p.failure_budget,
                p.divergence_budget,
                batch.dropped,
                batch.missing,
                batch.rerouted,
            );
            return self.roll_back(version, &why);
        }
        if seen >= p.window {
            let mut versions = self.versions.lock().expect("versions lock");
            if !p.passed.swap(true, Ordering::AcqRel) {
                if versions.current.generation == version.generation {
                    versions.record_passed(version);
                }
                tracing::info!(pipeline = %self.pipeline, version = %version.label, records = seen, failures = failed, divergences = diverged, "new plugin version passed probation");
            }
            return Verdict::Passed;
        }
        Verdict::Continue
    }

    /// Counts plugin calls that failed through the plugin's own state (see [`crate::chain`]).
    pub fn state_failures(&self, failures: &[StateFailure]) {
        for f in failures {
            self.stats.state_failures.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(
                "sluice_plugin_state_failures_total",
                "pipeline" => self.pipeline.clone(),
                "plugin" => f.plugin.name.to_string(),
                "version" => f.plugin.version.to_string()
            )
            .increment(1);
        }
    }

    /// Rolls `version` back to the last version that passed probation, unless it is no longer
    /// live or passed meanwhile.
    fn roll_back(&self, version: &ChainVersion, why: &str) -> Verdict {
        let mut versions = self.versions.lock().expect("versions lock");
        if versions.current.generation != version.generation {
            return Verdict::RolledBack; // another worker already did
        }
        if !version.on_probation() {
            return Verdict::Passed;
        }
        let target = versions.last_passed();
        self.restore(&mut versions, &target, why);
        Verdict::RolledBack
    }

    /// The operator's rollback: returns to the last version that passed probation before the
    /// live one (the live one itself is that version unless it is on probation). Returns the
    /// restored version's label, or why there is none.
    pub fn roll_back_to_passed(&self) -> Result<Arc<str>, String> {
        let mut versions = self.versions.lock().expect("versions lock");
        let current = versions.current.clone();
        if !current.on_probation() {
            if versions.passed.len() < 2 {
                return Err(format!(
                    "pipeline `{}` runs {}, and no earlier version that passed probation is kept                      (the version loaded at start counts as passed; the last {PASSED_KEPT} are                      kept): there is nothing to roll back to. Deploy the version you want instead",
                    self.pipeline, current.label
                ));
            }
            versions.passed.pop();
        }
        let target = versions.last_passed();
        self.restore(&mut versions, &target, "requested by the operator");
        Ok(target.label.clone())
    }

    /// Makes `target` live again in place of the current version.
    fn restore(&self, versions: &mut Versions, target: &ChainVersion, why: &str) {
        let bad = versions.current.clone();
        let differing = bad.differing(target);
        {
            let mut rejected = self.rejected.lock().expect("rejected lock");
            for p in &differing {
                rejected.insert(p.version.clone());
            }
        }
        let restored = Arc::new(target.again(bad.generation + 1));
        versions.current = restored.clone();
        self.generation
            .store(restored.generation, Ordering::Release);
        self.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
        for p in &differing {
            reload_outcome(&self.pipeline, &p.name, "rolled_back");
            version_info(&self.pipeline, p, false);
        }
        for p in target.differing(&bad) {
            version_info(&self.pipeline, p, true);
        }
        tracing::warn!(
            pipeline = %self.pipeline, bad = %bad.label, restored = %restored.label,
            "rolled back to the last version that passed probation ({why}); the rolled-back \
             content is not loaded again until its file changes"
        );
    }
}

/// Sets the `sluice_plugin_info` gauge of one plugin version.
fn version_info(pipeline: &str, plugin: &Plugin, live: bool) {
    metrics::gauge!(
        "sluice_plugin_info",
        "pipeline" => pipeline.to_string(),
        "plugin" => plugin.name.to_string(),
        "version" => plugin.version.to_string()
    )
    .set(if live { 1.0 } else { 0.0 });
}

fn reload_outcome(pipeline: &str, plugin: &str, result: &'static str) {
    metrics::counter!(
        "sluice_plugin_reloads_total",
        "pipeline" => pipeline.to_string(),
        "plugin" => plugin.to_string(),
        "result" => result
    )
    .increment(1);
}
