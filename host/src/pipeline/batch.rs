//! One batch: through the chain and the router, then to the sinks and the dead-letter topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_abi::Header;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::chain::{ChainOutput, Failure};
use crate::offsets::Ticket;
use crate::runtime::Reason;
use crate::sinks::postgres::{self};
use crate::sinks::{HEADER_VERSION, KafkaSink, OutgoingRecord, is_reserved};
use crate::source::Batch;

use super::worker::{WorkerContext, require_dead_letter_topic};
use super::*;

/// The headers an output record is sent with: the plugin's, less any in Sluice's reserved
/// namespace (an input's forged `sluice.version` is not passed on), then `sluice.version`.
pub(crate) fn output_headers<'a>(
    record: &sluice_abi::OutputRecord<'a>,
    version: Header<'a>,
) -> impl Iterator<Item = Header<'a>> {
    record
        .headers
        .iter()
        .filter(|h| !is_reserved(h.name))
        .chain(std::iter::once(version))
}

/// The inputs with an output to a Kafka topic larger than the producer's `message.max.bytes`.
pub(crate) fn oversized_outputs(
    ctx: &WorkerContext,
    sink: &KafkaSink,
    out: &ChainOutput,
    version: Header<'_>,
    last_plugin: &Arc<crate::runtime::Plugin>,
) -> Vec<Failure> {
    let max = sink.max_message_bytes();
    let mut failures: Vec<Failure> = Vec::new();
    for (emitted, output) in ctx.router.routes(out) {
        let Some(topic) = ctx.router.topic(output) else {
            continue;
        };
        if failures.last().is_some_and(|f| f.input == emitted.input) {
            continue;
        }
        let r = &emitted.record;
        let size = crate::wire::record_size(r.key, r.value, output_headers(r, version));
        if size > max {
            failures.push(Failure {
                input: emitted.input,
                reason: Reason::SinkTooLarge,
                message: format!(
                    "an output record of {size} bytes for topic `{topic}` (output `{}`) is larger \
                     than the producer's message.max.bytes ({max}); emit smaller records, or raise \
                     message.max.bytes in [kafka.producer] together with the topic's \
                     max.message.bytes",
                    ctx.router.names()[output]
                ),
                plugin: Some(last_plugin.clone()),
            });
        }
    }
    failures
}

/// Runs one batch through the chain and the router, then sends its outputs and dead letters.
pub(crate) fn process_batch(
    ctx: &WorkerContext,
    worker: &mut Worker,
    session: &mut postgres::Session,
    sink: &KafkaSink,
    batch: &mut Batch,
) -> Result<()> {
    let (mut out, label) = worker.process(&ctx.router, &mut batch.input)?;
    let input = &batch.input;
    // Records the producer would refuse fail their input here, before anything of the batch is
    // sent, so the input goes to the dead-letter topic whole instead of stopping the pipeline.
    let label_header = Header {
        name: HEADER_VERSION,
        value: Some(label.as_bytes()),
    };
    let last_plugin = worker.chain.plugins().last().expect("a chain has plugins");
    for failure in oversized_outputs(ctx, sink, &out, label_header, last_plugin) {
        out.fail(failure);
    }
    for failure in ctx.refused_earlier(batch, last_plugin) {
        out.fail(failure);
    }
    // Rows first: an input whose row cannot be made sends nothing anywhere.
    let mut rows = postgres::Rows::default();
    if let Some(pg) = &ctx.postgres {
        let (encoded, failures) = pg.encode(&ctx.router, &out, input);
        for failure in failures {
            out.fail(failure);
        }
        rows = encoded;
        rows.retain_inputs(|i| !out.is_failed(i));
    }
    require_dead_letter_topic(ctx, input, &out.failures)?;
    let version = label_header;
    let mut sent = vec![0u64; ctx.metrics.records_out.len()];
    for (emitted, output) in ctx.router.routes(&out) {
        let Some(topic) = ctx.router.topic(output) else {
            continue;
        };
        sent[output] += 1;
        let record = &emitted.record;
        let timestamp = record
            .timestamp
            .or_else(|| input.record(emitted.input as usize).timestamp);
        sink.send(
            topic,
            OutgoingRecord {
                key: record.key,
                value: record.value,
                headers: output_headers(record, version),
                timestamp,
            },
            &batch.ticket,
            Some(input.record(emitted.input as usize).offset),
        );
    }
    let mut dead_lettered = false;
    if let Some(pg) = &ctx.postgres
        && (!rows.is_empty() || pg.exactly_once())
    {
        let stamp = pg.exactly_once().then(|| postgres::Stamp {
            tp: (batch.topic.clone(), batch.partition),
            first_offset: input.record(0).offset,
            next_offset: batch.ticket.next_offset(),
        });
        // Exactly-once: dead letters are acknowledged before the rows and offsets commit, so a
        // crash in between replays them (at least once) rather than losing them.
        let earlier = &out.failures;
        let mut before_commit = |refused: &[Failure]| -> Result<()> {
            require_dead_letter_topic(ctx, input, refused)?;
            let ticket = Ticket::untracked();
            ctx.dead_letter(sink, input, earlier, &ticket);
            ctx.dead_letter(sink, input, refused, &ticket);
            ticket.done();
            while !ticket.is_done() {
                std::thread::sleep(Duration::from_millis(1));
            }
            match ticket.failure() {
                Some(reason) => bail!("{reason}; the batch's rows are rolled back"),
                None => Ok(()),
            }
        };
        let written = ctx.handle.block_on(pg.write(
            session,
            &rows,
            stamp.as_ref(),
            &mut before_commit,
            &|| ctx.stopping(),
        ))?;
        dead_lettered = stamp.is_some();
        if written.skipped {
            tracing::warn!(pipeline = %ctx.pipeline, topic = %batch.topic, partition = batch.partition, "batch skipped: the stored offset is already past it (written before, or the partition moved to another member)");
            return Ok(());
        }
        if !dead_lettered {
            require_dead_letter_topic(ctx, input, &written.failures)?;
        }
        for failure in written.failures {
            out.fail(failure);
        }
        for (_, output) in ctx.router.routes(&out) {
            if pg.is_table(output) {
                sent[output] += 1;
            }
        }
    }
    if !dead_lettered {
        ctx.dead_letter(sink, input, &out.failures, &batch.ticket);
    }
    let stats = &ctx.stats;
    let total_sent: u64 = sent.iter().sum();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .records_in
        .fetch_add(input.len() as u64, Ordering::Relaxed);
    stats.records_out.fetch_add(total_sent, Ordering::Relaxed);
    stats
        .dead_lettered
        .fetch_add(out.failures.len() as u64, Ordering::Relaxed);
    let m = &ctx.metrics;
    m.batches.increment(1);
    m.records_in.increment(input.len() as u64);
    m.batch_size.record(input.len() as f64);
    for (counter, n) in m.records_out.iter().zip(&sent) {
        if *n > 0 {
            counter.increment(*n);
        }
    }
    for failure in &out.failures {
        let i = Reason::ALL
            .iter()
            .position(|r| *r == failure.reason)
            .expect("every reason is listed");
        m.dead_lettered[i].increment(1);
    }
    Ok(())
}
