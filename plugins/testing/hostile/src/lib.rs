//! Test plugin that misbehaves on purpose. Config `mode` picks the misbehaviour; records whose
//! value is not `bad` are forwarded unchanged unless the mode says otherwise.
//!
//! | mode         | what it does                                                       | what Sluice does           |
//! |--------------|--------------------------------------------------------------------|----------------------------|
//! | `init-panic` | panics in `init`                                                   | refuses to load it         |
//! | `error-all`  | rejects every record                                               | DLQ / rollback on probation|
//! | `panic`      | panics on a record whose value is `bad`                            | `trap`                     |
//! | `loop`       | spins forever on `bad`                                             | `limit:deadline`           |
//! | `grow`       | allocates until it fails on `bad`                                  | `limit:memory`             |
//! | `recurse`    | unbounded recursion on `bad`                                       | `trap` (stack overflow)    |
//! | `flood`      | emits 1 GiB of output for `bad`                                    | `limit:memory`             |
//! | `burst`      | emits 100 copies of `bad`                                          | `limit:output` (if capped) |
//! | `read-file`  | tries to read `/etc/passwd` on `bad`, errors with what it got      | `plugin-error`, no access  |
//! | `tcp`        | tries to connect to 127.0.0.1:9 on `bad`, errors with what it got  | `plugin-error`, no access  |
//! | `env`        | reads `HOME` on `bad`, errors with what it got                     | `plugin-error`, no access  |
//! | `empty-headers` | emits one record with 600,000 empty headers for `bad` (1.2 MB on the wire, 0 bytes of data) | `limit:output` or `sink:too-large` |
//! | `forge-headers` | forwards every record with extra `sluice.version` / `sluice.error.reason` headers | headers dropped |
//! | `partial-words` | forwards `bad`, then cuts the last byte off the batch's output `records` (a word list that is not whole 4-byte words) | `trap`, only `bad` dead-lettered |
//! | `span-outside` | forwards `bad`, then points the batch's first output key past the end of its data | `trap`, only `bad` dead-lettered |
//! | `init-refuse-window` | `init` refuses while the wall clock is within [`refuse_from_ms`, `refuse_until_ms`) (Unix ms): accepted at load, refused by the workers' instances | the batch waits, the partition is reported stalled |

use std::cell::Cell;

use sluice_plugin::bindings::sluice::plugin::types;
use sluice_plugin::{Config, Emitter, Record, Transform};

struct Hostile {
    mode: String,
}

thread_local! {
    /// Set by `partial-words` and `span-outside` when the batch holds `bad`: `process` then
    /// breaks the output batch's views after the SDK built them (the SDK itself never does).
    static CORRUPT: Cell<Option<bool>> = const { Cell::new(None) };
}

impl Transform for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = config.get("mode").unwrap_or("panic").to_string();
        if mode == "init-panic" {
            panic!("hostile plugin: panic in init");
        }
        if mode == "init-refuse-window" {
            let ms = |key: &str| -> u128 {
                config
                    .get(key)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default()
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            if (ms("refuse_from_ms")..ms("refuse_until_ms")).contains(&now) {
                return Err("hostile plugin: refusing my config for a while".into());
            }
        }
        Ok(Hostile { mode })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if self.mode == "error-all" {
            return Err("hostile plugin: rejects everything".into());
        }
        if self.mode == "forge-headers" {
            out.record()
                .key(record.key)
                .value(record.value)
                .headers(&record.headers)
                .header("sluice.version", Some(b"forged@0"))
                .header("sluice.error.reason", Some(b"forged"))
                .emit();
            return Ok(());
        }
        if record.value != Some(b"bad") {
            out.forward(record);
            return Ok(());
        }
        match self.mode.as_str() {
            "panic" => panic!("hostile plugin: panic on a bad record"),
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => Err(format!("unreachable: {}", recurse(std::hint::black_box(1)))),
            "flood" => {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..1024 {
                    out.record().value(Some(&chunk)).emit();
                }
                Ok(())
            }
            "burst" => {
                for _ in 0..100 {
                    out.forward(record);
                }
                Ok(())
            }
            "read-file" => Err(format!(
                "read /etc/passwd: {:?}",
                std::fs::read_to_string("/etc/passwd").map(|s| s.len())
            )),
            "tcp" => Err(format!(
                "connect 127.0.0.1:9: {:?}",
                std::net::TcpStream::connect("127.0.0.1:9").map(|_| ())
            )),
            "env" => Err(format!("HOME: {:?}", std::env::var("HOME"))),
            "empty-headers" => {
                let mut builder = out.record().value(Some(b"tiny"));
                for _ in 0..600_000 {
                    builder = builder.header("", None);
                }
                builder.emit();
                Ok(())
            }
            "partial-words" | "span-outside" => {
                out.forward(record);
                CORRUPT.with(|c| c.set(Some(self.mode == "partial-words")));
                Ok(())
            }
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

/// The SDK's exports, with the output batch broken afterwards when `transform` asked for it.
struct Export;

impl sluice_plugin::bindings::Guest for Export {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        sluice_plugin::__init::<Hostile>(config)
    }

    fn process(batch: types::InputBatch) -> types::OutputBatch {
        let mut out = sluice_plugin::__process::<Hostile>(batch);
        match CORRUPT.with(|c| c.take()) {
            Some(true) => {
                out.records.pop();
            }
            Some(false) => {
                // Word 2 of the first output record: its key length.
                let past = (out.data.len() as u32 + 1).to_le_bytes();
                out.records[8..12].copy_from_slice(&past);
            }
            None => {}
        }
        out
    }
}

sluice_plugin::bindings::__export_transform_world!(Export with_types_in sluice_plugin::bindings);

/// Recurses until the stack runs out (the guard keeps the compiler from proving it never ends).
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if buf[7] == u64::MAX {
        return 0;
    }
    recurse(buf[7] + 1) + buf[3]
}
