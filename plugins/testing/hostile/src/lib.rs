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
//! | `init-refuse-window` | `init` refuses while the wall clock is within [`refuse_from_ms`, `refuse_until_ms`) (Unix ms): accepted at load, refused by the workers' instances | the batch waits, the partition is reported stalled |

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct Hostile {
    mode: String,
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
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

/// Recurses until the stack runs out (the guard keeps the compiler from proving it never ends).
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if buf[7] == u64::MAX {
        return 0;
    }
    recurse(buf[7] + 1) + buf[3]
}

export_transform!(Hostile);
