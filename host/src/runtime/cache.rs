//! Precompiled components on disk, keyed by the component's content hash and the engine's
//! compatibility hash, so that a plugin is compiled once per machine and engine configuration.
//!
//! The cache is bounded ([`MAX_CACHE_BYTES`], [`MAX_CACHE_ENTRIES`]; least recently used
//! entries are evicted first), and only components that passed validation are stored: the
//! runtime calls [`ComponentCache::store`] after linking and `init` succeeded, so an upload that
//! is refused leaves nothing on disk.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::limits::{MAX_CACHE_BYTES, MAX_CACHE_ENTRIES};

/// Temporary files older than this are leftovers of a crash and are removed.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A directory of `.cwasm` artifacts. Only the host may be able to write it: loading an artifact
/// runs its machine code without validation.
pub struct ComponentCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write) for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        // DefaultHasher::new() uses fixed keys, so the hash is stable for one build of the host;
        // a different build gets a different key, which is what we want.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    /// The default cache directory: `$SLUICE_CACHE_DIR`, `$XDG_CACHE_HOME/sluice`, or
    /// `~/.cache/sluice`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("sluice")
    }

    /// The directory holding the artifacts.
    pub fn components_dir(&self) -> PathBuf {
        self.dir.join("components")
    }

    fn path_for(&self, content_hash: &str) -> PathBuf {
        self.components_dir()
            .join(format!("{content_hash}-{}.cwasm", self.engine_hash))
    }

    /// The cached component for `content_hash`, if present and valid; marks it recently used.
    pub fn load(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path_for(content_hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: the artifact was written by this host's `store` below, into a directory only
        // the host writes (see the type's docs); deserialize checks the engine compatibility and
        // fails cleanly on a mismatch or a truncated file.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                // The modification time orders eviction (least recently used first).
                if let Ok(file) = std::fs::File::options().write(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(component)
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "stale precompiled component, recompiling: {e:#}");
                None
            }
        }
    }

    /// Stores the artifact of a component that passed validation, then evicts the least recently
    /// used entries beyond the cache's bounds. A failure is logged: the plugin is compiled again
    /// next time.
    pub fn store(&self, content_hash: &str, artifact: &[u8]) {
        let path = self.path_for(content_hash);
        if let Err(e) = store(&path, artifact) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled plugin (it will be compiled again next start): {e:#}");
            return;
        }
        if let Err(e) = self.evict(&path, MAX_CACHE_BYTES, MAX_CACHE_ENTRIES) {
            tracing::warn!(dir = %self.components_dir().display(), "cannot evict old compiled plugins: {e:#}");
        }
    }

    /// Removes the least recently used artifacts (never `keep`) until the cache holds at most
    /// `max_bytes` and `max_entries`, and temporary files left by a crash.
    fn evict(&self, keep: &Path, max_bytes: u64, max_entries: usize) -> Result<()> {
        let mut entries = Vec::new();
        let now = SystemTime::now();
        for entry in std::fs::read_dir(self.components_dir())? {
            let entry = entry?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                if now.duration_since(modified).unwrap_or_default() > STALE_TMP {
                    let _ = std::fs::remove_file(&path);
                }
            } else if name.ends_with(".cwasm") {
                entries.push((modified, meta.len(), path));
            }
        }
        entries.sort();
        let mut bytes: u64 = entries.iter().map(|e| e.1).sum();
        let mut count = entries.len();
        for (_, len, path) in entries {
            if bytes <= max_bytes && count <= max_entries {
                break;
            }
            if path == keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "evicted a compiled plugin from the cache")
                }
                Err(e) => tracing::debug!(path = %path.display(), "cannot evict: {e}"),
            }
            bytes -= len;
            count -= 1;
        }
        Ok(())
    }

    /// A fresh temporary path in the cache directory (created), for a compiler's input or output.
    pub fn temp_path(&self, suffix: &str) -> Result<PathBuf> {
        let dir = self.components_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir.join(format!(
            ".tmp-{}-{}{suffix}",
            std::process::id(),
            rand::random::<u64>()
        )))
    }
}

/// Writes atomically so that a concurrent start never reads half an artifact.
fn store(path: &Path, artifact: &[u8]) -> Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, artifact).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_until_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path().to_path_buf(), &Engine::default());
        let base = SystemTime::now() - Duration::from_secs(1000);
        let mut paths = Vec::new();
        for i in 0..6u64 {
            let path = cache.path_for(&format!("{i:064x}"));
            store(&path, &vec![0u8; 1000]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(base + Duration::from_secs(i * 10))
                .unwrap();
            paths.push(path);
        }
        // Entry 0 was used last; entry 5 was just stored.
        std::fs::File::options()
            .write(true)
            .open(&paths[0])
            .unwrap()
            .set_modified(SystemTime::now())
            .unwrap();
        let tmp = cache.components_dir().join(".tmp-1-2");
        std::fs::write(&tmp, b"x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(base - STALE_TMP)
            .unwrap();
        cache.evict(&paths[5], 3500, 10).unwrap();
        let left: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
        // 6000 bytes → 3000: the three least recently used (1, 2, 3) go.
        assert_eq!(left, [true, false, false, false, true, true]);
        assert!(!tmp.exists());
        cache.evict(&paths[5], u64::MAX, 1).unwrap();
        let left: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
        assert_eq!(left, [false, false, false, false, false, true]);
    }
}
