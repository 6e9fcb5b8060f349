//! `sluice test`: run one plugin on records from a JSON-lines file, no Kafka needed.
//!
//! Input lines: `{"key": string|null, "value": string|null, "headers": {name: string|null}}`,
//! with `"key_base64"` / `"value_base64"` instead for binary data, and optional `"timestamp"`,
//! `"topic"`, `"partition"`, `"offset"`. Output: one JSON line per output record, in the same shape
//! plus `"input"` (the input line's index) and `"output"` (the named output or null), and one line
//! `{"input": i, "error": "...", "reason": "..."}` per rejected input.
//!
//! A stateful plugin (world `stateful-transform`) runs as in a pipeline, on in-memory stores: one
//! per input partition (`topic`, `partition` of each line; a batch never spans two), event time
//! from each line's `timestamp`, records behind the watermark rejected with reason `late`, and
//! after each batch the timers that are due handed to `on-timer`. Timer outputs carry `"timer"`
//! (`{"key", "time", "domain"}`) instead of `"input"`. With `print_state`, the final state follows
//! as one `{"state": {"topic", "partition", "key", "value"}}` line per key.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::sinks::file::{put_bytes, put_headers};
use sluice_abi::{Header, InputBatch};

use crate::chain::{Chain, ChainOutput};
use crate::offsets::TopicPartition;
use crate::runtime::Plugin;
use crate::state::{PartitionStore, Stores};

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

/// How a run treats a stateful plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// How far the watermark stays behind the largest timestamp seen (as
    /// `state.allowed_lateness_ms`).
    pub allowed_lateness_ms: i64,
    /// Print the final state after the outputs.
    pub print_state: bool,
}

/// Runs `plugin` over the records of `input` (JSON lines) and writes results to `out`.
pub fn run(
    plugin: &Arc<Plugin>,
    input: &Path,
    options: Options,
    out: &mut impl Write,
) -> Result<Summary> {
    let file = std::fs::File::open(input)
        .with_context(|| format!("cannot open the input file {}", input.display()))?;
    let mut chain = Chain::new(vec![plugin.clone()]);
    let stores = plugin
        .is_stateful()
        .then(|| Stores::ephemeral("test", options.allowed_lateness_ms));
    let mut summary = Summary::default();
    let mut batch = InputBatch::default();
    let mut first_line = 0;
    let mut partition: Option<(String, i32)> = None;
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
        let tp = record_partition(&record);
        // A stateful plugin's batch holds one partition's records, as in a pipeline.
        let partition_ends = stores.is_some() && partition.as_ref().is_some_and(|p| *p != tp);
        if partition_ends || batch.len() == BATCH {
            run_batch(
                &mut chain,
                stores.as_deref(),
                &mut batch,
                first_line,
                out,
                &mut summary,
            )?;
            first_line = n;
        }
        partition = Some(tp);
        push_record(&mut batch, &record, n)
            .with_context(|| format!("{}:{}", input.display(), n + 1))?;
    }
    run_batch(
        &mut chain,
        stores.as_deref(),
        &mut batch,
        first_line,
        out,
        &mut summary,
    )?;
    if let (Some(stores), true) = (&stores, options.print_state) {
        for (tp, key, value) in stores.entries_of(&plugin.name)? {
            let mut entry = Map::new();
            entry.insert("topic".into(), json!(&*tp.0));
            entry.insert("partition".into(), json!(tp.1));
            put_bytes(&mut entry, "key", Some(&key));
            put_bytes(&mut entry, "value", Some(&value));
            writeln!(out, "{}", json!({ "state": entry }))?;
        }
    }
    Ok(summary)
}

/// The `topic` and `partition` of an input line, as `push_record` reads them.
fn record_partition(record: &Value) -> (String, i32) {
    let topic = record
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or("test");
    let partition = record.get("partition").and_then(Value::as_i64).unwrap_or(0);
    (topic.to_string(), partition as i32)
}

fn run_batch(
    chain: &mut Chain,
    stores: Option<&Stores>,
    batch: &mut InputBatch,
    first_line: usize,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let Some(stores) = stores else {
        let result = chain.process(batch)?;
        write_results(
            &result,
            &|i| json!({ "input": first_line + i as usize }),
            out,
            summary,
        )?;
        summary.inputs += batch.len();
        batch.clear();
        return Ok(());
    };
    let first = batch.record(0);
    let tp: TopicPartition = (Arc::from(first.topic), first.partition);
    let store = stores
        .partition(&tp)?
        .context("an in-memory test store is always open")?;
    store.discard_pending();
    let late = crate::pipeline::late_records(&store, stores, batch);
    chain.set_partition(Some(store.clone()));
    let result = chain.process_without(batch, late)?;
    write_results(
        &result,
        &|i| json!({ "input": first_line + i as usize }),
        out,
        summary,
    )?;
    fire_timers(chain, stores, &store, batch, out, summary)?;
    store.apply_pending()?;
    summary.inputs += batch.len();
    batch.clear();
    Ok(())
}

/// Hands the timers due after `batch` to the plugin's `on-timer` and writes what it emits.
fn fire_timers(
    chain: &mut Chain,
    stores: &Stores,
    store: &Arc<PartitionStore>,
    batch: &InputBatch,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<()> {
    if let Some(ts) = batch.iter().filter_map(|r| r.timestamp).max() {
        store.observe_timestamp(ts);
    }
    let name = chain.plugins()[0].name.clone();
    let after = crate::pipeline::after_last(batch);
    let Some((fired, mut pseudo)) = crate::pipeline::due_timers(store, stores, &name, after)?
    else {
        return Ok(());
    };
    let result = chain.process_timers(0, &fired, &mut pseudo)?;
    let origin = |i: u32| {
        let timer = pseudo.record(i as usize);
        let mut t = Map::new();
        put_bytes(&mut t, "key", timer.key);
        t.insert("time".into(), json!(timer.timestamp));
        let domain = timer
            .headers
            .iter()
            .find(|h| h.name == "sluice.timer.domain");
        let domain = domain.and_then(|h| h.value).map(String::from_utf8_lossy);
        t.insert("domain".into(), json!(domain));
        json!({ "timer": t })
    };
    write_results(&result, &origin, out, summary)
}

/// Writes the outputs and rejections of `result`, each tagged with `origin(input index)`.
fn write_results(
    result: &ChainOutput,
    origin: &dyn Fn(u32) -> Value,
    out: &mut impl Write,
    summary: &mut Summary,
) -> Result<()> {
    let tagged = |input: u32| match origin(input) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut failures = result.failures.iter().peekable();
    let mut write_failures_before =
        |input: u32, out: &mut dyn Write, summary: &mut Summary| -> Result<()> {
            while let Some(f) = failures.next_if(|f| f.input < input) {
                let mut line = tagged(f.input);
                line.insert("error".into(), json!(f.message));
                line.insert("reason".into(), json!(f.reason.as_str()));
                writeln!(out, "{}", Value::Object(line))?;
                summary.errors += 1;
            }
            Ok(())
        };
    for emitted in result.emitted() {
        write_failures_before(emitted.input, out, summary)?;
        let r = &emitted.record;
        let mut line = tagged(emitted.input);
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
    write_failures_before(u32::MAX, out, summary)
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
