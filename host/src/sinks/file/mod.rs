//! JSON-lines files as outputs, for local experiments and for piping into `jq`: every routed
//! record is appended as one JSON object per line, the way `sluice test` prints records.
//!
//! At-least-once: a batch's lines are written and synced to disk (`fsync`) before the batch
//! counts as delivered, so the offsets committed after it never pass a line that is not on
//! disk; after a crash the last batches may be appended again. Workers share a file, one batch
//! at a time, so a batch's lines stay together and in order.

mod config;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sluice_abi::Header;

pub use self::config::FileOutput;
use crate::chain::Failure;
use crate::router::Router;
use crate::sinks::{
    BeforeCommit, OutputConfig, RoutedBatch, Sink, SinkSpec, SinkWriter, Stamp, Written,
    output_headers,
};

/// An open output file, shared by the pipeline's workers.
struct OutputFile {
    path: std::path::PathBuf,
    file: Mutex<File>,
}

/// The file outputs of one pipeline: the file of each router output (`None`: another sink's).
#[derive(Clone)]
pub struct FileSink {
    files: Arc<[Option<Arc<OutputFile>>]>,
}

impl FileSink {
    /// Opens (creating, appending) the files of `pipeline`'s file outputs, if it has any.
    pub fn open(pipeline: &SinkSpec<'_>, router: &Router) -> Result<Option<FileSink>> {
        let mut files: Vec<Option<Arc<OutputFile>>> = Vec::new();
        for name in router.names() {
            let OutputConfig::File(out) = &pipeline.outputs[name] else {
                files.push(None);
                continue;
            };
            // Two outputs naming one file share it, so their lines do not interleave mid-line.
            let shared = files.iter().flatten().find(|f| f.path == out.path).cloned();
            let file = match shared {
                Some(f) => f,
                None => Arc::new(OutputFile {
                    file: Mutex::new(open_append(&out.path).with_context(|| {
                        format!("output `{name}` of pipeline `{}`", pipeline.name)
                    })?),
                    path: out.path.clone(),
                }),
            };
            files.push(Some(file));
        }
        Ok(files.iter().any(Option::is_some).then(|| FileSink {
            files: files.into(),
        }))
    }
}

fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| {
            format!(
                "opening {} to append to it: check that its folder exists and is writable",
                path.display()
            )
        })
}

/// For `sluice check`: the file outputs, and whether their files can be opened for appending.
pub fn check(pipeline: &SinkSpec<'_>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (name, out) in pipeline.outputs {
        let OutputConfig::File(file) = out else {
            continue;
        };
        open_append(&file.path).with_context(|| format!("output `{name}`"))?;
        lines.push(format!(
            "output `{name}`: file {} (JSON lines, appended)",
            file.path.display()
        ));
    }
    Ok(lines)
}

impl Sink for FileSink {
    fn writer(&self) -> Box<dyn SinkWriter> {
        Box::new(FileWriter {
            sink: self.clone(),
            buffers: vec![Vec::new(); self.files.len()],
        })
    }
}

/// One worker's writer: a buffer per output, written and synced once per batch.
struct FileWriter {
    sink: FileSink,
    buffers: Vec<Vec<u8>>,
}

impl SinkWriter for FileWriter {
    fn screen(&mut self, _batch: &RoutedBatch<'_>) -> Vec<Failure> {
        Vec::new()
    }

    fn write(
        &mut self,
        batch: &RoutedBatch<'_>,
        _stamp: Option<&Stamp>,
        _before_commit: &mut BeforeCommit<'_>,
        sent: &mut [u64],
    ) -> Result<Written> {
        for (emitted, output) in batch.router.routes(batch.out) {
            if self.sink.files[output].is_none() {
                continue;
            }
            let r = &emitted.record;
            let input = batch.input.record(emitted.input as usize);
            let mut line = Map::new();
            line.insert("topic".into(), json!(input.topic));
            line.insert("partition".into(), json!(input.partition));
            line.insert("offset".into(), json!(input.offset));
            line.insert("output".into(), json!(batch.router.names()[output]));
            put_bytes(&mut line, "key", r.key);
            put_bytes(&mut line, "value", r.value);
            put_headers(&mut line, output_headers(r, batch.version));
            if let Some(ts) = r.timestamp.or(input.timestamp) {
                line.insert("timestamp".into(), json!(ts));
            }
            let buffer = &mut self.buffers[output];
            serde_json::to_writer(&mut *buffer, &Value::Object(line))?;
            buffer.push(b'\n');
            sent[output] += 1;
        }
        for (output, buffer) in self.buffers.iter_mut().enumerate() {
            let Some(file) = &self.sink.files[output] else {
                continue;
            };
            if buffer.is_empty() {
                continue;
            }
            let mut f = file.file.lock().expect("output file lock");
            f.write_all(buffer)
                .and_then(|()| f.sync_data())
                .with_context(|| format!("appending to {}", file.path.display()))?;
            buffer.clear();
        }
        Ok(Written::default())
    }
}

/// Puts `bytes` into `line` under `name`: text when it is UTF-8, else `null` and
/// `NAME_base64`.
pub fn put_bytes(line: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            line.insert(name.into(), Value::Null);
        }
        Some(Ok(s)) => {
            line.insert(name.into(), json!(s));
        }
        Some(Err(_)) => {
            line.insert(name.into(), Value::Null);
            line.insert(
                format!("{name}_base64"),
                json!(base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or_default())),
            );
        }
    }
}

/// Puts `headers` into `line`: `headers` (name → text or `null`) and, for values that are not
/// UTF-8, `headers_base64`.
pub fn put_headers<'h>(
    line: &mut Map<String, Value>,
    headers: impl IntoIterator<Item = Header<'h>>,
) {
    let mut text = Map::new();
    let mut binary = Map::new();
    for h in headers {
        match h.value.map(std::str::from_utf8) {
            None => {
                text.insert(h.name.into(), Value::Null);
            }
            Some(Ok(s)) => {
                text.insert(h.name.into(), json!(s));
            }
            Some(Err(_)) => {
                binary.insert(
                    h.name.into(),
                    json!(
                        base64::engine::general_purpose::STANDARD
                            .encode(h.value.unwrap_or_default())
                    ),
                );
            }
        }
    }
    line.insert("headers".into(), Value::Object(text));
    if !binary.is_empty() {
        line.insert("headers_base64".into(), Value::Object(binary));
    }
}
