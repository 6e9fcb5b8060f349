//! Keyed state kept by the host (feature `stateful`): implement [`StatefulTransform`] and export
//! it with [`export_stateful_transform!`](crate::export_stateful_transform).
//!
//! State is scoped to the partition of the records being processed and lives in the host, not in
//! the plugin's memory: it survives traps, hot swaps and restarts, and the host writes every
//! change to the pipeline's changelog topic. The changes made while processing a batch apply only
//! if the call returns; a panic discards them (and the host then isolates the record
//! responsible, whose own changes are discarded too).
//!
//! Raw access is [`get`], [`put`], [`delete`], [`scan`]; [`Value`] is a typed cell per key under
//! a name, with values encoded by [`StateValue`].
//!
//! ```ignore
//! use sluice_plugin::state::{StatefulTransform, Value};
//! use sluice_plugin::{Config, Emitter, Record, export_stateful_transform};
//!
//! struct Count { counts: Value<u64> }
//!
//! impl StatefulTransform for Count {
//!     fn init(_: &Config) -> Result<Self, String> {
//!         Ok(Count { counts: Value::new("count") })
//!     }
//!     fn transform(&mut self, r: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
//!         let key = r.key.ok_or("no key")?;
//!         let n = self.counts.update(key, |n| n.unwrap_or(0) + 1);
//!         out.record().key(Some(key)).value(Some(n.to_string().as_bytes())).emit();
//!         Ok(())
//!     }
//! }
//!
//! export_stateful_transform!(Count);
//! ```

use std::marker::PhantomData;

use crate::timers::Timer;
use crate::{Config, Emitter, Record};

/// Bindings of the `stateful-transform` world.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "stateful-transform",
        pub_export_macro: true,
        export_macro_name: "__export_stateful_transform_world",
        default_bindings_module: "sluice_plugin::state::bindings",
        runtime_path: "sluice_plugin::__wit_bindgen::rt",
        with: {
            "sluice:plugin/types@0.3.0": crate::bindings::sluice::plugin::types,
            "sluice:plugin/host@0.3.0": crate::bindings::sluice::plugin::host,
            "sluice:plugin/json@0.3.0": crate::bindings::sluice::plugin::json,
        },
    });
}

use bindings::sluice::plugin::state as host_state;

/// A transform with keyed state and timers. Like [`crate::Transform`], plus [`on_timer`]
/// for the timers it registered ([`crate::timers::register`]).
///
/// [`on_timer`]: StatefulTransform::on_timer
pub trait StatefulTransform: Sized + 'static {
    /// Builds the plugin from its config table (an `Err` refuses the config). `init` runs before
    /// any partition is assigned, so it cannot read state: check state written by an older
    /// version when reading it (see [`StateValue::decode`]).
    fn init(config: &Config) -> Result<Self, String>;

    /// Transforms one record, reading and writing state of the record's partition.
    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String>;

    /// Handles one fired timer: outputs go through the same router and limits as a record's; an
    /// error dead-letters the timer (as a record with its key and headers naming it).
    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let _ = (timer, out);
        Ok(())
    }
}

// A write-back cache for the length of one call: a key is read from the host at most once per
// call and every write is sent in one `put-many` when the call ends, so a plugin that gets and puts
// per record crosses the boundary once per distinct key, not twice per record. The host applies
// the writes only if the call returns, as it would have applied them one by one; a trap drops the
// cache with the instance.
//
// A key's slot is found by one hash lookup; its value buffer is overwritten in place, and typed
// keys ([`Value`]) are built in a reused buffer, so a get + put of a key already seen in the call
// allocates nothing.
thread_local! {
    static CACHE: std::cell::RefCell<CallCache> = std::cell::RefCell::new(CallCache::default());
}

#[derive(Default)]
struct CallCache {
    /// Slot of each key read or written in this call.
    index: std::collections::HashMap<Vec<u8>, usize, KeyHash>,
    slots: Vec<Slot>,
    /// Slots written since the last flush, in the order first written.
    dirty: Vec<usize>,
    /// Reused for the store keys of [`Value`] (taken out while in use).
    key: Vec<u8>,
    /// Reused for `put-many`'s arguments.
    data: Vec<u8>,
    words: Vec<u8>,
}

/// Hashes the call cache's keys: FxHash's multiply-rotate over 8-byte words (SipHash, std's
/// default, cost more than the rest of a cached get + put), seeded per instance from WASI
/// random and finished with murmur3's avalanche, so that neither full nor bucket collisions can
/// be computed in advance from the keys alone.
#[derive(Clone, Copy)]
struct KeyHash(u64);

impl Default for KeyHash {
    fn default() -> Self {
        use std::hash::BuildHasher;
        KeyHash(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u32))
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

struct Slot {
    key: Vec<u8>,
    /// The value's bytes (kept, and reused, when absent).
    value: Vec<u8>,
    present: bool,
    dirty: bool,
}

impl Slot {
    fn get(&self) -> Option<&[u8]> {
        self.present.then_some(self.value.as_slice())
    }
}

impl CallCache {
    /// The slot of `key`, read from the host when the call has not seen it (`load`), or else
    /// made empty (a write that does not need the old value).
    fn slot(&mut self, key: &[u8], load: bool) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let (value, present) = match load.then(|| host_state::get(key)).flatten() {
            Some(v) => (v, true),
            None => (Vec::new(), false),
        };
        let i = self.slots.len();
        self.slots.push(Slot {
            key: key.to_vec(),
            value,
            present,
            dirty: false,
        });
        self.index.insert(key.to_vec(), i);
        i
    }

    /// Writes slot `i`: `fill` writes the new value into the (cleared) buffer; `None` deletes.
    fn write(&mut self, i: usize, fill: Option<impl FnOnce(&mut Vec<u8>)>) {
        let slot = &mut self.slots[i];
        slot.value.clear();
        slot.present = fill.is_some();
        if let Some(fill) = fill {
            fill(&mut slot.value);
        }
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(i);
        }
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        let i = self.slot(key, false);
        self.write(
            i,
            value.map(|v| move |buf: &mut Vec<u8>| buf.extend_from_slice(v)),
        );
    }
}

/// Sends the call's writes to the host (done by the SDK when `process` or `on-timer` ends, and
/// before a scan); the host applies them when the call returns.
pub fn flush() {
    CACHE.with(|c| {
        let c = &mut *c.borrow_mut();
        if c.dirty.is_empty() {
            return;
        }
        let (data, words) = (&mut c.data, &mut c.words);
        data.clear();
        // 4 words per entry, little-endian: key span, value span.
        words.clear();
        for i in c.dirty.drain(..) {
            let slot = &mut c.slots[i];
            slot.dirty = false;
            let key = [data.len() as u32, slot.key.len() as u32];
            data.extend_from_slice(&slot.key);
            let value = match slot.get() {
                Some(v) => {
                    let span = [data.len() as u32, v.len() as u32];
                    data.extend_from_slice(v);
                    span
                }
                None => [0, sluice_abi::NONE],
            };
            sluice_abi::push_words(words, &[key[0], key[1], value[0], value[1]]);
        }
        host_state::put_many(data, words);
    })
}

/// Ends a call: flushes its writes and forgets what it read (another call may see other state).
pub(crate) fn end_call() {
    flush();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.index.clear();
        c.slots.clear();
    });
}

/// The value stored under `key`, if any.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let i = c.slot(key, true);
        c.slots[i].get().map(<[u8]>::to_vec)
    })
}

/// Stores `value` under `key`. Past the state limit the host fails the record with `limit:state`.
pub fn put(key: &[u8], value: &[u8]) {
    CACHE.with(|c| c.borrow_mut().put(key, Some(value)));
}

/// Removes `key`.
pub fn delete(key: &[u8]) {
    CACHE.with(|c| c.borrow_mut().put(key, None));
}
/// Up to `limit` entries whose keys start with `prefix`, in ascending key order, after `after`.
pub fn scan(prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    flush();
    host_state::scan(prefix, after, limit)
}

/// Every entry whose key starts with `prefix`, paging through [`scan`].
pub fn scan_all(prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        let page = scan(prefix, all.last().map(|(k, _)| k.as_slice()), 1000);
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// A value as stored in state: how it is written to and read from bytes.
pub trait StateValue: Sized {
    /// Encodes the value.
    fn encode(&self) -> Vec<u8>;
    /// Encodes the value at the end of `out` (the SDK passes a reused buffer, so a value that
    /// implements this writes without allocating; the default calls [`StateValue::encode`]).
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
    /// Decodes a value; `None` when the bytes are not one (for example written by an older
    /// version of the plugin).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

macro_rules! le_numbers {
    ($($t:ty),*) => {$(
        impl StateValue for $t {
            fn encode(&self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn encode_into(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
le_numbers!(u32, u64, i32, i64, f64);

impl StateValue for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl StateValue for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl<A: StateValue, B: StateValue> StateValue for (A, B) {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
    fn encode_into(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        self.0.encode_into(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.1.encode_into(out);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let a = A::decode(bytes.get(4..4 + len)?)?;
        Some((a, B::decode(&bytes[4 + len..])?))
    }
}

/// A typed value per key, stored under `name` (so several kinds of value share the store).
pub struct Value<T> {
    prefix: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T: StateValue> Value<T> {
    /// Values named `name`.
    pub fn new(name: &str) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        Value {
            prefix,
            _type: PhantomData,
        }
    }

    /// The store key of `key`.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// The value of `key` (`None` when absent or not decodable).
    pub fn get(&self, key: &[u8]) -> Option<T> {
        let (_, old) = self.load(key, true);
        old
    }

    /// Sets the value of `key`.
    pub fn set(&self, key: &[u8], value: &T) {
        let (i, _) = self.load(key, false);
        CACHE.with(|c| {
            c.borrow_mut()
                .write(i, Some(|buf: &mut Vec<u8>| value.encode_into(buf)))
        });
    }

    /// Removes the value of `key`.
    pub fn remove(&self, key: &[u8]) {
        let (i, _) = self.load(key, false);
        CACHE.with(|c| c.borrow_mut().write(i, None::<fn(&mut Vec<u8>)>));
    }

    /// Replaces the value of `key` with `f(old)` and returns it.
    pub fn update(&self, key: &[u8], f: impl FnOnce(Option<T>) -> T) -> T {
        let (i, old) = self.load(key, true);
        // `f` runs outside the cache: it may use state itself.
        let new = f(old);
        CACHE.with(|c| {
            c.borrow_mut()
                .write(i, Some(|buf: &mut Vec<u8>| new.encode_into(buf)))
        });
        new
    }

    /// The call's slot of `key` (its store key built in the cache's reused buffer) and, when
    /// `decode`, its decoded value (read from the host if the call has not seen it).
    fn load(&self, key: &[u8], decode: bool) -> (usize, Option<T>) {
        CACHE.with(|c| {
            let c = &mut *c.borrow_mut();
            let mut k = std::mem::take(&mut c.key);
            k.clear();
            k.extend_from_slice(&self.prefix);
            k.extend_from_slice(key);
            let i = c.slot(&k, decode);
            c.key = k;
            let old = if decode {
                c.slots[i].get().and_then(T::decode)
            } else {
                None
            };
            (i, old)
        })
    }

    /// Every `(key, value)` of this name whose key starts with `prefix`.
    pub fn entries(&self, prefix: &[u8]) -> Vec<(Vec<u8>, T)> {
        scan_all(&self.key(prefix))
            .into_iter()
            .filter_map(|(k, v)| Some((k[self.prefix.len()..].to_vec(), T::decode(&v)?)))
            .collect()
    }
}

#[doc(hidden)]
pub fn __init<T: StatefulTransform>(config: Vec<(String, String)>) -> Result<(), String> {
    let plugin = T::init(&Config::new(config))?;
    crate::timers::set_instance(Box::new(plugin));
    Ok(())
}

#[doc(hidden)]
pub fn __process<T: StatefulTransform>(
    batch: crate::bindings::sluice::plugin::types::InputBatch,
) -> crate::bindings::sluice::plugin::types::OutputBatch {
    let input = sluice_abi::InputBatch {
        data: batch.data,
        records: batch.records,
        headers: batch.headers,
        topics: batch.topics,
    };
    let out = crate::timers::with_instance::<T, _>(|plugin| {
        // Host JSON access (`json`) reads before the first record and writes after the last.
        crate::json::begin(&input);
        let mut out = crate::timers::run_records(plugin, &input);
        crate::json::finish(&mut out);
        out
    });
    end_call();
    crate::to_wit(out)
}

/// Exports a [`StatefulTransform`] implementation as the plugin's component exports (world
/// `stateful-transform`; build with the SDK's `stateful` feature).
#[macro_export]
macro_rules! export_stateful_transform {
    ($plugin:ty) => {
        struct __SluiceStatefulExport;

        impl $crate::state::bindings::Guest for __SluiceStatefulExport {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::state::__init::<$plugin>(config)
            }

            fn process(
                batch: $crate::bindings::sluice::plugin::types::InputBatch,
            ) -> $crate::bindings::sluice::plugin::types::OutputBatch {
                $crate::state::__process::<$plugin>(batch)
            }

            fn on_timer(
                fired: $crate::state::bindings::sluice::plugin::timers::FiredTimers,
            ) -> $crate::bindings::sluice::plugin::types::OutputBatch {
                $crate::timers::__on_timer::<$plugin>(fired)
            }
        }

        $crate::state::bindings::__export_stateful_transform_world!(__SluiceStatefulExport with_types_in $crate::state::bindings);
    };
}
