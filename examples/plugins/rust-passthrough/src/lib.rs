//! Forwards every record unchanged to the pipeline's default output.

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct Passthrough;

impl Transform for Passthrough {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Passthrough)
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        out.forward(record);
        Ok(())
    }
}

export_transform!(Passthrough);
