//! Precompiled components on disk, keyed by the component's content hash and the engine's
//! compatibility hash, so that a plugin is compiled once per machine and engine configuration.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

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

    fn path_for(&self, content_hash: &str) -> PathBuf {
        self.dir
            .join("components")
            .join(format!("{content_hash}-{}.cwasm", self.engine_hash))
    }

    /// The component for `bytes` (whose SHA-256 is `content_hash`): loaded from the cache when
    /// present and valid, otherwise compiled and stored. Returns whether it was a cache hit.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<(Component, bool)> {
        let path = self.path_for(content_hash);
        if path.exists() {
            // SAFETY: the artifact was written by this host's `store` below, into a directory
            // only the host writes (see the type's docs); deserialize checks the engine
            // compatibility and fails cleanly on a mismatch or a truncated file.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::debug!(path = %path.display(), "stale precompiled component, recompiling: {e:#}")
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(e) = store(&path, &artifact) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled plugin (it will be compiled again next start): {e:#}");
        }
        // SAFETY: `artifact` was just produced by `engine` in this process.
        let component = unsafe { Component::deserialize(engine, &artifact) }?;
        Ok((component, false))
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
