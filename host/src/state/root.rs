//! This process's directory of state stores, and the sweep of the directories that processes
//! which are gone left behind.
//!
//! Every process keeps its stores in `<state_dir>/<instance>-<pid>` (stores are rebuilt from
//! their changelog on assignment, so nothing there outlives the process that wrote it). A process
//! that exits cleanly removes its directory; one that is killed cannot, and its files — as large as
//! its state — would stay forever. So each directory holds a `.lock` file that its process keeps
//! locked (`flock`, released by the kernel however the process ends), and a process claiming its
//! own directory removes every sibling whose owner is gone: no process with the pid in its name
//! runs (checked first, so a process still creating its directory is never swept), and its lock
//! can be taken. A directory whose lock is held, or that has no lock file (not ours, or from a
//! version before the lock), is left alone.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// Name of the lock file in a process's state directory.
const LOCK_FILE: &str = ".lock";

/// This process's state directory, created (and the dead siblings swept) on first use.
pub struct StateRoot {
    path: PathBuf,
    /// The locked `.lock` file once the directory is claimed: held until the process ends.
    lock: Mutex<Option<File>>,
}

impl StateRoot {
    /// The directory `<parent>/<name>`, not created yet.
    pub fn new(parent: &Path, name: &str) -> StateRoot {
        StateRoot {
            path: parent.join(name),
            lock: Mutex::new(None),
        }
    }

    /// The directory, created and locked on the first call, which also removes the directories
    /// of dead processes beside it.
    pub fn claim(&self) -> Result<&Path> {
        let mut lock = self.lock.lock().expect("state root lock");
        if lock.is_none() {
            std::fs::create_dir_all(&self.path).with_context(|| {
                format!(
                    "creating the state directory {} (set runtime.state_dir to a writable \
                     directory)",
                    self.path.display()
                )
            })?;
            let file = File::create(self.path.join(LOCK_FILE))
                .with_context(|| format!("creating {}", self.path.join(LOCK_FILE).display()))?;
            file.try_lock().with_context(|| {
                format!(
                    "locking {}: another process uses this state directory",
                    self.path.join(LOCK_FILE).display()
                )
            })?;
            *lock = Some(file);
            if let Some(parent) = self.path.parent() {
                sweep(parent, &self.path);
            }
        }
        Ok(&self.path)
    }
}

impl Drop for StateRoot {
    fn drop(&mut self) {
        if self.lock.get_mut().map(|l| l.is_some()).unwrap_or(false) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the directories in `parent` (other than `own`) whose lock file nobody holds.
fn sweep(parent: &Path, own: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir == own || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if owner_runs(&dir) {
            continue;
        }
        let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(
                    "removed {}: the state files of a process that is gone",
                    dir.display()
                ),
                Err(e) => tracing::warn!(
                    "cannot remove {}, the state files of a process that is gone: {e}",
                    dir.display()
                ),
            },
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                tracing::debug!("cannot lock {}: {e}", dir.join(LOCK_FILE).display())
            }
        }
    }
}

/// True when the pid that ends the directory's name (`<instance>-<pid>`) is a running process
/// (a reused pid only keeps a dead directory one run longer).
fn owner_runs(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('-'))
        .and_then(|(_, pid)| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claiming_removes_the_directories_of_dead_processes_and_keeps_live_ones() {
        let parent = tempfile::tempdir().unwrap();
        // Pids above Linux's pid_max: no process has them, so only the locks tell.
        // A live process: its lock is held (flock locks of two open files conflict even within
        // one process).
        let live = StateRoot::new(parent.path(), "live-999999998");
        live.claim().unwrap();
        std::fs::write(live.path.join("t-0.redb"), b"state").unwrap();
        // A killed process: its directory and lock file stay, nobody holds the lock.
        let dead = parent.path().join("dead-999999997");
        std::fs::create_dir_all(&dead).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        std::fs::write(dead.join("t-0.redb"), b"state").unwrap();
        // Something else: no lock file.
        let other = parent.path().join("other");
        std::fs::create_dir_all(&other).unwrap();

        // A process that runs (this one), its lock not taken yet: it is still starting.
        let starting = parent
            .path()
            .join(format!("starting-{}", std::process::id()));
        std::fs::create_dir_all(&starting).unwrap();
        File::create(starting.join(LOCK_FILE)).unwrap();

        let me = StateRoot::new(parent.path(), "me-999999996");
        let path = me.claim().unwrap().to_path_buf();
        assert!(path.is_dir());
        assert!(!dead.exists(), "the dead process's files are removed");
        assert!(
            live.path.join("t-0.redb").exists(),
            "a live process's files stay"
        );
        assert!(
            other.exists(),
            "a directory without a lock file is not ours"
        );
        assert!(
            starting.exists(),
            "a running process's directory stays, locked or not"
        );
        // A second claim of a held directory fails, naming it.
        let twin = StateRoot::new(parent.path(), "me-999999996");
        let err = twin.claim().unwrap_err();
        assert!(format!("{err:#}").contains("another process"), "{err:#}");
        drop(twin);
        assert!(path.is_dir(), "a claim that failed removes nothing");

        drop(me);
        assert!(!path.exists(), "a clean exit removes its directory");
        drop(live);
        assert!(!parent.path().join("live-999999998").exists());
    }
}
