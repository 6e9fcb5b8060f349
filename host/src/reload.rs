//! Hot reload: a pipeline's plugin chain is replaced while records flow, with no record lost,
//! processed twice, or dead-lettered because of a bad deploy.
//!
//! - [`LiveChain`] holds the chain version a pipeline's workers run. A new plugin file is
//!   compiled, linked and initialised by [`LiveChain::offer`] on a blocking thread, off the record
//!   path; only a valid version is published. Workers pick it up at their next batch boundary, so
//!   on each partition every record after the switch is processed by the new version and none
//!   before it. Offsets are untouched.
//! - A new version is on *probation* for its first `probation_records` records: a batch on which it
//!   fails an input that the previous version handles is served by the previous version instead,
//!   and once such regressions exceed `max_failure_ratio` of the window the host rolls back by
//!   itself. A rolled-back file is not loaded again until its content changes.
//! - [`watch`] follows the plugin files (notify), waits until a file has stopped changing and
//!   offers it; a recheck request (SIGHUP) offers every file at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::Watcher as _;
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::config::ReloadPolicy;
use crate::runtime::{LoadError, Plugin, PluginSpec, Runtime, content_version};

/// One version of a pipeline's chain.
pub struct ChainVersion {
    /// Increases with every swap and rollback.
    pub generation: u64,
    /// The plugins, in chain order.
    pub plugins: Vec<Arc<Plugin>>,
    /// `name@version` of every plugin, comma-separated: the `sluice.version` output header.
    pub label: Arc<str>,
    /// The version this one replaced, while this one is on probation.
    pub previous: Option<Arc<ChainVersion>>,
    probation: Option<Probation>,
}

struct Probation {
    window: u64,
    budget: u64,
    swapped: usize,
    records: AtomicU64,
    regressions: AtomicU64,
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

    /// True while the version's first records are checked against the previous version.
    pub fn on_probation(&self) -> bool {
        self.probation
            .as_ref()
            .is_some_and(|p| !p.passed.load(Ordering::Acquire))
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

/// Counters of reload activity.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Versions published.
    pub swaps: AtomicU64,
    /// Files rejected as invalid.
    pub failures: AtomicU64,
    /// Versions rolled back after probation failures.
    pub rollbacks: AtomicU64,
}

/// The live chain of one pipeline.
pub struct LiveChain {
    pipeline: String,
    specs: Vec<PluginSpec>,
    policy: ReloadPolicy,
    current: Mutex<Arc<ChainVersion>>,
    generation: AtomicU64,
    rejected: Mutex<HashSet<Arc<str>>>,
    offer_lock: Mutex<()>,
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
        Arc::new(LiveChain {
            pipeline: pipeline.to_string(),
            specs,
            policy,
            current: Mutex::new(Arc::new(ChainVersion::new(1, plugins))),
            generation: AtomicU64::new(1),
            rejected: Mutex::new(HashSet::new()),
            offer_lock: Mutex::new(()),
            stats: ReloadStats::default(),
        })
    }

    /// The generation of the live version; cheap enough to check every batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The live version.
    pub fn current(&self) -> Arc<ChainVersion> {
        self.current.lock().expect("chain lock").clone()
    }

    /// The plugin specs, in chain order.
    pub fn specs(&self) -> &[PluginSpec] {
        &self.specs
    }

    /// Offers new content for plugin `index`: validated (compiled, instantiated, `init` run) on
    /// the calling thread, which must not be a record-path thread, then published.
    pub fn offer(&self, runtime: &Arc<Runtime>, index: usize, bytes: &[u8]) -> Offer {
        let _serial = self.offer_lock.lock().expect("offer lock");
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
        let plugin = match runtime.load_bytes(spec, bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                reload_outcome(&self.pipeline, &spec.name, "rejected");
                tracing::warn!(pipeline = %self.pipeline, plugin = %spec.name, path = %spec.path.display(), "new plugin version rejected, the running version stays: {e}");
                return Offer::Invalid(e);
            }
        };
        // Build on the version live *now*: a rollback may have landed during the compile.
        let mut live = self.current.lock().expect("chain lock");
        let current = live.clone();
        if *current.plugins[index].version == *version {
            return Offer::Unchanged;
        }
        let mut plugins = current.plugins.clone();
        let old = std::mem::replace(&mut plugins[index], plugin);
        let mut next = ChainVersion::new(current.generation + 1, plugins);
        // The previous version without its own history, so versions never form a chain.
        let mut previous = ChainVersion::new(current.generation, current.plugins.clone());
        previous.label = current.label.clone();
        next.previous = Some(Arc::new(previous));
        if self.policy.probation_records > 0 {
            next.probation = Some(Probation {
                window: self.policy.probation_records,
                budget: (self.policy.probation_records as f64 * self.policy.max_failure_ratio)
                    .floor() as u64,
                swapped: index,
                records: AtomicU64::new(0),
                regressions: AtomicU64::new(0),
                passed: AtomicBool::new(false),
            });
        }
        let label = next.label.clone();
        version_info(&self.pipeline, &old, false);
        version_info(&self.pipeline, &next.plugins[index], true);
        let next = Arc::new(next);
        *live = next.clone();
        self.generation.store(next.generation, Ordering::Release);
        drop(live);
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        reload_outcome(&self.pipeline, &spec.name, "swapped");
        tracing::info!(pipeline = %self.pipeline, plugin = %spec.name, from = %old.version, to = %version, prepare_ms = started.elapsed().as_millis() as u64, "hot-swapped plugin; workers switch at their next batch");
        Offer::Swapped { label }
    }

    /// Reports a probation batch of `records` inputs, of which `regressions` failed with
    /// `version` but not with its previous version.
    pub fn report(&self, version: &ChainVersion, records: u64, regressions: u64) -> Verdict {
        let Some(p) = &version.probation else {
            return Verdict::Continue;
        };
        if p.passed.load(Ordering::Acquire) {
            return Verdict::Passed;
        }
        let seen = p.records.fetch_add(records, Ordering::AcqRel) + records;
        let failed = p.regressions.fetch_add(regressions, Ordering::AcqRel) + regressions;
        if failed > p.budget {
            return self.roll_back(version, p, failed, seen);
        }
        if seen >= p.window {
            p.passed.store(true, Ordering::Release);
            tracing::info!(pipeline = %self.pipeline, version = %version.label, records = seen, regressions = failed, "new plugin version passed probation");
            return Verdict::Passed;
        }
        Verdict::Continue
    }

    fn roll_back(&self, version: &ChainVersion, p: &Probation, failed: u64, seen: u64) -> Verdict {
        let mut current = self.current.lock().expect("chain lock");
        if current.generation != version.generation {
            return Verdict::RolledBack; // another worker already did
        }
        let previous = version
            .previous
            .as_ref()
            .expect("a version on probation has a previous");
        let bad = &version.plugins[p.swapped];
        self.rejected
            .lock()
            .expect("rejected lock")
            .insert(bad.version.clone());
        let mut restored = ChainVersion::new(version.generation + 1, previous.plugins.clone());
        restored.label = previous.label.clone();
        let restored = Arc::new(restored);
        *current = restored.clone();
        self.generation
            .store(restored.generation, Ordering::Release);
        self.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
        reload_outcome(&self.pipeline, &bad.name, "rolled_back");
        version_info(&self.pipeline, bad, false);
        version_info(&self.pipeline, &restored.plugins[p.swapped], true);
        tracing::warn!(
            pipeline = %self.pipeline, plugin = %bad.name, bad = %bad.version, restored = %restored.label,
            "rolled back: the new version failed {failed} of the first {seen} records that the previous version handles \
             (more than {:.0}% of the {}-record probation); it is not loaded again until the file changes",
            self.policy.max_failure_ratio * 100.0, p.window
        );
        Verdict::RolledBack
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

/// A file being watched, and the chains it belongs to.
struct Watched {
    targets: Vec<(Arc<LiveChain>, usize)>,
    /// Content version of the file when last read: only a change of content is offered, so a
    /// version uploaded through the admin API stays live until the file itself changes.
    seen: Arc<Mutex<Option<String>>>,
}

/// Follows every plugin file of `chains` until `stop`; a message on `recheck` offers every file.
/// Runs on the async runtime; compilation happens on blocking threads.
pub async fn watch(
    runtime: Arc<Runtime>,
    chains: Vec<Arc<LiveChain>>,
    follow_files: bool,
    debounce: Duration,
    mut recheck: mpsc::UnboundedReceiver<()>,
    mut stop: tokio_watch::Receiver<bool>,
) -> Result<()> {
    let mut files: HashMap<PathBuf, Watched> = HashMap::new();
    for chain in &chains {
        for (i, spec) in chain.specs().iter().enumerate() {
            files
                .entry(canonical(&spec.path))
                .or_insert_with(|| Watched {
                    targets: Vec::new(),
                    seen: Arc::default(),
                })
                .targets
                .push((chain.clone(), i));
        }
    }
    let (tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a file (ours included) is no reason to look at it.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("starting the plugin file watcher")?;
    let dirs: HashSet<PathBuf> = files
        .keys()
        .filter(|_| follow_files)
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for plugin changes", dir.display()))?;
    }
    if follow_files {
        tracing::info!(
            files = files.len(),
            "watching plugin files for changes (SIGHUP re-checks them all)"
        );
    }

    // Files may have changed between loading and watching: look at each once now (an unchanged
    // file costs a hash).
    let mut dirty: HashMap<PathBuf, Instant> =
        files.keys().map(|p| (p.clone(), Instant::now())).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            Some(path) = events.recv() => {
                let path = canonical(&path);
                if files.contains_key(&path) {
                    dirty.insert(path, Instant::now());
                }
            }
            Some(()) = recheck.recv() => {
                tracing::info!("re-checking every plugin file");
                let past = Instant::now().checked_sub(debounce).unwrap_or_else(Instant::now);
                for path in files.keys() {
                    dirty.insert(path.clone(), past);
                }
            }
            _ = tick.tick() => {
                let due: Vec<PathBuf> = dirty
                    .iter()
                    .filter(|(_, at)| at.elapsed() >= debounce)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in due {
                    dirty.remove(&path);
                    let targets = files[&path].targets.clone();
                    let seen = files[&path].seen.clone();
                    let runtime = runtime.clone();
                    let settle = debounce / 2;
                    let file = path.clone();
                    let stable = tokio::task::spawn_blocking(move || offer_file(&runtime, &file, &targets, &seen, settle)).await?;
                    if !stable {
                        // Still being written: look again after another quiet period.
                        dirty.insert(path, Instant::now());
                    }
                }
            }
        }
    }
}

/// Reads a file once it has stopped changing and offers it to its chains. Returns false when the
/// file changed while being read (a writer is still at work).
fn offer_file(
    runtime: &Arc<Runtime>,
    path: &Path,
    targets: &[(Arc<LiveChain>, usize)],
    seen: &Mutex<Option<String>>,
    settle: Duration,
) -> bool {
    let stamp = |p: &Path| -> Option<(u64, SystemTime)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.len(), m.modified().ok()?))
    };
    let Some(before) = stamp(path) else {
        tracing::warn!(path = %path.display(), "plugin file disappeared; the running version stays");
        return true;
    };
    std::thread::sleep(settle);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the plugin file, the running version stays: {e}");
            return true;
        }
    };
    if stamp(path) != Some(before) || bytes.len() as u64 != before.0 {
        return false;
    }
    let version = content_version(&bytes);
    if seen.lock().expect("seen lock").replace(version.clone()) == Some(version) {
        return true;
    }
    for (chain, index) in targets {
        match chain.offer(runtime, *index, &bytes) {
            Offer::Rejected => {
                tracing::info!(path = %path.display(), "this content was rolled back before; not loading it again")
            }
            Offer::Unchanged | Offer::Invalid(_) | Offer::Swapped { .. } => {}
        }
    }
    true
}

fn canonical(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}
