//! Benchmark plugin: a filter that drops every record (measures the input half of the boundary).

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct DropAll;

impl Transform for DropAll {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(DropAll)
    }

    fn transform(&mut self, _record: &Record<'_>, _out: &mut Emitter<'_>) -> Result<(), String> {
        Ok(())
    }
}

export_transform!(DropAll);
