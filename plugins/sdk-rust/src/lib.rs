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

pub use sluice_abi::{Header, Headers, InputRecord as Record};
use sluice_abi::{InputBatch, OutputBatch};

extern crate self as sluice_plugin;

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

/// Where a transform writes the outputs of the record it is given.
pub struct Emitter<'a> {
    out: &'a mut OutputBatch,
    input: u32,
}

impl<'a> Emitter<'a> {
    /// Sends `record` on unchanged (key, value, headers, timestamp) to the default output.
    pub fn forward(&mut self, record: &Record<'_>) {
        self.out.push(
            self.input,
            record.key,
            record.value,
            record.headers.iter(),
            record.timestamp,
            None,
        );
    }

    /// Starts an output record; nothing is emitted until [`OutputBuilder::emit`].
    pub fn record(&mut self) -> OutputBuilder<'_> {
        let first_header = self.out.header_count();
        OutputBuilder {
            out: self.out,
            input: self.input,
            key: (0, sluice_abi::NONE),
            value: (0, sluice_abi::NONE),
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
        run_batch(plugin, &input)
    });
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
    let mut out = OutputBatch::default();
    out.data.reserve(input.data.len());
    out.records.reserve(input.len() * sluice_abi::OUTPUT_WORDS);
    out.headers.reserve(input.headers.len());
    for (i, record) in input.iter().enumerate() {
        let marks = (out.data.len(), out.records.len(), out.headers.len());
        let mut emitter = Emitter {
            out: &mut out,
            input: i as u32,
        };
        if let Err(message) = plugin.transform(&record, &mut emitter) {
            out.data.truncate(marks.0);
            out.records.truncate(marks.1);
            out.headers.truncate(marks.2);
            out.reject(i as u32, message);
        }
    }
    out
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
}
