//! `sluice test`: run one plugin on records from a JSON-lines file, no Kafka needed.
//!
//! Input lines: `{"key": string|null, "value": string|null, "headers": {name: string|null}}`,
//! with `"key_base64"` / `"value_base64"` instead for binary data, and optional `"timestamp"`,
//! `"topic"`, `"partition"`, `"offset"`. Output: one JSON line per output record, in the same shape
//! plus `"input"` (the input line's index) and `"output"` (the named output or null), and one line
//! `{"input": i, "error": "...", "reason": "..."}` per rejected input.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::sinks::file::{put_bytes, put_headers};
use sluice_abi::{Header, InputBatch};

use crate::chain::Chain;
use crate::runtime::Plugin;

/// Records per plugin call.
const BATCH: usize = 1000;

/// Totals of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Input lines read.
    pub inputs: usize,
    /// Output records written.
    pub outputs: usize,
    /// Inputs rejected.
    pub errors: usize,
}

/// Runs `plugin` over the records of `input` (JSON lines) and writes results to `out`.
pub fn run(plugin: &Arc<Plugin>, input: &Path, out: &mut impl Write) -> Result<Summary> {
    let file = std::fs::File::open(input)
        .with_context(|| format!("cannot open the input file {}", input.display()))?;
    let mut chain = Chain::new(vec![plugin.clone()]);
    let mut summary = Summary::default();
    let mut batch = InputBatch::default();
    let mut first_line = 0;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", input.display()))?;
        if line.trim().is_empty() {
            bail!(
                "{}:{}: empty line (expected one JSON object per line)",
                input.display(),
                n + 1
            );
        }
        let record: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", input.display(), n + 1))?;
        push_record(&mut batch, &record, n)
            .with_context(|| format!("{}:{}", input.display(), n + 1))?;
        if batch.len() == BATCH {
            run_batch(&mut chain, &mut batch, first_line, out, &mut summary)?;
            first_line = n + 1;
        }
    }
    run_batch(&mut chain, &mut batch, first_line, out, &mut summary)?;
    Ok(summary)
}

fn run_batch(
    chain: &mut Chain,
    batch: &mut InputBatch,
    first_line: usize,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let result = chain.process(batch)?;
    let mut failures = result.failures.iter().peekable();
    let mut write_failures_before =
        |input: u32, out: &mut dyn Write, summary: &mut Summary| -> Result<()> {
            while let Some(f) = failures.next_if(|f| f.input < input) {
                let line = json!({
                    "input": first_line + f.input as usize,
                    "error": f.message,
                    "reason": f.reason.as_str(),
                });
                writeln!(out, "{line}")?;
                summary.errors += 1;
            }
            Ok(())
        };
    for emitted in result.emitted() {
        write_failures_before(emitted.input, out, summary)?;
        let r = &emitted.record;
        let mut line = Map::new();
        line.insert("input".into(), json!(first_line + emitted.input as usize));
        line.insert("output".into(), json!(emitted.output));
        put_bytes(&mut line, "key", r.key);
        put_bytes(&mut line, "value", r.value);
        put_headers(&mut line, r.headers.iter());
        if let Some(ts) = r.timestamp {
            line.insert("timestamp".into(), json!(ts));
        }
        writeln!(out, "{}", Value::Object(line))?;
        summary.outputs += 1;
    }
    write_failures_before(u32::MAX, out, summary)?;
    summary.inputs += batch.len();
    batch.clear();
    Ok(())
}

fn push_record(batch: &mut InputBatch, record: &Value, line: usize) -> Result<()> {
    let Value::Object(fields) = record else {
        bail!("expected a JSON object");
    };
    for k in fields.keys() {
        if ![
            "key",
            "value",
            "key_base64",
            "value_base64",
            "headers",
            "timestamp",
            "topic",
            "partition",
            "offset",
        ]
        .contains(&k.as_str())
        {
            bail!(
                "unknown field `{k}` (expected key, value, key_base64, value_base64, headers, timestamp, topic, partition, offset)"
            );
        }
    }
    let key = bytes_field(fields, "key")?;
    let value = bytes_field(fields, "value")?;
    let mut headers: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    match fields.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (name, v) in h {
                let value = match v {
                    Value::String(s) => Some(s.clone().into_bytes()),
                    Value::Null => None,
                    _ => bail!("header `{name}` must be a string or null"),
                };
                headers.push((name.clone(), value));
            }
        }
        Some(_) => bail!("`headers` must be an object of name → string"),
    }
    let int = |name: &str| -> Result<Option<i64>> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .with_context(|| format!("`{name}` must be an integer")),
        }
    };
    let topic = match fields.get("topic") {
        None | Some(Value::Null) => "test",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => bail!("`topic` must be a string"),
    };
    let topic = batch.topic_index(topic);
    batch.push(
        key.as_deref(),
        value.as_deref(),
        headers.iter().map(|(name, value)| Header {
            name,
            value: value.as_deref(),
        }),
        int("timestamp")?,
        topic,
        int("partition")?.unwrap_or(0) as i32,
        int("offset")?.unwrap_or(line as i64),
    );
    Ok(())
}

fn bytes_field(fields: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>> {
    let b64 = format!("{name}_base64");
    match (fields.get(name), fields.get(&b64)) {
        (Some(Value::String(_)), Some(_)) => bail!("give `{name}` or `{b64}`, not both"),
        (Some(Value::String(s)), None) => Ok(Some(s.clone().into_bytes())),
        (_, Some(Value::String(s))) => Ok(Some(
            BASE64
                .decode(s)
                .with_context(|| format!("`{b64}` is not valid base64"))?,
        )),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ok(None),
        _ => bail!("`{name}` must be a string or null"),
    }
}
