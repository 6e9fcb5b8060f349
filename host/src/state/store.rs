//! One partition's store: a read cache over a redb file, plus the changes of the batch in
//! progress.
//!
//! Three layers, newest first: a plugin call's *overlay* (kept by the call, see
//! [`super::CallState`]), the batch's *pending* changes (calls that returned), and the committed
//! store (the redb file, with an in-memory read cache in front). A call's overlay joins `pending`
//! only when the call returns, so a trap (and the bisection that follows) sees clean state; the
//! batch's pending changes are written to the changelog with its outputs and applied to the file
//! once its delivery commits (at once under at-least-once), or dropped when its transaction
//! aborts.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::keys;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Committed changes kept in memory before they are written to the file in one redb commit.
const FLUSH_CHANGES: usize = 20_000;

/// Changes by internal key: `None` deletes.
pub(crate) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Bytes an entry counts for against the limits: its key and value.
pub(crate) fn entry_bytes(key: &[u8], value: Option<&[u8]>) -> i64 {
    value.map_or(0, |v| (key.len() + v.len()) as i64)
}

/// A tenant's state quota, shared by the stores of its pipelines in this process.
#[derive(Debug)]
pub struct Quota {
    /// The tenant.
    pub tenant: String,
    /// Most bytes (`tenants[N].max_state_bytes`).
    pub limit: u64,
    used: AtomicU64,
}

impl Quota {
    /// A quota of `limit` bytes for `tenant`.
    pub fn new(tenant: &str, limit: u64) -> Arc<Quota> {
        Arc::new(Quota {
            tenant: tenant.to_string(),
            limit,
            used: AtomicU64::new(0),
        })
    }

    fn add(&self, delta: i64) {
        if delta >= 0 {
            self.used.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(delta.unsigned_abs()))
                });
        }
    }
}

/// What every store of a pipeline shares: its limits and meters.
pub(crate) struct Shared {
    pub(crate) pipeline: String,
    /// `limits.max_state_bytes`: most bytes of keys and values in one partition's store.
    pub(crate) max_bytes: u64,
    pub(crate) quota: Option<Arc<Quota>>,
    /// Bytes of cache per store before it is emptied.
    pub(crate) cache_bytes: usize,
    /// `state.allowed_lateness_ms`: how far behind the largest timestamp seen the watermark is.
    pub(crate) lateness_ms: i64,
    pub(crate) meters: super::StateMeters,
}

/// The state of one input partition of a pipeline.
pub struct PartitionStore {
    /// The input topic.
    pub topic: Arc<str>,
    /// The input partition.
    pub partition: i32,
    pub(crate) shared: Arc<Shared>,
    inner: Mutex<Inner>,
    /// The file, removed when the store is closed (`None`: in memory).
    path: Option<PathBuf>,
}

pub(crate) struct Inner {
    db: Database,
    /// A read snapshot of the file, kept until the next write: a read transaction opened per
    /// key the cache missed cost more than the lookup itself.
    reader: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
    /// Committed changes not yet written to the file: a redb commit costs far more than a
    /// batch's worth of map inserts, so the file is written once this many changes gather.
    unflushed: Changes,
    cache: HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>,
    cached_bytes: usize,
    pub(crate) pending: Changes,
    /// Byte change of `pending` against the committed store.
    pending_delta: i64,
    /// Bytes of keys and values committed.
    bytes: u64,
    /// Largest record timestamp committed / pending (i64::MIN before any).
    max_ts: i64,
    pending_max_ts: i64,
}

/// Why a write was refused: the call traps and its input is dead-lettered with `limit:state`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateLimitHit(pub String);

impl PartitionStore {
    /// Opens a fresh store in `path` (an existing file there is replaced: the changelog is what
    /// a store is restored from). `None` keeps it in memory (`sluice test`, benches).
    pub(crate) fn open(
        topic: Arc<str>,
        partition: i32,
        path: Option<&Path>,
        shared: Arc<Shared>,
    ) -> Result<Arc<PartitionStore>> {
        let db = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating the state directory {}", dir.display())
                    })?;
                }
                let _ = std::fs::remove_file(path);
                Database::builder()
                    .set_cache_size(16 << 20)
                    .create(path)
                    .with_context(|| format!("opening the state store {}", path.display()))?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .context("creating an in-memory state store")?,
        };
        {
            let txn = db.begin_write()?;
            txn.open_table(TABLE)?;
            txn.commit()?;
        }
        Ok(Arc::new(PartitionStore {
            topic,
            partition,
            shared,
            inner: Mutex::new(Inner {
                db,
                reader: None,
                unflushed: Changes::new(),
                cache: HashMap::default(),
                cached_bytes: 0,
                pending: Changes::new(),
                pending_delta: 0,
                bytes: 0,
                max_ts: i64::MIN,
                pending_max_ts: i64::MIN,
            }),
            path: path.map(Path::to_path_buf),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("state store lock")
    }

    /// The committed-plus-pending value of an internal key.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.lock().get(key, self.shared.cache_bytes)
    }

    /// The value plugin `plugin` keeps under `key`, as committed (for the admin API).
    pub fn value_of(&self, plugin: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let internal = keys::state_key(plugin, key);
        let mut inner = self.lock();
        inner.committed(&internal)
    }

    /// Refuses a change of `delta` bytes on top of the pending ones when it would bring the store
    /// over its limit or the tenant over its quota.
    pub(crate) fn check_room(&self, inner: &Inner, delta: i64) -> Result<(), StateLimitHit> {
        if delta <= 0 {
            return Ok(());
        }
        let after = inner.bytes as i64 + inner.pending_delta + delta;
        if after > self.shared.max_bytes as i64 {
            return Err(StateLimitHit(format!(
                "state limit: this write would bring the state of {}[{}] to {after} bytes, above \
                 limits.max_state_bytes ({})",
                self.topic, self.partition, self.shared.max_bytes
            )));
        }
        if let Some(q) = &self.shared.quota {
            let used = q.used.load(Ordering::Relaxed) as i64 + inner.pending_delta + delta;
            if used > q.limit as i64 {
                return Err(StateLimitHit(format!(
                    "state quota: this write would bring tenant `{}`'s state to {used} bytes, above \
                     its max_state_bytes ({})",
                    q.tenant, q.limit
                )));
            }
        }
        Ok(())
    }

    /// Adds a returned call's changes (`delta` bytes) to the batch's pending ones.
    pub(crate) fn merge_call(&self, overlay: Changes, delta: i64) {
        let mut inner = self.lock();
        inner.pending_delta += delta;
        if inner.pending.is_empty() {
            inner.pending = overlay;
        } else {
            inner.pending.extend(overlay);
        }
    }

    /// The batch's pending changes, taken out (the probation shadow runs without them).
    pub(crate) fn take_pending(&self) -> (Changes, i64, i64) {
        let mut inner = self.lock();
        let committed_ts = inner.max_ts;
        let ts = std::mem::replace(&mut inner.pending_max_ts, committed_ts);
        (
            std::mem::take(&mut inner.pending),
            std::mem::take(&mut inner.pending_delta),
            ts,
        )
    }

    /// Puts back pending changes taken with [`PartitionStore::take_pending`].
    pub(crate) fn put_pending(&self, (pending, delta, ts): (Changes, i64, i64)) {
        let mut inner = self.lock();
        inner.pending = pending;
        inner.pending_delta = delta;
        inner.pending_max_ts = ts;
    }

    /// Drops the batch's pending changes (its transaction aborted).
    pub(crate) fn discard_pending(&self) {
        drop(self.take_pending());
    }

    /// Calls `f` with every pending change, in key order (to write the changelog).
    pub(crate) fn for_each_pending(&self, mut f: impl FnMut(&[u8], Option<&[u8]>)) {
        let inner = self.lock();
        for (k, v) in &inner.pending {
            f(k, v.as_deref());
        }
    }

    /// Applies the batch's pending changes to the store.
    pub fn apply_pending(&self) -> Result<()> {
        let mut inner = self.lock();
        if inner.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut inner.pending);
        let delta = std::mem::take(&mut inner.pending_delta);
        inner.max_ts = inner.pending_max_ts;
        inner.unflushed.extend(pending);
        if inner.unflushed.len() >= FLUSH_CHANGES {
            let unflushed = std::mem::take(&mut inner.unflushed);
            inner.write(&unflushed)?;
        }
        inner.bytes = (inner.bytes as i64 + delta).max(0) as u64;
        if let Some(q) = &self.shared.quota {
            q.add(delta);
        }
        self.shared.meters.bytes.set(inner.bytes as f64);
        Ok(())
    }

    /// Restores changes read from the changelog (bytes are recounted as they are applied).
    pub(crate) fn restore(&self, changes: &Changes) -> Result<()> {
        let mut inner = self.lock();
        let mut delta = 0i64;
        for (k, v) in changes {
            delta += entry_bytes(k, v.as_deref()) - entry_bytes(k, inner.committed(k)?.as_deref());
        }
        inner.write(changes)?;
        inner.bytes = (inner.bytes as i64 + delta).max(0) as u64;
        if let Some(q) = &self.shared.quota {
            q.add(delta);
        }
        if let Some(Some(v)) = changes.get(keys::MAX_TIMESTAMP)
            && let Ok(b) = <[u8; 8]>::try_from(v.as_slice())
        {
            inner.max_ts = i64::from_be_bytes(b);
            inner.pending_max_ts = inner.max_ts;
        }
        Ok(())
    }

    /// Bytes of keys and values committed.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The watermark before the batch: the largest timestamp committed minus `lateness_ms`.
    pub(crate) fn watermark(&self, lateness_ms: i64) -> i64 {
        let ts = self.lock().pending_max_ts;
        if ts == i64::MIN {
            i64::MIN
        } else {
            ts.saturating_sub(lateness_ms)
        }
    }

    /// The largest record timestamp seen, pending included (i64::MIN before any).
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.lock().pending_max_ts
    }

    /// Notes the largest timestamp of a batch (a pending change, so durable with it).
    pub(crate) fn observe_timestamp(&self, ts: i64) {
        let mut inner = self.lock();
        if ts > inner.pending_max_ts {
            inner.pending_max_ts = ts;
            inner.pending.insert(
                keys::MAX_TIMESTAMP.to_vec(),
                Some(ts.to_be_bytes().to_vec()),
            );
        }
    }

    /// Up to `limit` entries of committed-plus-pending-plus-`overlay` state whose internal key
    /// starts with `prefix`, after `after`.
    ///
    /// A lazy merge of the four layers (overlay, pending, unflushed, file), newest winning: it
    /// costs what it returns, not the size of the layers — the due-timer check scans once per
    /// batch, with thousands of timers pending and only a few due.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        overlay: &Changes,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut guard = self.lock();
        guard.open_reader()?;
        let inner = &*guard;
        let lower: Bound<&[u8]> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        // Newest first: on equal keys the first layer holding it wins.
        let mut newer = [overlay, &inner.pending, &inner.unflushed]
            .map(|changes| changes_in(changes, prefix, lower).peekable());
        let table = inner.reader.as_ref().expect("opened above");
        let mut committed = table
            .range::<&[u8]>((lower, Bound::Unbounded))?
            .map(|e| e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .take_while(|e| e.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            // A read error of the file ends the scan with it, not with a short page.
            if let Some(Err(_)) = committed.peek()
                && let Some(Err(e)) = committed.next()
            {
                return Err(e.into());
            }
            let mut least: Option<&[u8]> = None;
            for l in &mut newer {
                if let Some(&(k, _)) = l.peek()
                    && least.is_none_or(|m| k < m)
                {
                    least = Some(k);
                }
            }
            let Some(key) = least else {
                for entry in committed.by_ref().take(limit - out.len()) {
                    out.push(entry?);
                }
                break;
            };
            match committed.peek() {
                Some(Ok((ck, _))) if ck.as_slice() < key => {
                    out.push(committed.next().expect("peeked")?);
                    continue;
                }
                Some(Ok((ck, _))) if ck.as_slice() == key => {
                    committed.next();
                }
                _ => {}
            }
            let mut value = None;
            for l in &mut newer {
                if l.peek().is_some_and(|&(k, _)| k == key) {
                    let (_, v) = l.next().expect("peeked");
                    value.get_or_insert(v);
                }
            }
            if let Some(Some(v)) = value {
                out.push((key.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Closes the store and removes its file (the partition was revoked; the changelog keeps
    /// its state for the next owner).
    pub(crate) fn close(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
        if let Some(q) = &self.shared.quota {
            q.add(-(self.lock().bytes as i64));
        }
    }
}

/// The changes in `changes` from `lower` on whose key starts with `prefix`, in key order.
fn changes_in<'a>(
    changes: &'a Changes,
    prefix: &'a [u8],
    lower: Bound<&'a [u8]>,
) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
    changes
        .range::<[u8], _>((lower, Bound::Unbounded))
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl Inner {
    fn get(&mut self, key: &[u8], cap: usize) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.unflushed.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(v.clone());
        }
        let v = self.committed(key)?;
        self.remember(key.to_vec(), v.clone(), cap);
        Ok(v)
    }

    /// Bytes `key` holds now, pending changes included (without copying its value).
    pub(crate) fn size_of(&mut self, key: &[u8], cap: usize) -> Result<i64> {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| (key.len() + v.len()) as i64);
        if let Some(v) = self.pending.get(key) {
            return Ok(len(v));
        }
        if let Some(v) = self.unflushed.get(key) {
            return Ok(len(v));
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(len(v));
        }
        Ok(entry_bytes(key, self.get(key, cap)?.as_deref()))
    }

    fn committed(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.unflushed.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(v.clone());
        }
        self.open_reader()?;
        let table = self.reader.as_ref().expect("opened above");
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Opens the read snapshot of the file unless one is open.
    fn open_reader(&mut self) -> Result<()> {
        if self.reader.is_none() {
            self.reader = Some(self.db.begin_read()?.open_table(TABLE)?);
        }
        Ok(())
    }

    fn remember(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, cap: usize) {
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 64;
        if self.cached_bytes + size > cap {
            // Bounded, and cheap to keep bounded: start over rather than track recency.
            self.cache.clear();
            self.cached_bytes = 0;
        }
        self.cached_bytes += size;
        if let Some(old) = self.cache.insert(key, value) {
            self.cached_bytes -= old.map_or(0, |v| v.len()).min(self.cached_bytes);
        }
    }

    fn write(&mut self, changes: &Changes) -> Result<()> {
        // The snapshot would go stale (and hold the pages this write frees).
        self.reader = None;
        let mut txn = self.db.begin_write()?;
        // The file is rebuilt from the changelog on every assignment: it needs no fsync.
        txn.set_durability(Durability::None)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        table.remove(k.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        // Restored entries are not cached: the cache fills with what is read.
        for k in changes.keys() {
            if let Some(slot) = self.cache.get_mut(k) {
                *slot = changes[k].clone();
            }
        }
        Ok(())
    }
}
