//! A stateful test plugin: counts records per key in the host's state (issue 15).
//!
//! Config:
//! - `mode = "count"` (default): for each keyed record, emits the key with the new count as a
//!   decimal value. `storage = "memory"` counts in the plugin's own memory instead (the
//!   stateless baseline of the benchmark; lost on every trap).
//! - `mode = "window"`: counts per key in tumbling event-time windows of `window_ms` (default
//!   60000); when a window's timer fires, emits the key with `start,count`.
//! - `mode = "remind"`: for each keyed record, registers a processing-time timer at its
//!   timestamp + `remind_after_ms` (default 1000) and emits nothing; when the timer fires, emits
//!   the key with the value `reminder`.
//! - `panic_on = "VALUE"`: panics on a record with that value, after writing its count (the
//!   host must discard that write).
//! - `refuse_timer_of = "KEY"` / `panic_timer_of = "KEY"` (window mode): when the window of that
//!   key fires, `on-timer` rejects it (an error) or panics (a trap): the host must dead-letter
//!   that timer alone.

use std::collections::HashMap;

use sluice_plugin::state::{StatefulTransform, Value};
use sluice_plugin::timers::{self, Domain, Timer};
use sluice_plugin::window::{Count, Windows};
use sluice_plugin::{Config, Emitter, Record, export_stateful_transform};

enum Mode {
    Count,
    Memory(HashMap<Vec<u8>, u64>),
    Window(Windows<Count>),
    /// Milliseconds from a record's timestamp to its processing-time reminder.
    Remind(i64),
}

struct KeyCounter {
    mode: Mode,
    counts: Value<u64>,
    panic_on: Option<Vec<u8>>,
    refuse_timer_of: Option<Vec<u8>>,
    panic_timer_of: Option<Vec<u8>>,
}

impl StatefulTransform for KeyCounter {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = match (config.get("mode").unwrap_or("count"), config.get("storage")) {
            ("count", Some("memory")) => Mode::Memory(HashMap::new()),
            ("count", _) => Mode::Count,
            ("window", _) => {
                let size = config
                    .get("window_ms")
                    .unwrap_or("60000")
                    .parse()
                    .map_err(|e| format!("window_ms: {e}"))?;
                Mode::Window(Windows::tumbling("w", size, Count))
            }
            ("remind", _) => Mode::Remind(
                config
                    .get("remind_after_ms")
                    .unwrap_or("1000")
                    .parse()
                    .map_err(|e| format!("remind_after_ms: {e}"))?,
            ),
            (other, _) => return Err(format!("unknown mode `{other}`")),
        };
        Ok(KeyCounter {
            mode,
            counts: Value::new("count"),
            panic_on: config.get("panic_on").map(|v| v.as_bytes().to_vec()),
            refuse_timer_of: config.get("refuse_timer_of").map(|v| v.as_bytes().to_vec()),
            panic_timer_of: config.get("panic_timer_of").map(|v| v.as_bytes().to_vec()),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let key = record.key.ok_or("the record has no key")?;
        let n = match &mut self.mode {
            Mode::Count => self.counts.update(key, |n| n.unwrap_or(0) + 1),
            Mode::Memory(counts) => {
                let n = counts.entry(key.to_vec()).or_insert(0);
                *n += 1;
                *n
            }
            Mode::Window(windows) => {
                let ts = record.timestamp.ok_or("the record has no timestamp")?;
                windows.add(key, ts, &());
                return Ok(());
            }
            Mode::Remind(after) => {
                let ts = record.timestamp.ok_or("the record has no timestamp")?;
                timers::register(Domain::ProcessingTime, key, ts + *after);
                return Ok(());
            }
        };
        if self.panic_on.as_deref().is_some() && self.panic_on.as_deref() == record.value {
            panic!("poisoned record for key {}", String::from_utf8_lossy(key));
        }
        out.record()
            .key(Some(key))
            .value(Some(n.to_string().as_bytes()))
            .emit();
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if let Mode::Remind(_) = self.mode {
            if timer.domain == Domain::ProcessingTime {
                out.record()
                    .key(Some(timer.key))
                    .value(Some(b"reminder"))
                    .emit();
            }
            return Ok(());
        }
        if let Mode::Window(windows) = &self.mode
            && let Some(fired) = windows.fire(timer)
        {
            let key = String::from_utf8_lossy(&fired.key);
            if self.refuse_timer_of.as_deref() == Some(&fired.key[..]) {
                return Err(format!("refused the window of key {key}"));
            }
            if self.panic_timer_of.as_deref() == Some(&fired.key[..]) {
                panic!("poisoned window of key {key}");
            }
            out.record()
                .key(Some(&fired.key))
                .value(Some(
                    format!("{},{}", fired.window.start, fired.value).as_bytes(),
                ))
                .timestamp(fired.window.end - 1)
                .emit();
        }
        Ok(())
    }
}

export_stateful_transform!(KeyCounter);
