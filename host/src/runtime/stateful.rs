//! The host side of the `state` and `timers` interfaces of the `stateful-transform` world: each
//! call acts on the [`CallState`] the chain attached for the batch's partition (see
//! `crate::state`). A stateful plugin called with no store attached traps with a message that
//! says so.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::instance::PluginState;
use super::stateful_bindings::sluice::plugin::state as wit_state;
use super::stateful_bindings::sluice::plugin::timers as wit_timers;
use crate::state::{CallState, EVENT_TIME, PROCESSING_TIME};

/// True when the component exports `on-timer`: it implements the `stateful-transform` world and
/// runs with its partition's store. Importing `state` alone does not make a plugin stateful: a
/// Rust plugin built in one cargo invocation with a stateful one gets the SDK's `stateful`
/// feature too (cargo unifies features) and so imports `state` without using it; such a plugin
/// runs as a plain transform, and a state call from it traps (no store is attached).
pub(super) fn uses_state(component: &Component, engine: &Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name == "on-timer")
}

const NO_STORE: &str = "this stateful plugin was called without a state store (it runs in a \
                        pipeline, or in `sluice test`, which give it one)";

impl PluginState {
    fn call_state(&mut self) -> wasmtime::Result<&mut CallState> {
        self.state
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg(NO_STORE))
    }
}

/// The spans (2 words each) of the word list `list` of call `call`, `None` for an absent one;
/// a list that is not whole spans of 4-byte words, or a span outside `data`, is a plugin bug and
/// traps.
fn spans(
    call: &str,
    list: &str,
    per: usize,
    data: &[u8],
    words: &[u8],
) -> wasmtime::Result<Vec<Option<(usize, usize)>>> {
    let count = sluice_abi::word_count(list, words)
        .map_err(|e| wasmtime::Error::msg(format!("{call}: {e}")))?;
    if !count.is_multiple_of(per) {
        return Err(wasmtime::Error::msg(format!(
            "{call}: `{list}` must hold {per} words per entry, not {count} words"
        )));
    }
    words
        .chunks_exact(2 * sluice_abi::WORD_BYTES)
        .map(|w| {
            let w: [u32; 2] = sluice_abi::words(w);
            if w[1] == sluice_abi::NONE {
                return Ok(None);
            }
            let (start, len) = (w[0] as usize, w[1] as usize);
            match start.checked_add(len) {
                Some(end) if end <= data.len() => Ok(Some((start, end))),
                _ => Err(wasmtime::Error::msg(format!(
                    "{call}: span {start}+{len} is outside the {} bytes given",
                    data.len()
                ))),
            }
        })
        .collect()
}

impl wit_state::Host for PluginState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.call_state()?.get(&key).map_err(trap)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        put(self.call_state()?, &key, Some(value))
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        put(self.call_state()?, &key, None)
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.call_state()?
            .scan(&prefix, after.as_deref(), limit)
            .map_err(trap)
    }

    fn get_many(&mut self, data: Vec<u8>, keys: Vec<u8>) -> wasmtime::Result<(Vec<u8>, Vec<u8>)> {
        let spans = spans("state.get-many", "keys", 2, &data, &keys)?;
        let state = self.call_state()?;
        let mut out = Vec::new();
        let mut words = Vec::with_capacity(keys.len());
        for span in spans {
            let Some((start, end)) = span else {
                return Err(wasmtime::Error::msg(
                    "state.get-many: a key must be present",
                ));
            };
            match state.get(&data[start..end]).map_err(trap)? {
                Some(v) => {
                    sluice_abi::push_words(&mut words, &[out.len() as u32, v.len() as u32]);
                    out.extend_from_slice(&v);
                }
                None => sluice_abi::push_words(&mut words, &[0, sluice_abi::NONE]),
            }
        }
        Ok((out, words))
    }

    fn put_many(&mut self, data: Vec<u8>, entries: Vec<u8>) -> wasmtime::Result<()> {
        let spans = spans("state.put-many", "entries", 4, &data, &entries)?;
        let state = self.call_state()?;
        for pair in spans.chunks_exact(2) {
            let Some((ks, ke)) = pair[0] else {
                return Err(wasmtime::Error::msg(
                    "state.put-many: a key must be present",
                ));
            };
            let value = pair[1].map(|(vs, ve)| data[vs..ve].to_vec());
            put(state, &data[ks..ke], value)?;
        }
        Ok(())
    }
}

fn put(state: &mut CallState, key: &[u8], value: Option<Vec<u8>>) -> wasmtime::Result<()> {
    state.put(key, value).map_err(trap)
}

/// A failed state operation as a trap; a limit hit stays recognisable (`limit:state`).
fn trap(e: anyhow::Error) -> wasmtime::Error {
    match e.downcast::<crate::state::StateLimitHit>() {
        Ok(hit) => wasmtime::Error::new(hit),
        Err(e) => wasmtime::Error::msg(format!("state store: {e:#}")),
    }
}

fn domain(d: wit_timers::TimeDomain) -> u8 {
    match d {
        wit_timers::TimeDomain::EventTime => EVENT_TIME,
        wit_timers::TimeDomain::ProcessingTime => PROCESSING_TIME,
    }
}

impl wit_timers::Host for PluginState {
    fn register(
        &mut self,
        d: wit_timers::TimeDomain,
        key: Vec<u8>,
        at: i64,
    ) -> wasmtime::Result<()> {
        self.call_state()?
            .timer(domain(d), &key, at, true)
            .map_err(trap)
    }

    fn cancel(&mut self, d: wit_timers::TimeDomain, key: Vec<u8>, at: i64) -> wasmtime::Result<()> {
        self.call_state()?
            .timer(domain(d), &key, at, false)
            .map_err(trap)
    }

    fn watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.call_state()?.watermark())
    }
}

#[cfg(test)]
mod tests {
    use sluice_abi::from_words;

    use super::spans;

    #[test]
    fn word_lists_from_the_plugin_are_checked_before_use() {
        let data = b"keyvalue";
        let entries = from_words(&[0, 3, 3, 5, 0, 3, 0, sluice_abi::NONE]);
        let got = spans("state.put-many", "entries", 4, data, &entries).unwrap();
        assert_eq!(got, [Some((0, 3)), Some((3, 8)), Some((0, 3)), None]);
        // Not whole 4-byte words: a plugin bug, the call traps naming the list.
        let e = spans("state.put-many", "entries", 4, data, &entries[..31]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("state.put-many: `entries` holds 31 bytes, which is not a whole"),
            "{e}"
        );
        // Whole words but not whole entries.
        let e = spans("state.put-many", "entries", 4, data, &entries[..28]).unwrap_err();
        assert!(e.to_string().contains("4 words per entry, not 7"), "{e}");
        // A span past the data.
        let keys = from_words(&[4, 5]);
        let e = spans("state.get-many", "keys", 2, data, &keys).unwrap_err();
        assert!(
            e.to_string().contains("span 4+5 is outside the 8 bytes"),
            "{e}"
        );
    }
}
