//! Event time in a stateful pipeline: records behind their partition's watermark are rejected
//! as `late` before the chain, and the timers that are due after a batch are collected for the
//! plugins' `on-timer`.

use std::sync::Arc;

use anyhow::Result;
use sluice_abi::{Header, InputBatch};

use crate::chain::Failure;
use crate::runtime::FiredTimers;
use crate::runtime::limits::MAX_TIMERS_PER_BATCH;
use crate::state::{EVENT_TIME, PROCESSING_TIME, PartitionStore, Stores, take_due};

/// Header of a dead-lettered timer: its clock (`event-time` or `processing-time`).
pub(crate) const HEADER_TIMER_DOMAIN: &str = "sluice.timer.domain";
/// Header of a dead-lettered timer: its time (ms since the Unix epoch, decimal).
pub(crate) const HEADER_TIMER_TIME: &str = "sluice.timer.time";

/// The inputs of `input` whose timestamp is behind the partition's watermark as it stood before
/// the batch: they go to the dead-letter topic with reason `late`, unseen by the plugins.
pub(crate) fn late_records(
    store: &PartitionStore,
    stores: &Stores,
    input: &InputBatch,
) -> Vec<Failure> {
    let lateness = stores.lateness_ms();
    // The largest timestamp seen so far, record by record: a record is late against the
    // watermark as it stands when the record arrives, whatever the batching.
    let mut max = store.max_timestamp();
    let mut late = Vec::new();
    for (i, r) in input.iter().enumerate() {
        let Some(ts) = r.timestamp else {
            continue;
        };
        let watermark = if max == i64::MIN {
            i64::MIN
        } else {
            max.saturating_sub(lateness)
        };
        if ts < watermark {
            late.push(Failure {
                input: i as u32,
                reason: crate::failure::Reason::Late,
                message: format!(
                    "timestamp {ts} is behind the partition's watermark {watermark} (the largest \
                     timestamp seen minus state.allowed_lateness_ms = {lateness})"
                ),
                plugin: None,
            });
        } else {
            max = max.max(ts);
        }
    }
    late
}

/// Where timers fired after `input` say they come from: its last record's topic, partition and
/// offset (`input` is not empty).
pub(crate) fn after_last(input: &InputBatch) -> (&str, i32, i64) {
    let last = input.record(input.len() - 1);
    (last.topic, last.partition, last.offset)
}

/// Removes the timers of plugin `plugin` that are due (event time up to the watermark after the
/// batch, processing time up to now) and returns them as `on-timer` takes them, with one pseudo
/// record per timer (its key, no value, headers naming it) for the batch machinery. `after` is
/// the topic, partition and offset of the record they fire after (offset -1 on an idle tick).
pub(crate) fn due_timers(
    store: &Arc<PartitionStore>,
    stores: &Stores,
    plugin: &str,
    after: (&str, i32, i64),
) -> Result<Option<(FiredTimers, InputBatch)>> {
    let watermark = store.watermark(stores.lateness_ms());
    let mut due: Vec<(u8, i64, Vec<u8>)> = Vec::new();
    if watermark != i64::MIN {
        for (at, key) in take_due(store, plugin, EVENT_TIME, watermark, MAX_TIMERS_PER_BATCH)? {
            due.push((EVENT_TIME, at, key));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let room = MAX_TIMERS_PER_BATCH - due.len();
    for (at, key) in take_due(store, plugin, PROCESSING_TIME, now, room)? {
        due.push((PROCESSING_TIME, at, key));
    }
    if due.is_empty() {
        return Ok(None);
    }
    let (after_topic, after_partition, after_offset) = after;
    let mut fired = FiredTimers {
        data: Vec::new(),
        timers: Vec::with_capacity(due.len() * crate::runtime::TIMER_BYTES),
    };
    let mut pseudo = InputBatch::default();
    let topic = pseudo.topic_index(after_topic);
    for (domain, at, key) in &due {
        sluice_abi::push_words(
            &mut fired.timers,
            &[
                fired.data.len() as u32,
                key.len() as u32,
                *domain as u32,
                *at as u64 as u32,
                ((*at as u64) >> 32) as u32,
            ],
        );
        fired.data.extend_from_slice(key);
        let time = at.to_string();
        let domain_name: &[u8] = if *domain == EVENT_TIME {
            b"event-time"
        } else {
            b"processing-time"
        };
        pseudo.push(
            Some(key),
            None,
            [
                Header {
                    name: HEADER_TIMER_DOMAIN,
                    value: Some(domain_name),
                },
                Header {
                    name: HEADER_TIMER_TIME,
                    value: Some(time.as_bytes()),
                },
            ],
            Some(*at),
            topic,
            after_partition,
            after_offset,
        );
    }
    Ok(Some((fired, pseudo)))
}
