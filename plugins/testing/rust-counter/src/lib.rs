//! A per-key counter (the stateful plugin of host/tests/languages.rs, as in Python, JavaScript
//! and Go): emits each key's running count, and when an event-time timer at the end of the
//! record's second fires, that key's count then. Keys are required.

use sluice_plugin::state::{StatefulTransform, get, put};
use sluice_plugin::timers::{self, Domain, Timer};
use sluice_plugin::{Config, Emitter, Record, export_stateful_transform};

struct Counter;

impl StatefulTransform for Counter {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(Counter)
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let key = record.key.ok_or("record has no key")?;
        let n = get(key)
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        put(key, n.to_string().as_bytes());
        if let Some(ts) = record.timestamp.filter(|ts| *ts >= 0) {
            timers::register(Domain::EventTime, key, ts - ts % 1000 + 1000);
        }
        out.record()
            .key(Some(key))
            .value(Some(n.to_string().as_bytes()))
            .emit();
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let n = get(timer.key).unwrap_or_else(|| b"0".to_vec());
        let value = format!("{} at {}", String::from_utf8_lossy(&n), timer.time);
        out.record()
            .key(Some(timer.key))
            .value(Some(value.as_bytes()))
            .timestamp(timer.time)
            .emit();
        Ok(())
    }
}

export_stateful_transform!(Counter);
