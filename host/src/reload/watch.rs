//! The plugin file watcher: follows every plugin file of the live chains (notify), waits until a
//! file has stopped changing and offers it to its chains; a recheck request (SIGHUP) offers every
//! file at once. Each file is validated in a task of its own, at most one validation per file in
//! flight.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::Watcher as _;
use tokio::sync::{mpsc, watch as tokio_watch};

use super::{LiveChain, Offer};
use crate::runtime::{Runtime, content_version};

/// A file being watched, and the chains it belongs to.
struct Watched {
    targets: Vec<(Arc<LiveChain>, usize)>,
    /// Content version of the file when last read: only a change of content is offered, so a
    /// version uploaded through the admin API stays live until the file itself changes.
    seen: Arc<Mutex<Option<String>>>,
}

/// Follows every plugin file of `chains` until `stop`; a message on `recheck` offers every file.
/// Runs on the async runtime; each file is read and validated on a blocking thread of its own,
/// at most one per file at a time, so files (and tenants) never wait for each other.
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
    // Files being read and validated, each in a task of its own; a file's next change waits.
    let mut in_flight: HashSet<PathBuf> = HashSet::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(PathBuf, bool)>();
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
            Some((path, stable)) = done.recv() => {
                in_flight.remove(&path);
                if !stable {
                    // Still being written: look again after another quiet period.
                    dirty.insert(path, Instant::now());
                }
            }
            _ = tick.tick() => {
                let due: Vec<PathBuf> = dirty
                    .iter()
                    .filter(|(p, at)| at.elapsed() >= debounce && !in_flight.contains(*p))
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in due {
                    dirty.remove(&path);
                    in_flight.insert(path.clone());
                    let targets = files[&path].targets.clone();
                    let seen = files[&path].seen.clone();
                    let runtime = runtime.clone();
                    let settle = debounce / 2;
                    let done = done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let offered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            offer_file(&runtime, &path, &targets, &seen, settle)
                        }));
                        let stable = offered.unwrap_or_else(|_| {
                            tracing::error!(path = %path.display(), "validating a new plugin version panicked; the running version stays");
                            true
                        });
                        let _ = done.send((path, stable));
                    });
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
    let offer = |(chain, index): &(Arc<LiveChain>, usize)| {
        if let Offer::Rejected = chain.offer(runtime, *index, &bytes) {
            tracing::info!(path = %path.display(), "this content was rolled back before; not loading it again")
        }
    };
    match targets {
        [one] => offer(one),
        // A file shared by pipelines: each validates it with its own config, side by side.
        many => std::thread::scope(|scope| {
            for target in many {
                scope.spawn(move || offer(target));
            }
        }),
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
