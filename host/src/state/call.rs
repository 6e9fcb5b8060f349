//! What one plugin call sees of its partition's state: the store, plus the call's own overlay of
//! changes, which joins the batch's pending changes only if the call returns.

use std::sync::Arc;

use anyhow::Result;

use super::keys;
use super::store::{Changes, PartitionStore, entry_bytes};

/// Timer domains as the WIT numbers them.
pub(crate) const EVENT_TIME: u8 = 0;
/// Processing time.
pub(crate) const PROCESSING_TIME: u8 = 1;

/// The state of one plugin call of a stateful plugin.
pub struct CallState {
    store: Arc<PartitionStore>,
    /// The plugin's name: its key space in the store.
    ns: Arc<str>,
    overlay: Changes,
    /// Byte change of the overlay on top of the store and the pending changes.
    delta: i64,
    reads: u64,
    writes: u64,
    written_bytes: u64,
}

impl CallState {
    /// A call of plugin `ns` on `store`.
    pub fn new(store: Arc<PartitionStore>, ns: Arc<str>) -> Self {
        CallState {
            store,
            ns,
            overlay: Changes::new(),
            delta: 0,
            reads: 0,
            writes: 0,
            written_bytes: 0,
        }
    }

    fn read(&mut self, internal: &[u8]) -> Result<Option<Vec<u8>>> {
        self.reads += 1;
        if let Some(v) = self.overlay.get(internal) {
            return Ok(v.clone());
        }
        self.store.get(internal)
    }

    fn write(&mut self, internal: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        self.writes += 1;
        let new = entry_bytes(&internal, value.as_deref());
        let change = match self.overlay.get(&internal) {
            Some(v) => {
                let change = new - entry_bytes(&internal, v.as_deref());
                if change > 0 {
                    let inner = self.store.lock();
                    self.store.check_room(&inner, self.delta + change)?;
                }
                change
            }
            None => {
                // One lock for the old size and the room check.
                let mut inner = self.store.lock();
                let change = new - inner.size_of(&internal, self.store.shared.cache_bytes)?;
                if change > 0 {
                    self.store.check_room(&inner, self.delta + change)?;
                }
                change
            }
        };
        self.written_bytes += new.max(0) as u64;
        self.delta += change;
        self.overlay.insert(internal, value);
        Ok(())
    }

    /// `state.get`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(&keys::state_key(&self.ns, key))
    }

    /// `state.put` (`None` deletes). A write over the limits fails with [`StateLimitHit`].
    pub fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        self.write(keys::state_key(&self.ns, key), value)
    }

    /// `state.scan`.
    pub fn scan(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.reads += 1;
        let header = keys::state_header_len(&self.ns);
        let prefix = keys::state_key(&self.ns, prefix);
        let after = after.map(|a| keys::state_key(&self.ns, a));
        let limit = (limit as usize).min(crate::runtime::limits::MAX_STATE_SCAN);
        let found = self
            .store
            .scan(&prefix, after.as_deref(), limit, &self.overlay)?;
        Ok(found
            .into_iter()
            .map(|(k, v)| (k[header..].to_vec(), v))
            .collect())
    }

    /// `timers.register` / `timers.cancel`.
    pub fn timer(&mut self, domain: u8, key: &[u8], at: i64, register: bool) -> Result<()> {
        let internal = keys::timer_key(&self.ns, domain, at, key);
        self.write(internal, register.then(Vec::new))
    }

    /// `timers.watermark`.
    pub fn watermark(&self) -> i64 {
        self.store.watermark(self.store.shared.lateness_ms)
    }

    /// Ends the call: a returned call's changes join the batch's, a failed call's are dropped.
    pub fn finish(self, returned: bool) {
        let meters = &self.store.shared.meters;
        meters.reads.increment(self.reads);
        meters.writes.increment(self.writes);
        meters.written_bytes.increment(self.written_bytes);
        if returned && !self.overlay.is_empty() {
            self.store.merge_call(self.overlay, self.delta);
        }
    }
}

/// Removes the timers of plugin `ns` in `domain` due at `upto` (at most `max`) from `store`'s
/// pending changes, and returns them `(time, key)` in order of time.
pub(crate) fn take_due(
    store: &PartitionStore,
    ns: &str,
    domain: u8,
    upto: i64,
    max: usize,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let prefix = keys::timer_prefix(ns, domain);
    let mut due = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    // Most batches find none or a few timers due among many pending: start with a small page.
    let mut page_len = 16;
    'pages: while due.len() < max {
        let asked = page_len;
        let page = store.scan(&prefix, after.as_deref(), asked, &Changes::new())?;
        page_len = (page_len * 4).min(256);
        for (internal, _) in &page {
            let Some((at, key)) = keys::parse_timer(internal, prefix.len()) else {
                continue;
            };
            if at > upto || due.len() >= max {
                break 'pages;
            }
            due.push((at, key.to_vec(), internal.clone()));
        }
        if page.len() < asked {
            // The last page.
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    let mut removal = Changes::new();
    let mut delta = 0;
    for (_, _, internal) in &due {
        delta -= entry_bytes(internal, Some(&[]));
        removal.insert(internal.clone(), None);
    }
    store.merge_call(removal, delta);
    Ok(due.into_iter().map(|(at, key, _)| (at, key)).collect())
}
