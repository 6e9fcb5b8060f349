//! Test plugin that attacks the host through the `json` interface, whose calls run outside the
//! guest's epoch deadline and allocate host memory. Config `mode` picks the attack, made on a
//! record whose value is `bad`; other records are forwarded unchanged.
//!
//! | mode          | what it does                                                              | what Sluice does  |
//! |---------------|---------------------------------------------------------------------------|-------------------|
//! | `paths`       | `read` of 64 documents with 1M paths: 768 MB of `fields`                  | `limit:memory`    |
//! | `spin-read`   | `read` of one 1 MB document named 4M times (overlapping spans)           | `limit:deadline`  |
//! | `spin-write`  | `write` of the same, each set to `1` (small output, all the scanning)    | `limit:deadline`  |
//! | `write-bytes` | `write` of one 1 MB document named 1M times, unedited: 1 TB of output    | `limit:memory`    |
//! | `deep`        | `read` of a document nested 1M deep; emits the root kind it got           | kind 0 (invalid)  |

use sluice_plugin::bindings::sluice::plugin::json;
use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct HostileJson {
    mode: String,
}

/// A 1 MB JSON string: one node, much scanning.
fn big_string() -> Vec<u8> {
    let mut doc = vec![b'x'; 1 << 20];
    doc[0] = b'"';
    *doc.last_mut().unwrap() = b'"';
    doc
}

/// `times` spans `0, len`, as a word list (little-endian).
fn same_span(len: usize, times: usize) -> Vec<u8> {
    let span = sluice_plugin::from_words(&[0, len as u32]);
    span.repeat(times)
}

impl Transform for HostileJson {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(HostileJson {
            mode: config.get("mode").unwrap_or("paths").to_string(),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if record.value != Some(b"bad") {
            out.forward(record);
            return Ok(());
        }
        match self.mode.as_str() {
            "paths" => {
                let paths = vec![String::new(); 1 << 20];
                let docs = same_span(2, 64);
                let got = json::read(b"{}", &docs, &paths);
                Err(format!("read returned {} bytes", got.fields.len()))
            }
            "spin-read" => {
                let doc = big_string();
                let got = json::read(&doc, &same_span(doc.len(), 4 << 20), &["/a".to_string()]);
                Err(format!("read returned {} bytes", got.fields.len()))
            }
            "spin-write" => {
                let doc = big_string();
                let n = 4 << 20;
                // Built as bytes in place: 80 MB of edits, under the 128 MB cap only once.
                let edits: Vec<u8> = (0..n as u32)
                    .flat_map(|d| [d, 0, 2, 0, 1])
                    .flat_map(u32::to_le_bytes)
                    .collect();
                let got = json::write(
                    &doc,
                    &same_span(doc.len(), n),
                    &[String::new()],
                    &edits,
                    b"1",
                );
                Err(format!("write returned {} bytes", got.data.len()))
            }
            "write-bytes" => {
                let doc = big_string();
                let got = json::write(&doc, &same_span(doc.len(), 1 << 20), &[], &[], &[]);
                Err(format!("write returned {} bytes", got.data.len()))
            }
            "deep" => {
                let depth = 1 << 20;
                let mut doc = vec![b'['; depth];
                doc.extend(std::iter::repeat_n(b']', depth));
                let docs = sluice_plugin::from_words(&[0, doc.len() as u32]);
                let got = json::read(&doc, &docs, &[String::new()]);
                let kind = sluice_plugin::word(&got.fields, 0).to_string();
                out.record().value(Some(kind.as_bytes())).emit();
                Ok(())
            }
            other => Err(format!("unknown mode {other}")),
        }
    }
}

export_transform!(HostileJson);
