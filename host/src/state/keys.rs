//! How state, timers and the watermark are laid out in one partition's store and in its changelog.
//!
//! Every entry of a store has an *internal key*: a kind byte, then for state and timers the
//! plugin's name (two length bytes, big-endian, then the UTF-8 name) so that two stateful plugins
//! of one chain never see each other's keys, and a hot-swapped version of a plugin (same name)
//! reads what the old one wrote.
//!
//! | kind | rest of the key                                        | value          |
//! |------|--------------------------------------------------------|----------------|
//! | 0    | name, the plugin's key                                 | the value      |
//! | 1    | name, domain byte, time (8 bytes, order-preserving), key | empty        |
//! | 2    | `w`                                                    | largest record timestamp seen (8 bytes) |
//!
//! A changelog record's key is the input topic (two length bytes, then the name) followed by the
//! internal key, so one changelog partition can hold the stores of that partition of every input
//! topic; a delete is a tombstone (no value).

/// Kind byte of a plugin's state entry.
pub(crate) const STATE: u8 = 0;
/// Kind byte of a timer.
pub(crate) const TIMER: u8 = 1;
/// The key under which the partition's largest record timestamp is kept.
pub(crate) const MAX_TIMESTAMP: &[u8] = &[2, b'w'];

fn with_namespace(kind: u8, ns: &str, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + ns.len() + extra);
    k.push(kind);
    k.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    k.extend_from_slice(ns.as_bytes());
    k
}

/// The internal key of `key` in plugin `ns`'s state.
pub(crate) fn state_key(ns: &str, key: &[u8]) -> Vec<u8> {
    let mut k = with_namespace(STATE, ns, key.len());
    k.extend_from_slice(key);
    k
}

/// Length of the part of a state key before the plugin's own key.
pub(crate) fn state_header_len(ns: &str) -> usize {
    3 + ns.len()
}

/// Time as 8 bytes that sort as the signed number does.
fn time_bytes(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// The internal key of a timer of plugin `ns`.
pub(crate) fn timer_key(ns: &str, domain: u8, at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = timer_prefix(ns, domain);
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(key);
    k
}

/// The prefix of every timer of plugin `ns` in `domain`, in order of time.
pub(crate) fn timer_prefix(ns: &str, domain: u8) -> Vec<u8> {
    let mut k = with_namespace(TIMER, ns, 9);
    k.push(domain);
    k
}

/// The time and key of a timer from its internal key (`prefix_len` = the length of its
/// [`timer_prefix`]).
pub(crate) fn parse_timer(internal: &[u8], prefix_len: usize) -> Option<(i64, &[u8])> {
    let time = internal.get(prefix_len..prefix_len + 8)?;
    let at = (u64::from_be_bytes(time.try_into().ok()?) ^ (1 << 63)) as i64;
    Some((at, &internal[prefix_len + 8..]))
}

/// The changelog key of an internal key of input topic `topic`'s store.
pub(crate) fn changelog_key(topic: &str, internal: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + internal.len());
    k.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    k.extend_from_slice(topic.as_bytes());
    k.extend_from_slice(internal);
    k
}

/// Splits a changelog key into the input topic and the internal key.
pub(crate) fn split_changelog_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    let topic = key.get(2..2 + len)?;
    Some((topic, &key[2 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_sort_by_time_including_negative_ones() {
        let keys: Vec<Vec<u8>> = [-5i64, -1, 0, 3, i64::MAX]
            .iter()
            .map(|t| timer_key("p", 0, *t, b"k"))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let prefix = timer_prefix("p", 0).len();
        assert_eq!(parse_timer(&keys[0], prefix), Some((-5, &b"k"[..])));
    }

    #[test]
    fn namespaces_do_not_overlap() {
        // "ab" + key "c" must differ from "a" + key "bc".
        assert_ne!(state_key("ab", b"c"), state_key("a", b"bc"));
        let ck = changelog_key("orders", &state_key("p", b"k"));
        let (topic, internal) = split_changelog_key(&ck).unwrap();
        assert_eq!(topic, b"orders");
        assert_eq!(internal, state_key("p", b"k"));
    }
}
