//! Sizes of records as Kafka puts them on the wire, so that the output caps and the producer's
//! size check count the same bytes librdkafka does (header overhead included).
//!
//! librdkafka refuses a record locally when `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD` + key + value +
//! serialized headers exceeds `message.max.bytes`. A header serializes as its name and value plus
//! one zig-zag varint length for each, so 600,000 empty headers weigh 1.2 MB although they hold
//! no byte of data.

use sluice_abi::Header;

/// The most a record-batch v2 record adds around its key, value and headers (length, attributes,
/// timestamp and offset deltas, key/value lengths, header count).
pub const RECORD_OVERHEAD: u64 = 5 + 1 + 10 + 5 + 5 + 5 + 5;

/// Bytes of a zig-zag varint encoding `n` (a non-negative length).
fn varint_len(n: u64) -> u64 {
    let zigzag = n << 1;
    (64 - zigzag.max(1).leading_zeros() as u64).div_ceil(7)
}

/// Serialized size of one header: name, value and their two length varints.
pub fn header_size(header: &Header<'_>) -> u64 {
    let name = header.name.len() as u64;
    let value = header.value.map_or(0, |v| v.len() as u64);
    name + value + varint_len(name) + varint_len(value)
}

/// The size librdkafka checks against `message.max.bytes` for a record with these parts.
pub fn record_size<'h>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl IntoIterator<Item = Header<'h>>,
) -> u64 {
    let len = |b: Option<&[u8]>| b.map_or(0, |b| b.len() as u64);
    RECORD_OVERHEAD
        + len(key)
        + len(value)
        + headers.into_iter().map(|h| header_size(&h)).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_headers_still_weigh_two_bytes() {
        let empty = Header {
            name: "",
            value: None,
        };
        assert_eq!(header_size(&empty), 2);
        let many = std::iter::repeat_n(empty, 600_000);
        assert_eq!(record_size(None, None, many), RECORD_OVERHEAD + 1_200_000);
    }

    #[test]
    fn varints_grow_with_the_length() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(63), 1); // zig-zag 126
        assert_eq!(varint_len(64), 2); // zig-zag 128
        assert_eq!(varint_len(1_000_000), 3);
    }
}
