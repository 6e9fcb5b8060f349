//! Rust guest SDK for Sluice transforms.
//!
//! Implement [`Transform`] — a function from one record to zero or more outputs, or an error that
//! sends that record to the dead-letter topic — and export it with [`export_transform!`]. The SDK
//! runs the batch loop over the host's batch encoding (see `wit/sluice.wit`): records are borrowed
//! slices of the batch buffer, and outputs are written straight into the reply buffer.
//!
//! ```ignore
//! use sluice_plugin::{export_transform, Config, Emitter, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!
//!     fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
//!         let value = record.value.ok_or("record has no value")?;
//!         out.record().key(record.key).value(Some(&value.to_ascii_uppercase())).emit();
//!         Ok(())
//!     }
//! }
//!
//! export_transform!(Upper);
//! ```

use std::any::Any;
use std::cell::RefCell;

use sluice_abi::{HEADER_BYTES, HEADER_WORDS, InputBatch, NONE, OUTPUT_BYTES, OutputBatch};
pub use sluice_abi::{Header, Headers, InputRecord as Record};
/// Word-list helpers for plugins that call the raw [`bindings`] (every list of words in the
/// contract is a `list<u8>` of little-endian `u32` words).
pub use sluice_abi::{from_words, iter_words, word};

extern crate self as sluice_plugin;

pub mod json;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings generated from `wit/sluice.wit`.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "sluice_plugin::bindings",
        runtime_path: "sluice_plugin::__wit_bindgen::rt",
    });
}

use bindings::sluice::plugin::types;

// Keyed state, timers and windows (issue 15): the `stateful-transform` world, behind a feature so
// that a plain plugin's component never imports state.
#[cfg(feature = "stateful")]
pub mod state;
#[cfg(feature = "stateful")]
pub mod timers;
#[cfg(feature = "stateful")]
pub mod window;

/// A transform plugin: created once per instance by [`Transform::init`], then called for every
/// record in order.
pub trait Transform: Sized + 'static {
    /// Builds the plugin from its config table. An `Err` refuses the config; the host reports the
    /// message and does not use this plugin.
    fn init(config: &Config) -> Result<Self, String>;

    /// Transforms one record: write 0..N outputs to `out`, or return an error to send this record
    /// to the dead-letter topic with the message as its reason (outputs already written for it are
    /// discarded).
    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String>;
}

/// The plugin's config: string pairs from the pipeline config, in file order.
#[derive(Clone, Debug, Default)]
pub struct Config(Vec<(String, String)>);

impl Config {
    /// Builds a config from pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config(pairs)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The output batch being written, plus input bytes that forwarded records reference but that are
/// not copied yet: `pending` is a range of the input data that belongs, in order, at the end of
/// `out.data`. Consecutive forwards of records laid out back to back in the input (as the host
/// lays them out) extend the range instead of copying span by span, so an identity transform
/// copies a whole batch's bytes with one `extend_from_slice`. Anything else that writes to
/// `out.data` flushes the range first.
struct Sink {
    out: OutputBatch,
    pending: (usize, usize),
}

impl Sink {
    fn flush(&mut self, src: &[u8]) {
        let (lo, hi) = self.pending;
        if hi > lo {
            self.out.data.extend_from_slice(&src[lo..hi]);
        }
        self.pending = (hi, hi);
    }
}

/// Where a transform writes the outputs of the record it is given.
pub struct Emitter<'a> {
    sink: &'a mut Sink,
    batch: &'a InputBatch,
    input: u32,
}

impl<'a> Emitter<'a> {
    /// Sends `record` on unchanged (key, value, headers, timestamp) to the default output.
    pub fn forward(&mut self, record: &Record<'_>) {
        if !self.forward_spans(record) {
            self.sink.flush(&self.batch.data);
            self.sink.out.push(
                self.input,
                record.key,
                record.value,
                record.headers.iter(),
                record.timestamp,
                None,
            );
        }
    }

    /// The fast path of [`Emitter::forward`]: when `record`'s key, value and headers are views of
    /// this batch's data laid out back to back (key, value, then each header's name and value),
    /// the output reuses their layout, shifted, and the bytes join the pending copy. Returns
    /// false, having written nothing, for anything else (a `Record` has public fields, so a
    /// plugin can pass views of other buffers), which then takes the span-by-span path.
    fn forward_spans(&mut self, record: &Record<'_>) -> bool {
        let src: &[u8] = &self.batch.data;
        let (header_words, header_data) = record.headers.raw();
        if !header_words.is_empty() && !std::ptr::eq(header_data, src) {
            return false;
        }
        let span = |bytes: Option<&[u8]>| match bytes {
            Some(b) => offset_in(src, b).map(|off| (off, b.len() as u32)),
            None => Some((0, NONE)),
        };
        let (Some(key), Some(value)) = (span(record.key), span(record.value)) else {
            return false;
        };
        let sink = &mut *self.sink;
        let lo = if key.1 != NONE {
            key.0
        } else if value.1 != NONE {
            value.0
        } else if !header_words.is_empty() {
            sluice_abi::word(header_words, 0) as usize
        } else {
            sink.pending.1
        };
        // Where src[lo] lands: after the output data and the bytes still pending, whether this
        // record extends the pending range or starts a new one after flushing it.
        let base = sink.out.data.len() + (sink.pending.1 - sink.pending.0);
        let shift = |off: usize, len: u32| -> (u32, u32) {
            if len == NONE {
                (0, NONE)
            } else {
                ((off - lo + base) as u32, len)
            }
        };
        let mut end = lo;
        if !adjoin(&mut end, key.0, key.1) || !adjoin(&mut end, value.0, value.1) {
            return false;
        }
        let out = &mut sink.out;
        let first_header = out.header_count();
        let header_mark = out.headers.len();
        for h in header_words.chunks_exact(HEADER_BYTES) {
            let h: [u32; HEADER_WORDS] = sluice_abi::words(h);
            let (name_off, name_len) = (h[0] as usize, h[1]);
            let fits = name_len != NONE
                && adjoin(&mut end, name_off, name_len)
                && adjoin(&mut end, h[2] as usize, h[3])
                && end <= src.len()
                // Header names must read as UTF-8, as `Headers::get` requires (it reads
                // others as "").
                && {
                    let name = &src[name_off..name_off + name_len as usize];
                    name.is_ascii() || std::str::from_utf8(name).is_ok()
                };
            if !fits {
                out.headers.truncate(header_mark);
                return false;
            }
            let (name_off, name_len) = shift(name_off, name_len);
            let (value_off, value_len) = shift(h[2] as usize, h[3]);
            sluice_abi::push_header_words(
                &mut out.headers,
                [name_off, name_len, value_off, value_len],
            );
        }
        if end > src.len() {
            out.headers.truncate(header_mark);
            return false;
        }
        out.push_record(
            self.input,
            shift(key.0, key.1),
            shift(value.0, value.1),
            first_header,
            record.timestamp,
            None,
        );
        if sink.pending.1 != lo {
            sink.flush(src);
            sink.pending = (lo, lo);
        }
        sink.pending.1 = end;
        true
    }

    /// Starts an output record; nothing is emitted until [`OutputBuilder::emit`].
    pub fn record(&mut self) -> OutputBuilder<'_> {
        // The builder appends to the output data: bytes forwarded before it go first.
        self.sink.flush(&self.batch.data);
        let out = &mut self.sink.out;
        let first_header = out.header_count();
        OutputBuilder {
            out,
            input: self.input,
            key: (0, NONE),
            value: (0, NONE),
            first_header,
            timestamp: None,
            output: None,
        }
    }
}

/// One output record being built. Fields not set are absent; the timestamp defaults to the input's.
#[must_use = "an output is only sent by calling .emit()"]
pub struct OutputBuilder<'a> {
    out: &'a mut OutputBatch,
    input: u32,
    key: (u32, u32),
    value: (u32, u32),
    first_header: u32,
    timestamp: Option<i64>,
    output: Option<u32>,
}

impl OutputBuilder<'_> {
    /// Sets the key (`None` = Kafka null).
    pub fn key(mut self, key: Option<&[u8]>) -> Self {
        self.key = self.out.push_bytes(key);
        self
    }

    /// Sets the value (`None` = Kafka null, a tombstone).
    pub fn value(mut self, value: Option<&[u8]>) -> Self {
        self.value = self.out.push_bytes(value);
        self
    }

    /// Adds a header.
    pub fn header(self, name: &str, value: Option<&[u8]>) -> Self {
        self.out.push_header(Header { name, value });
        self
    }

    /// Adds every header of `headers` (for example the input's).
    pub fn headers(self, headers: &Headers<'_>) -> Self {
        for h in headers.iter() {
            self.out.push_header(h);
        }
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Sends the record to the named output declared in the pipeline config instead of the
    /// default one.
    pub fn to(mut self, output: &str) -> Self {
        self.output = Some(self.out.output_index(output));
        self
    }

    /// Emits the record.
    pub fn emit(self) {
        self.out.push_record(
            self.input,
            self.key,
            self.value,
            self.first_header,
            self.timestamp,
            self.output,
        );
    }
}

/// Structured logging into the host's log, tagged with the plugin's name.
pub mod log {
    use super::bindings::sluice::plugin::host::{self, Level};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        host::log(Level::Debug, message)
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        host::log(Level::Info, message)
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        host::log(Level::Warn, message)
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        host::log(Level::Error, message)
    }
}

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn __init<T: Transform>(config: Vec<(String, String)>) -> Result<(), String> {
    let plugin = T::init(&Config(config))?;
    INSTANCE.with(|i| *i.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

#[doc(hidden)]
pub fn __process<T: Transform>(batch: types::InputBatch) -> types::OutputBatch {
    let input = InputBatch {
        data: batch.data,
        records: batch.records,
        headers: batch.headers,
        topics: batch.topics,
    };
    let out = INSTANCE.with(|i| {
        let mut slot = i.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<T>())
            .expect("the host calls init before process");
        // Host JSON access (`json`) reads before the first record and writes after the last.
        json::begin(&input);
        let mut out = run_batch(plugin, &input);
        json::finish(&mut out);
        out
    });
    to_wit(out)
}

/// The WIT form of an output batch.
pub(crate) fn to_wit(out: OutputBatch) -> types::OutputBatch {
    types::OutputBatch {
        data: out.data,
        records: out.records,
        headers: out.headers,
        outputs: out.outputs,
        errors: out
            .errors
            .into_iter()
            .map(|e| types::InputError {
                input: e.input,
                message: e.message,
            })
            .collect(),
    }
}

/// Runs `plugin` over every record of `input`; an error discards that record's outputs.
pub fn run_batch<T: Transform>(plugin: &mut T, input: &InputBatch) -> OutputBatch {
    let mut records = input.iter();
    run_each(input, input.len(), |_, out| {
        let record = records.next().expect("one record per index");
        plugin.transform(&record, out)
    })
}

/// The batch loop: calls `each` for items `0..count` (the records of `input`, or a stateful
/// plugin's fired timers) with an [`Emitter`] for that item; an error discards that item's
/// outputs and rejects it. Records forwarded unchanged are copied from `input` in runs.
#[doc(hidden)]
pub fn run_each(
    input: &InputBatch,
    count: usize,
    mut each: impl FnMut(u32, &mut Emitter<'_>) -> Result<(), String>,
) -> OutputBatch {
    let mut sink = Sink {
        out: OutputBatch::default(),
        pending: (0, 0),
    };
    // Sized for an identity: one allocation each, whatever the plugin then does.
    sink.out.data.reserve(input.data.len());
    sink.out.records.reserve(count * OUTPUT_BYTES);
    sink.out.headers.reserve(input.headers.len());
    for i in 0..count as u32 {
        let marks = (
            sink.out.data.len(),
            sink.out.records.len(),
            sink.out.headers.len(),
            sink.pending,
        );
        let mut emitter = Emitter {
            sink: &mut sink,
            batch: input,
            input: i,
        };
        if let Err(message) = each(i, &mut emitter) {
            // Also undoes a flush made during this item: the bytes it copied are cut and the
            // range is pending again.
            sink.out.data.truncate(marks.0);
            sink.out.records.truncate(marks.1);
            sink.out.headers.truncate(marks.2);
            sink.pending = marks.3;
            sink.out.reject(i, message);
        }
    }
    sink.flush(&input.data);
    sink.out
}

/// Appends the span `[off, off + len)` to the run of bytes ending at `end`; false when it does not
/// start there. Absent spans (`NONE`) take no bytes.
#[inline]
fn adjoin(end: &mut usize, off: usize, len: u32) -> bool {
    if len == NONE {
        return true;
    }
    if off != *end {
        return false;
    }
    *end += len as usize;
    true
}

/// The offset of `part` in `whole` when `part` is a view of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let off = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    (off <= whole.len() && part.len() <= whole.len() - off).then_some(off)
}

/// Exports a [`Transform`] implementation as the plugin's component exports.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        struct __SluiceExport;

        impl $crate::bindings::Guest for __SluiceExport {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__init::<$plugin>(config)
            }

            fn process(
                batch: $crate::bindings::sluice::plugin::types::InputBatch,
            ) -> $crate::bindings::sluice::plugin::types::OutputBatch {
                $crate::__process::<$plugin>(batch)
            }
        }

        $crate::bindings::__export_transform_world!(__SluiceExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Split;

    impl Transform for Split {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Split)
        }
        fn transform(&mut self, r: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
            let v = r.value.ok_or("no value")?;
            for part in v.split(|b| *b == b',') {
                out.record()
                    .value(Some(part))
                    .headers(&r.headers)
                    .to("parts")
                    .emit();
            }
            if v.is_empty() {
                return Err("empty".into());
            }
            Ok(())
        }
    }

    #[test]
    fn errors_discard_partial_outputs_and_keep_neighbours() {
        let mut input = InputBatch::default();
        let t = input.topic_index("t");
        input.push(
            None,
            Some(b"a,b"),
            [Header {
                name: "h",
                value: Some(b"1"),
            }],
            None,
            t,
            0,
            0,
        );
        input.push(None, Some(b""), [], None, t, 0, 1);
        input.push(None, None, [], None, t, 0, 2);
        input.push(None, Some(b"c"), [], None, t, 0, 3);
        let out = run_batch(&mut Split, &input);
        out.validate(input.len()).unwrap();
        let values: Vec<_> = out.iter().map(|r| (r.input, r.value.unwrap())).collect();
        assert_eq!(values, vec![(0, &b"a"[..]), (0, b"b"), (3, b"c")]);
        assert_eq!(out.record(0).headers.find("h"), Some(Some(&b"1"[..])));
        assert_eq!(out.outputs, vec!["parts".to_string()]);
        let errs: Vec<_> = out
            .errors
            .iter()
            .map(|e| (e.input, e.message.as_str()))
            .collect();
        assert_eq!(errs, vec![(1, "empty"), (2, "no value")]);
    }

    /// What each record does, keyed by its value's first byte.
    struct Mixed;

    impl Transform for Mixed {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Mixed)
        }
        fn transform(&mut self, r: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
            match r.value.and_then(|v| v.first()) {
                // Forwarded twice, then a new record in between forwards.
                Some(b'2') => {
                    out.forward(r);
                    out.record().value(Some(b"between")).emit();
                    out.forward(r);
                }
                // Forwarded, then rejected: its outputs are discarded, its neighbours kept.
                Some(b'x') => {
                    out.forward(r);
                    out.record().value(Some(b"gone")).emit();
                    return Err("rejected after forwarding".into());
                }
                // A record with the same views but another timestamp and a foreign key.
                Some(b't') => {
                    let changed = Record {
                        timestamp: Some(99),
                        key: Some(b"foreign"),
                        ..*r
                    };
                    out.forward(&changed);
                }
                _ => out.forward(r),
            }
            Ok(())
        }
    }

    /// The same transform written with the span-by-span path only.
    fn expected(input: &InputBatch) -> Vec<Owned> {
        let mut out = Vec::new();
        for r in input.iter() {
            let own = |r: &Record<'_>| Owned {
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
                timestamp: r.timestamp,
            };
            let between = Owned {
                key: None,
                value: Some(b"between".to_vec()),
                headers: vec![],
                timestamp: None,
            };
            match r.value.and_then(|v| v.first()) {
                Some(b'2') => out.extend([own(&r), between, own(&r)]),
                Some(b'x') => {}
                Some(b't') => out.push(own(&Record {
                    timestamp: Some(99),
                    key: Some(b"foreign"),
                    ..r
                })),
                _ => out.push(own(&r)),
            }
        }
        out
    }

    #[derive(Debug, PartialEq)]
    struct Owned {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        timestamp: Option<i64>,
    }

    fn outputs(out: &OutputBatch) -> Vec<Owned> {
        out.iter()
            .map(|r| Owned {
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
                timestamp: r.timestamp,
            })
            .collect()
    }

    fn h<'a>(name: &'a str, value: Option<&'a [u8]>) -> Header<'a> {
        Header { name, value }
    }

    #[test]
    fn forwarding_copies_the_same_records_as_span_by_span() {
        let mut input = InputBatch::default();
        let t = input.topic_index("t");
        input.push(
            Some(b"k0"),
            Some(b"plain"),
            [h("a", Some(b"1"))],
            Some(5),
            t,
            0,
            0,
        );
        input.push(None, None, [], None, t, 0, 1);
        input.push(
            Some(b""),
            Some(b"2x"),
            [h("n", None), h("b", Some(b""))],
            None,
            t,
            0,
            2,
        );
        input.push(
            Some(b"k3"),
            Some(b"x-bad"),
            [h("c", Some(b"3"))],
            None,
            t,
            0,
            3,
        );
        input.push(
            Some(b"k4"),
            Some(b"tt"),
            [h("d", Some(b"4"))],
            Some(7),
            t,
            0,
            4,
        );
        input.push(
            None,
            Some(b"last"),
            [h("\u{e9}", Some(b"5"))],
            None,
            t,
            0,
            5,
        );
        let out = run_batch(&mut Mixed, &input);
        out.validate(input.len()).unwrap();
        assert_eq!(outputs(&out), expected(&input));
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].input, 3);
    }

    struct Identity;

    impl Transform for Identity {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Identity)
        }
        fn transform(&mut self, r: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
            out.forward(r);
            Ok(())
        }
    }

    /// An identity over a batch laid out by the host copies its data buffer as it is (one run of
    /// bytes) and its views unchanged.
    #[test]
    fn identity_copies_the_batch_buffer_whole() {
        let mut input = InputBatch::default();
        let t = input.topic_index("t");
        for i in 0..100u8 {
            let trace = [i];
            let headers = [h("trace", Some(&trace[..])), h("n", None)];
            let key = [b'k', i];
            // Values start with 'v': `expected` models `Mixed`, which keys on the first byte.
            let mut value = [i; 40];
            value[0] = b'v';
            input.push(
                Some(&key),
                Some(&value),
                headers,
                Some(i.into()),
                t,
                0,
                i.into(),
            );
        }
        input.push(None, None, [], None, t, 0, 100);
        let out = run_batch(&mut Identity, &input);
        out.validate(input.len()).unwrap();
        assert_eq!(out.data, input.data);
        assert_eq!(out.headers, input.headers);
        assert_eq!(outputs(&out), expected(&input));
    }

    /// A batch whose spans are not back to back (built by hand, as another host could) takes
    /// the span-by-span path and still forwards the right bytes.
    #[test]
    fn forwarding_out_of_layout_spans_takes_the_slow_path() {
        let mut input = InputBatch::default();
        let t = input.topic_index("t");
        input.push(
            Some(b"key"),
            Some(b"value"),
            [h("hn", Some(b"hv"))],
            None,
            t,
            0,
            0,
        );
        input.push(Some(b"k2"), Some(b"v2"), [], None, t, 0, 1);
        // Record 1's value now points at record 0's key: a gap and an overlap.
        sluice_abi::set_word(&mut input.records, crate::tests::INPUT_VALUE_OFF, 0);
        sluice_abi::set_word(&mut input.records, crate::tests::INPUT_VALUE_OFF + 1, 3);
        // Record 0's header value points before its name.
        sluice_abi::set_word(&mut input.headers, 2, 0);
        let out = run_batch(&mut Mixed, &input);
        out.validate(input.len()).unwrap();
        assert_eq!(outputs(&out), expected(&input));
        assert_eq!(out.record(1).value, Some(&b"key"[..]));
        assert_eq!(out.record(0).headers.find("hn"), Some(Some(&b"ke"[..])));
    }

    /// Word index of record 1's value offset.
    const INPUT_VALUE_OFF: usize = sluice_abi::INPUT_WORDS + 2;
}
