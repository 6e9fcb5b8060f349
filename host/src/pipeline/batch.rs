//! One batch: through the chain and the router, then to the sinks and the dead-letter topic.

use std::sync::atomic::Ordering;

use sluice_abi::Header;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::chain::Failure;
use crate::offsets::Ticket;
use crate::offsets::TopicPartition;
use crate::sinks::dead_letter::InputHeaders;
use crate::sinks::{HEADER_VERSION, KafkaSink, RoutedBatch, SinkWriter, Stamp};
use crate::source::Batch;

use super::worker::{WorkerContext, require_dead_letter_topic};
use super::*;

/// Runs one batch through the chain and the router, then sends its outputs and dead letters;
/// in a stateful pipeline also fires the timers that are due and writes the state changes to
/// the changelog.
pub(crate) fn process_batch(
    ctx: &WorkerContext,
    worker: &mut Worker,
    writers: &mut [Box<dyn SinkWriter>],
    producer: &KafkaSink,
    batch: &mut Batch,
) -> Result<()> {
    let store = worker.partition.clone();
    let late = match (&store, &ctx.state) {
        (Some(store), Some(stores)) => {
            // Each attempt starts from the committed state.
            store.discard_pending();
            super::timers::late_records(store, stores, &batch.input)
        }
        _ => Vec::new(),
    };
    let (out, label) = worker.process(&ctx.router, &mut batch.input, late)?;
    deliver(
        ctx,
        worker,
        writers,
        producer,
        batch,
        &batch.input,
        out,
        &label,
        true,
    )?;
    let (Some(store), Some(stores)) = (store, &ctx.state) else {
        return Ok(());
    };
    let max_ts = batch.input.iter().filter_map(|r| r.timestamp).max();
    if let Some(ts) = max_ts {
        store.observe_timestamp(ts);
    }
    let after = super::timers::after_last(&batch.input);
    fire_timers(ctx, worker, writers, producer, batch, &store, after, &label)?;
    stores.write_changelog(producer, &store, &batch.ticket);
    if ctx.transactions.is_none() {
        // At-least-once: the changes count from now on; the changelog records are acknowledged
        // before the batch's offsets commit (on the same ticket).
        store.apply_pending()?;
    }
    Ok(())
}

/// Fires the timers of every stateful plugin of the chain that are due on `store`, and sends what
/// their `on-timer` calls made (as if after the record `after`); true if any fired.
#[allow(clippy::too_many_arguments)]
fn fire_timers(
    ctx: &WorkerContext,
    worker: &mut Worker,
    writers: &mut [Box<dyn SinkWriter>],
    producer: &KafkaSink,
    batch: &Batch,
    store: &std::sync::Arc<crate::state::PartitionStore>,
    after: (&str, i32, i64),
    label: &str,
) -> Result<bool> {
    let Some(stores) = &ctx.state else {
        return Ok(false);
    };
    let mut fired_any = false;
    for k in 0..worker.chain.plugins().len() {
        if !worker.chain.plugins()[k].is_stateful() {
            continue;
        }
        let name = worker.chain.plugins()[k].name.clone();
        let Some((fired, mut pseudo)) = super::timers::due_timers(store, stores, &name, after)?
        else {
            continue;
        };
        fired_any = true;
        let out = worker.fire_timers(&ctx.router, k, &fired, &mut pseudo)?;
        deliver(
            ctx, worker, writers, producer, batch, &pseudo, out, label, false,
        )?;
    }
    Ok(fired_any)
}

/// An idle tick of a stateful at-least-once pipeline (an empty batch on an untracked ticket):
/// fires the timers that are due although no record came, and applies their state changes once
/// their outputs and changelog records are acknowledged. When a delivery fails the changes are
/// dropped, so the timers fire again at a later tick (at least once).
pub(crate) fn process_idle_tick(
    ctx: &WorkerContext,
    worker: &mut Worker,
    writers: &mut [Box<dyn SinkWriter>],
    producer: &KafkaSink,
    batch: &Batch,
) -> Result<()> {
    let (Some(store), Some(stores)) = (worker.partition.clone(), &ctx.state) else {
        return Ok(());
    };
    store.discard_pending();
    let label = worker.version.label.clone();
    let after = (&*batch.topic, batch.partition, -1);
    if !fire_timers(ctx, worker, writers, producer, batch, &store, after, &label)? {
        return Ok(());
    }
    stores.write_changelog(producer, &store, &batch.ticket);
    batch.ticket.done();
    while !batch.ticket.is_done() {
        if ctx.stopping() {
            // Not applied: restored from the changelog, the timers fire again after a restart.
            store.discard_pending();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    match batch.ticket.failure() {
        None => store.apply_pending(),
        Some(reason) => {
            store.discard_pending();
            tracing::warn!(pipeline = %ctx.pipeline, topic = %batch.topic, partition = batch.partition, "timers fired on an idle partition were not delivered ({reason}); they fire again");
            Ok(())
        }
    }
}

/// Sends the routed outputs and dead letters of `out` (made from `input`, the batch's records or
/// its fired timers) through the sinks.
#[allow(clippy::too_many_arguments)]
fn deliver(
    ctx: &WorkerContext,
    worker: &mut Worker,
    writers: &mut [Box<dyn SinkWriter>],
    producer: &KafkaSink,
    batch: &Batch,
    input: &sluice_abi::InputBatch,
    mut out: crate::chain::ChainOutput,
    label: &str,
    records: bool,
) -> Result<()> {
    let version = Header {
        name: HEADER_VERSION,
        value: Some(label.as_bytes()),
    };
    let last_plugin = worker
        .chain
        .plugins()
        .last()
        .expect("a chain has plugins")
        .clone();
    let tp: TopicPartition = (batch.topic.clone(), batch.partition);
    // A fired timer's pseudo record carries the host's own headers naming the timer.
    let made_by = if records {
        InputHeaders::Untrusted
    } else {
        InputHeaders::HostMade
    };
    let stopping = || ctx.stopping();
    if records {
        for failure in ctx.refused_earlier(batch, &last_plugin) {
            out.fail(failure);
        }
    }
    // Every sink screens the batch before anything is written: an input that one of them cannot
    // take (too large, not a row) goes to the dead-letter topic whole and sends nothing anywhere.
    let mut screened = Vec::new();
    {
        let routed = RoutedBatch {
            out: &out,
            router: &ctx.router,
            input,
            version,
            ticket: &batch.ticket,
            producer,
            last_plugin: &last_plugin,
            stopping: &stopping,
        };
        for writer in writers.iter_mut() {
            screened.extend(writer.screen(&routed));
        }
    }
    for failure in screened {
        out.fail(failure);
    }
    require_dead_letter_topic(ctx, input, &out.failures)?;
    let mut sent = vec![0u64; ctx.metrics.records_out.len()];
    let mut refused_while_writing = Vec::new();
    let mut dead_lettered = false;
    let routed = RoutedBatch {
        out: &out,
        router: &ctx.router,
        input,
        version,
        ticket: &batch.ticket,
        producer,
        last_plugin: &last_plugin,
        stopping: &stopping,
    };
    for (i, writer) in writers.iter_mut().enumerate() {
        // Exactly-once into a sink that stores offsets: they go into its transaction.
        let stamp = (ctx.offsets_sink == Some(i) && records).then(|| Stamp {
            tp: tp.clone(),
            first_offset: input.record(0).offset,
            next_offset: batch.ticket.next_offset(),
        });
        // Then dead letters are acknowledged before the sink commits, so a crash in between
        // replays them (at least once) rather than losing them.
        let earlier = &out.failures;
        let mut before_commit = |refused: &[Failure]| -> Result<()> {
            require_dead_letter_topic(ctx, input, refused)?;
            let ticket = Ticket::untracked();
            ctx.dead_letter(producer, input, earlier, &ticket, made_by);
            ctx.dead_letter(producer, input, refused, &ticket, made_by);
            ticket.done();
            while !ticket.is_done() {
                std::thread::sleep(Duration::from_millis(1));
            }
            match ticket.failure() {
                Some(reason) => bail!("{reason}; the batch's writes are rolled back"),
                None => Ok(()),
            }
        };
        let written = writer.write(&routed, stamp.as_ref(), &mut before_commit, &mut sent)?;
        if written.skipped {
            tracing::warn!(pipeline = %ctx.pipeline, topic = %batch.topic, partition = batch.partition, "batch skipped: the stored offset is already past it (written before, or the partition moved to another member)");
            return Ok(());
        }
        if stamp.is_some() {
            dead_lettered = true;
        } else {
            require_dead_letter_topic(ctx, input, &written.failures)?;
        }
        refused_while_writing.extend(written.failures);
    }
    for failure in refused_while_writing {
        out.fail(failure);
    }
    if !dead_lettered {
        ctx.dead_letter(producer, input, &out.failures, &batch.ticket, made_by);
    }
    let stats = &ctx.stats;
    let total_sent: u64 = sent.iter().sum();
    let inputs = if records { input.len() as u64 } else { 0 };
    stats.batches.fetch_add(records as u64, Ordering::Relaxed);
    stats.records_in.fetch_add(inputs, Ordering::Relaxed);
    stats.records_out.fetch_add(total_sent, Ordering::Relaxed);
    stats
        .dead_lettered
        .fetch_add(out.failures.len() as u64, Ordering::Relaxed);
    let m = &ctx.metrics;
    if records {
        m.batches.increment(1);
        m.records_in.increment(input.len() as u64);
        m.batch_size.record(input.len() as f64);
    }
    for (counter, n) in m.records_out.iter().zip(&sent) {
        if *n > 0 {
            counter.increment(*n);
        }
    }
    for failure in &out.failures {
        if let Some((_, counter)) = m.dead_lettered.iter().find(|(r, _)| *r == failure.reason) {
            counter.increment(1);
        }
    }
    Ok(())
}
