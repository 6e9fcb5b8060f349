//! Timers of a [`StatefulTransform`] (feature `stateful`): register a timer for a key, and the
//! host calls [`StatefulTransform::on_timer`] when it fires, in the same batch machinery as
//! records (router, limits, dead-letter topic). Timers are durable like state.
//!
//! An event-time timer fires once the partition's [`watermark`] (the largest record timestamp
//! seen minus the pipeline's allowed lateness) reaches its time; a processing-time timer at the
//! first batch boundary after the host's clock passes it.

use std::any::Any;
use std::cell::RefCell;

use sluice_abi::{InputBatch, OutputBatch};

use crate::state::StatefulTransform;
use crate::state::bindings::sluice::plugin::timers as host_timers;

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// The partition's watermark.
    EventTime,
    /// The host's wall clock.
    ProcessingTime,
}

impl Domain {
    fn wit(self) -> host_timers::TimeDomain {
        match self {
            Domain::EventTime => host_timers::TimeDomain::EventTime,
            Domain::ProcessingTime => host_timers::TimeDomain::ProcessingTime,
        }
    }
}

/// A fired timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer<'a> {
    /// The key it was registered for.
    pub key: &'a [u8],
    /// Its clock.
    pub domain: Domain,
    /// Its time (ms since the Unix epoch).
    pub time: i64,
}

/// Registers a timer for `key` at `at` (ms since the Unix epoch); the same (domain, key, at)
/// twice is one timer.
pub fn register(domain: Domain, key: &[u8], at: i64) {
    host_timers::register(domain.wit(), key, at)
}

/// Cancels the timer registered with the same (domain, key, at), if any.
pub fn cancel(domain: Domain, key: &[u8], at: i64) {
    host_timers::cancel(domain.wit(), key, at)
}

/// The partition's watermark (ms), or `i64::MIN` before any record.
pub fn watermark() -> i64 {
    host_timers::watermark()
}

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

pub(crate) fn set_instance(plugin: Box<dyn Any>) {
    INSTANCE.with(|i| *i.borrow_mut() = Some(plugin));
}

pub(crate) fn with_instance<T: StatefulTransform, R>(f: impl FnOnce(&mut T) -> R) -> R {
    INSTANCE.with(|i| {
        let mut slot = i.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<T>())
            .expect("the host calls init before process");
        f(plugin)
    })
}

/// Runs `plugin` over every record of `input`; an error discards that record's outputs.
pub fn run_records<T: StatefulTransform>(plugin: &mut T, input: &InputBatch) -> OutputBatch {
    let mut records = input.iter();
    crate::run_each(input, input.len(), |_, out| {
        let record = records.next().expect("one record per index");
        plugin.transform(&record, out)
    })
}

/// Runs `plugin` over fired timers (`data`, and 5 little-endian words per timer as in the WIT).
pub fn run_timers<T: StatefulTransform>(plugin: &mut T, data: &[u8], words: &[u8]) -> OutputBatch {
    let timers: Vec<Timer<'_>> = words
        .chunks_exact(5 * sluice_abi::WORD_BYTES)
        .map(|w| {
            let w: [u32; 5] = sluice_abi::words(w);
            let (start, len) = (w[0] as usize, w[1] as usize);
            Timer {
                key: data.get(start..start + len).unwrap_or_default(),
                domain: if w[2] == 0 {
                    Domain::EventTime
                } else {
                    Domain::ProcessingTime
                },
                time: (w[3] as u64 | ((w[4] as u64) << 32)) as i64,
            }
        })
        .collect();
    // Timers have no input records: nothing can be forwarded from an input batch.
    let no_input = InputBatch::default();
    crate::run_each(&no_input, timers.len(), |i, out| {
        plugin.on_timer(&timers[i as usize], out)
    })
}

#[doc(hidden)]
pub fn __on_timer<T: StatefulTransform>(
    fired: host_timers::FiredTimers,
) -> crate::bindings::sluice::plugin::types::OutputBatch {
    let out = with_instance::<T, _>(|plugin| run_timers(plugin, &fired.data, &fired.timers));
    crate::state::end_call();
    crate::to_wit(out)
}
