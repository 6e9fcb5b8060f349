//! Test plugin: forwards records, but rejects a record whose value is `poison` (config `poison`)
//! and panics (a trap) on a record whose value is `trap` (config `trap`).

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct Poison {
    poison: Vec<u8>,
    trap: Vec<u8>,
}

impl Transform for Poison {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Poison {
            poison: config.get("poison").unwrap_or("poison").as_bytes().to_vec(),
            trap: config.get("trap").unwrap_or("trap").as_bytes().to_vec(),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if record.value == Some(&self.trap[..]) {
            panic!("trap requested by record at offset {}", record.offset);
        }
        if record.value == Some(&self.poison[..]) {
            return Err("poisoned record".into());
        }
        out.forward(record);
        Ok(())
    }
}

export_transform!(Poison);
