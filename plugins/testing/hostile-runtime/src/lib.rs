//! Test plugin that attacks the runtime through host calls and shared budgets. Config `mode` picks
//! the attack; records whose value is not `bad` are forwarded unchanged unless the mode says
//! otherwise.
//!
//! | mode            | what it does                                                        | what Sluice does            |
//! |-----------------|---------------------------------------------------------------------|-----------------------------|
//! | `sleep`         | `std::thread::sleep` for an hour on `bad` (a WASI pollable `block`)  | `limit:deadline`            |
//! | `sleep-init`    | sleeps for an hour in `init`                                        | refuses to load it in time  |
//! | `log-flood`     | on `bad`, writes `mb` MB (default 152) of stdout and `log` lines of 4 MB | log bytes capped        |
//! | `log-then-trap` | logs 200 lines, then panics, on every record                         | `trap`, log bytes capped    |
//! | `exit`          | calls `std::process::exit(3)` on `bad` (WASI p2 passes status 1)     | `trap`, "called exit(1)"    |

use std::io::Write;
use std::time::Duration;

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct HostileRuntime {
    mode: String,
    mb: usize,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Transform for HostileRuntime {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = config.get("mode").unwrap_or("sleep").to_string();
        if mode == "sleep-init" {
            std::thread::sleep(HOUR);
        }
        let mb = config
            .get("mb")
            .map(|s| s.parse().map_err(|e| format!("mb: {e}")))
            .transpose()?
            .unwrap_or(152);
        Ok(HostileRuntime { mode, mb })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if self.mode == "log-then-trap" {
            for i in 0..200 {
                sluice_plugin::log::info(&format!(
                    "hostile plugin: log line {i} of 200 before a trap"
                ));
            }
            panic!("hostile plugin: trap after logging");
        }
        if record.value != Some(b"bad") {
            out.forward(record);
            return Ok(());
        }
        match self.mode.as_str() {
            "sleep" => {
                std::thread::sleep(HOUR);
                Err("hostile plugin: woke up".into())
            }
            "log-flood" => {
                // 4 MB chunks: half as partial stdout lines, half through the `log` import.
                let chunk = "x".repeat(4 << 20);
                let mut stdout = std::io::stdout();
                for i in 0..self.mb.div_ceil(4) {
                    if i % 2 == 0 {
                        let _ = stdout.write_all(chunk.as_bytes());
                        let _ = stdout.write_all(b"\n");
                    } else {
                        sluice_plugin::log::info(&chunk);
                    }
                }
                let _ = stdout.flush();
                out.forward(record);
                Ok(())
            }
            "exit" => std::process::exit(3),
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

export_transform!(HostileRuntime);
