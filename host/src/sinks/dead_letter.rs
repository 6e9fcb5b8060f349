//! The dead-letter topic: a rejected input goes there as it was read, with headers saying why
//! and where it came from. A dead letter is never refused for its size: too large, it goes
//! without its value (then its key and headers), flagged.

use std::sync::Arc;

use sluice_abi::{Header, InputRecord};

use super::kafka::{KafkaSink, OutgoingRecord, is_reserved};
use crate::chain::Failure;
use crate::offsets::Ticket;

/// Dead-letter header: the failure class (`plugin-error`, `trap`, `limit:deadline`…).
pub const HEADER_REASON: &str = "sluice.error.reason";
/// Dead-letter header: the failure message.
pub const HEADER_MESSAGE: &str = "sluice.error.message";
/// Dead-letter header: the plugin that failed the record.
pub const HEADER_PLUGIN: &str = "sluice.plugin";
/// Dead-letter header: that plugin's version (content hash).
pub const HEADER_PLUGIN_VERSION: &str = "sluice.plugin.version";
/// Dead-letter header: the pipeline.
pub const HEADER_PIPELINE: &str = "sluice.pipeline";
/// Dead-letter header: source topic.
pub const HEADER_SOURCE_TOPIC: &str = "sluice.source.topic";
/// Dead-letter header: source partition.
pub const HEADER_SOURCE_PARTITION: &str = "sluice.source.partition";
/// Dead-letter header: source offset.
pub const HEADER_SOURCE_OFFSET: &str = "sluice.source.offset";

/// Dead-letter header, present when the dead letter had to be cut to fit `message.max.bytes`:
/// what was left out (`value`, or `value,key,headers`). The source topic/partition/offset headers
/// still identify the record.
pub const HEADER_DROPPED: &str = "sluice.error.dropped";
/// An input header in the reserved namespace is kept in a dead letter under this prefix
/// (`original.sluice.version`), so the dead letter's own `sluice.*` headers are the only ones.
pub const RENAMED_PREFIX: &str = "original.";

/// Who made the headers of a dead-lettered input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputHeaders {
    /// A record read from a topic: its `sluice.*` headers are anyone's and are renamed.
    Untrusted,
    /// A fired timer's pseudo record: the host wrote its `sluice.timer.*` headers, kept as they
    /// are so the dead letter names the timer.
    HostMade,
}

/// Longest `sluice.error.message` header, in bytes.
const MAX_MESSAGE_HEADER: usize = 4096;

/// Sends `input` to the dead-letter topic with headers saying why: unchanged, except that
/// its own headers in the `sluice.` namespace are renamed (`original.sluice.…`) and that a
/// record too large to send with those headers goes without its value (then without its key
/// and headers), flagged by `sluice.error.dropped`. A dead letter is never refused for size.
pub fn write(
    producer: &KafkaSink,
    topic: &str,
    pipeline: &str,
    input: &InputRecord<'_>,
    failure: &Failure,
    ticket: &Arc<Ticket>,
    made_by: InputHeaders,
) {
    let is_reserved = |name: &str| made_by == InputHeaders::Untrusted && is_reserved(name);
    let (plugin, version) = failure
        .plugin
        .as_ref()
        .map_or(("", ""), |p| (&*p.name, &*p.version));
    let partition = input.partition.to_string();
    let offset = input.offset.to_string();
    // A plugin's message can be any length; keep the dead letter producible.
    let message = &failure.message[..failure.message.floor_char_boundary(MAX_MESSAGE_HEADER)];
    let extra = [
        (HEADER_REASON, failure.reason.as_str()),
        (HEADER_MESSAGE, message),
        (HEADER_PIPELINE, pipeline),
        (HEADER_PLUGIN, plugin),
        (HEADER_PLUGIN_VERSION, version),
        (HEADER_SOURCE_TOPIC, input.topic),
        (HEADER_SOURCE_PARTITION, &partition),
        (HEADER_SOURCE_OFFSET, &offset),
    ];
    let renamed: Vec<String> = input
        .headers
        .iter()
        .filter(|h| is_reserved(h.name))
        .map(|h| format!("{RENAMED_PREFIX}{}", h.name))
        .collect();
    let input_headers = || {
        let mut renamed = renamed.iter();
        input.headers.iter().map(move |h| {
            if is_reserved(h.name) {
                let name = renamed
                    .next()
                    .expect("one renamed name per reserved header");
                Header {
                    name,
                    value: h.value,
                }
            } else {
                h
            }
        })
    };
    let extra_headers = |dropped: Option<&'static str>| {
        extra
            .iter()
            .map(|(name, value)| (*name, *value))
            .chain(dropped.map(|d| (HEADER_DROPPED, d)))
            .map(|(name, value)| Header {
                name,
                value: Some(value.as_bytes()),
            })
            .collect::<Vec<_>>()
    };
    let fits = |key, value, with_input_headers: bool, dropped| {
        let own = extra_headers(dropped);
        let size = if with_input_headers {
            crate::wire::record_size(key, value, input_headers().chain(own))
        } else {
            crate::wire::record_size(key, value, own)
        };
        size <= producer.max_message_bytes()
    };
    // The whole record if it fits; else without its value; else only the identifying headers.
    let (key, value, with_input_headers, dropped) = if fits(input.key, input.value, true, None) {
        (input.key, input.value, true, None)
    } else if fits(input.key, None, true, Some("value")) {
        (input.key, None, true, Some("value"))
    } else {
        (None, None, false, Some("value,key,headers"))
    };
    if dropped.is_some() {
        tracing::warn!(
            pipeline,
            topic = input.topic,
            partition = input.partition,
            offset = input.offset,
            "the dead letter is too large for message.max.bytes ({} bytes): it is written without its {}",
            producer.max_message_bytes(),
            dropped.unwrap_or_default()
        );
    }
    let own = extra_headers(dropped);
    let headers = input_headers()
        .take(if with_input_headers { usize::MAX } else { 0 })
        .chain(own);
    producer.send(
        topic,
        OutgoingRecord {
            key,
            value,
            headers,
            timestamp: input.timestamp,
        },
        ticket,
        None,
    );
}
