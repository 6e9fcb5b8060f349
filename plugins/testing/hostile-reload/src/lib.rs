//! Test plugin: a new version that looks valid but regresses once live, for the hot-reload tests.
//! Config `reload_mode` picks the behaviour (other keys are ignored, so it can replace any plugin
//! of a pipeline without a config change):
//!
//! | reload_mode    | what it does                                                      | what Sluice does               |
//! |----------------|-------------------------------------------------------------------|--------------------------------|
//! | `init-spin`    | spins forever in `init`                                           | validation fails at the deadline, other reloads go on |
//! | `drop-all`     | emits nothing                                                     | divergence: rollback on probation |
//! | `reroute`      | forwards every record to output `reroute_to` (default `other`)    | divergence: rollback on probation |
//! | `reject-share` | rejects 3 records in every 10                                     | failures: rollback on probation |
//! | `trap-after`   | panics on every record once this instance has seen more than `after_records` (default 100) | state failure: reported, rollback on probation |
//! | anything else  | forwards every record                                             |                                |

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct HostileReload {
    mode: String,
    reroute_to: String,
    after: u64,
    seen: u64,
}

impl Transform for HostileReload {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = config.get("reload_mode").unwrap_or("").to_string();
        if mode == "init-spin" {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let after = match config.get("after_records") {
            Some(n) => n.parse().map_err(|e| format!("after_records: {e}"))?,
            None => 100,
        };
        Ok(HostileReload {
            mode,
            reroute_to: config.get("reroute_to").unwrap_or("other").to_string(),
            after,
            seen: 0,
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        self.seen += 1;
        match self.mode.as_str() {
            "drop-all" => Ok(()),
            "reroute" => {
                out.record()
                    .key(record.key)
                    .value(record.value)
                    .headers(&record.headers)
                    .to(&self.reroute_to)
                    .emit();
                Ok(())
            }
            "reject-share" if self.seen % 10 < 3 => Err("hostile-reload: rejects 30%".into()),
            "trap-after" if self.seen > self.after => {
                panic!(
                    "hostile-reload: state gone bad after {} records",
                    self.after
                )
            }
            _ => {
                out.forward(record);
                Ok(())
            }
        }
    }
}

export_transform!(HostileReload);
