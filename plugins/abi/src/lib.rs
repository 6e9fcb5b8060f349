//! The Sluice batch encoding: one byte buffer plus views of `u32` words, as documented in
//! `wit/sluice.wit`. Every list of words is a byte list holding the words little-endian, 4 bytes
//! each (contract 0.3.0): the canonical ABI copies it as one memcpy, and bindings that turn a
//! `list<u32>` into one object per word (componentize-py) see one `bytes` instead.
//!
//! This crate is shared by the host and the Rust guest SDK so that both sides agree on the layout
//! by construction. It has no dependencies and no `unsafe`: words are read with
//! `u32::from_le_bytes` over fixed-size chunks, which compiles to plain (unaligned) loads on the
//! little-endian targets Sluice runs on (x86-64, aarch64, wasm32).
//!
//! - The host builds an [`InputBatch`] from Kafka records and reads an [`OutputBatch`] after
//!   [`OutputBatch::validate`] (the guest is untrusted).
//! - The guest reads [`InputBatch`] records through [`InputBatch::record`] (borrowed slices, no
//!   copies) and builds an [`OutputBatch`].

use std::fmt;

/// Length word meaning "absent" (a Kafka null), and output word meaning "default output".
pub const NONE: u32 = u32::MAX;
/// Timestamp value meaning "no timestamp".
pub const NO_TIMESTAMP: i64 = i64::MIN;
/// Words per input record in [`InputBatch::records`].
pub const INPUT_WORDS: usize = 12;
/// Words per output record in [`OutputBatch::records`].
pub const OUTPUT_WORDS: usize = 10;
/// Words per header in the `headers` lists.
pub const HEADER_WORDS: usize = 4;
/// Bytes per word in every word list.
pub const WORD_BYTES: usize = 4;
/// Bytes per input record in [`InputBatch::records`].
pub const INPUT_BYTES: usize = INPUT_WORDS * WORD_BYTES;
/// Bytes per output record in [`OutputBatch::records`].
pub const OUTPUT_BYTES: usize = OUTPUT_WORDS * WORD_BYTES;
/// Bytes per header in the `headers` lists.
pub const HEADER_BYTES: usize = HEADER_WORDS * WORD_BYTES;

/// Word `index` of a word list.
///
/// # Panics
/// When the list holds fewer than `index + 1` words.
#[inline]
pub fn word(words: &[u8], index: usize) -> u32 {
    let at = index * WORD_BYTES;
    u32::from_le_bytes(
        words[at..at + WORD_BYTES]
            .try_into()
            .expect("a 4-byte slice"),
    )
}

/// The first `N` words of `bytes`, as an array (one bounds check for all of them).
///
/// # Panics
/// When `bytes` holds fewer than `N` words.
#[inline]
pub fn words<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let bytes = &bytes[..N * WORD_BYTES];
    std::array::from_fn(|i| {
        u32::from_le_bytes(
            bytes[i * WORD_BYTES..(i + 1) * WORD_BYTES]
                .try_into()
                .expect("a 4-byte slice"),
        )
    })
}

/// Overwrites word `index` of a word list.
///
/// # Panics
/// When the list holds fewer than `index + 1` words.
#[inline]
pub fn set_word(words: &mut [u8], index: usize, value: u32) {
    let at = index * WORD_BYTES;
    words[at..at + WORD_BYTES].copy_from_slice(&value.to_le_bytes());
}

/// Appends `words` to a word list, little-endian.
#[inline]
pub fn push_words(list: &mut Vec<u8>, words: &[u32]) {
    let start = list.len();
    list.resize(start + words.len() * WORD_BYTES, 0);
    for (bytes, w) in list[start..].chunks_exact_mut(WORD_BYTES).zip(words) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
}

/// Iterates the words of a word list (a trailing partial word is ignored: check
/// [`word_count`] first for lists from an untrusted side).
#[inline]
pub fn iter_words(words: &[u8]) -> impl ExactSizeIterator<Item = u32> + '_ {
    words
        .chunks_exact(WORD_BYTES)
        .map(|b| u32::from_le_bytes(b.try_into().expect("a 4-byte chunk")))
}

/// A list of words as a word list (little-endian bytes).
pub fn from_words(words: &[u32]) -> Vec<u8> {
    let mut list = Vec::with_capacity(words.len() * WORD_BYTES);
    push_words(&mut list, words);
    list
}

/// The number of words in the word list `name`, or an error when its length is not a multiple
/// of 4 bytes (a bug in whoever built it: the contract says so).
pub fn word_count(name: &str, words: &[u8]) -> Result<usize, PartialWord> {
    if words.len().is_multiple_of(WORD_BYTES) {
        Ok(words.len() / WORD_BYTES)
    } else {
        Err(PartialWord {
            list: name.to_owned(),
            bytes: words.len(),
        })
    }
}

/// A word list whose length is not a whole number of 4-byte words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialWord {
    /// The list's name in the contract (`records`, `docs`, …).
    pub list: String,
    /// Its length in bytes.
    pub bytes: usize,
}

impl fmt::Display for PartialWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` holds {} bytes, which is not a whole number of 4-byte words (every word list \
             of sluice:plugin@0.3.0 holds u32 words little-endian, 4 bytes each)",
            self.list, self.bytes
        )
    }
}

impl std::error::Error for PartialWord {}

/// One Kafka header: a UTF-8 name and an optional byte value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name.
    pub name: &'a str,
    /// Header value; `None` is a Kafka null.
    pub value: Option<&'a [u8]>,
}

/// The headers of one record, borrowed from a batch.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    /// [`HEADER_BYTES`] bytes per header.
    words: &'a [u8],
    data: &'a [u8],
}

impl<'a> Headers<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.words.len() / HEADER_BYTES
    }

    /// True when the record has no headers.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The header at `index`.
    pub fn get(&self, index: usize) -> Option<Header<'a>> {
        let w: [u32; HEADER_WORDS] = words(
            self.words
                .get(index * HEADER_BYTES..(index + 1) * HEADER_BYTES)?,
        );
        let name = span(self.data, w[0], w[1]).unwrap_or_default();
        Some(Header {
            // Names were checked to be UTF-8 when the batch was built or validated.
            name: std::str::from_utf8(name).unwrap_or_default(),
            value: span(self.data, w[2], w[3]),
        })
    }

    /// The value of the first header called `name`.
    pub fn find(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter().find(|h| h.name == name).map(|h| h.value)
    }

    /// The raw views: [`HEADER_WORDS`] words per header (name span, value span), little-endian
    /// ([`HEADER_BYTES`] bytes per header), into the byte buffer they were borrowed with. For
    /// SDKs that copy headers span by span; the spans are only as trustworthy as the batch they
    /// came from.
    pub fn raw(&self) -> (&'a [u8], &'a [u8]) {
        (self.words, self.data)
    }

    /// Iterates the headers in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Header<'a>> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| this.get(i).expect("index in range"))
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One input record, borrowed from an [`InputBatch`].
#[derive(Clone, Copy, Debug)]
pub struct InputRecord<'a> {
    /// Record key; `None` is a Kafka null.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` is a Kafka null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Record headers.
    pub headers: Headers<'a>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// A batch of input records (see `input-batch` in `wit/sluice.wit`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputBatch {
    /// Every key, value, header name and header value of the batch.
    pub data: Vec<u8>,
    /// [`INPUT_WORDS`] words per record, little-endian ([`INPUT_BYTES`] bytes).
    pub records: Vec<u8>,
    /// [`HEADER_WORDS`] words per header, little-endian ([`HEADER_BYTES`] bytes).
    pub headers: Vec<u8>,
    /// Topic names referenced by index from the records.
    pub topics: Vec<String>,
}

impl InputBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len() / INPUT_BYTES
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.headers.clear();
        self.topics.clear();
    }

    /// Index of `topic` in the topic table, adding it if new.
    pub fn topic_index(&mut self, topic: &str) -> u32 {
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.to_owned());
                (self.topics.len() - 1) as u32
            }
        }
    }

    /// Appends one record; `topic` is an index from [`InputBatch::topic_index`].
    #[allow(clippy::too_many_arguments)]
    pub fn push<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = Header<'h>>,
        timestamp: Option<i64>,
        topic: u32,
        partition: i32,
        offset: i64,
    ) {
        let (key_off, key_len) = push_bytes(&mut self.data, key);
        let (value_off, value_len) = push_bytes(&mut self.data, value);
        let first_header = self.headers.len() / HEADER_BYTES;
        for h in headers {
            push_header(&mut self.data, &mut self.headers, h);
        }
        let header_count = self.headers.len() / HEADER_BYTES - first_header;
        let (ts_lo, ts_hi) = split(timestamp.unwrap_or(NO_TIMESTAMP));
        let (off_lo, off_hi) = split(offset);
        push_fixed(
            &mut self.records,
            [
                key_off,
                key_len,
                value_off,
                value_len,
                first_header as u32,
                header_count as u32,
                ts_lo,
                ts_hi,
                topic,
                partition as u32,
                off_lo,
                off_hi,
            ],
        );
    }

    /// The record at `index`. The batch must come from the host (or [`InputBatch::push`]).
    ///
    /// # Panics
    /// When `index` is out of range or the views point outside the batch.
    pub fn record(&self, index: usize) -> InputRecord<'_> {
        let w: [u32; INPUT_WORDS] = words(&self.records[index * INPUT_BYTES..]);
        InputRecord {
            key: span(&self.data, w[0], w[1]),
            value: span(&self.data, w[2], w[3]),
            headers: headers(&self.data, &self.headers, w[4], w[5]),
            timestamp: timestamp(w[6], w[7]),
            topic: self.topics.get(w[8] as usize).map_or("", String::as_str),
            partition: w[9] as i32,
            offset: join(w[10], w[11]),
        }
    }

    /// Iterates the records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = InputRecord<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }
}

/// One output record, borrowed from a validated [`OutputBatch`].
#[derive(Clone, Copy, Debug)]
pub struct OutputRecord<'a> {
    /// Index of the input record it was made from.
    pub input: u32,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: Option<&'a [u8]>,
    /// Record headers.
    pub headers: Headers<'a>,
    /// Timestamp; `None` keeps the input's.
    pub timestamp: Option<i64>,
    /// Index into [`OutputBatch::outputs`]; `None` is the pipeline's default output.
    pub output: Option<u32>,
}

/// The rejection of one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// Index of the rejected input.
    pub input: u32,
    /// Why it was rejected.
    pub message: String,
}

/// The result of a batch call (see `output-batch` in `wit/sluice.wit`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputBatch {
    /// Every key, value, header name and header value of the outputs.
    pub data: Vec<u8>,
    /// [`OUTPUT_WORDS`] words per output record, little-endian ([`OUTPUT_BYTES`] bytes).
    pub records: Vec<u8>,
    /// [`HEADER_WORDS`] words per header, little-endian ([`HEADER_BYTES`] bytes).
    pub headers: Vec<u8>,
    /// Output names referenced by index from the records.
    pub outputs: Vec<String>,
    /// Rejected inputs.
    pub errors: Vec<InputError>,
}

/// Why an [`OutputBatch`] returned by a plugin is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError(String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed output batch: {}", self.0)
    }
}

impl std::error::Error for LayoutError {}

impl OutputBatch {
    /// Number of output records.
    pub fn len(&self) -> usize {
        self.records.len() / OUTPUT_BYTES
    }

    /// True when the batch holds no output record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Index of `name` in the output table, adding it if new.
    pub fn output_index(&mut self, name: &str) -> u32 {
        match self.outputs.iter().position(|t| t == name) {
            Some(i) => i as u32,
            None => {
                self.outputs.push(name.to_owned());
                (self.outputs.len() - 1) as u32
            }
        }
    }

    /// Appends the bytes of one field and returns its span words.
    pub fn push_bytes(&mut self, bytes: Option<&[u8]>) -> (u32, u32) {
        push_bytes(&mut self.data, bytes)
    }

    /// Appends one header; call between records' [`OutputBatch::push_record`] calls, for the
    /// record about to be pushed.
    pub fn push_header(&mut self, header: Header<'_>) {
        push_header(&mut self.data, &mut self.headers, header)
    }

    /// Number of headers pushed so far (the first header index of the next record).
    pub fn header_count(&self) -> u32 {
        (self.headers.len() / HEADER_BYTES) as u32
    }

    /// Appends an output record whose key and value spans were made by
    /// [`OutputBatch::push_bytes`] and whose headers are those pushed since `first_header`.
    pub fn push_record(
        &mut self,
        input: u32,
        key: (u32, u32),
        value: (u32, u32),
        first_header: u32,
        timestamp: Option<i64>,
        output: Option<u32>,
    ) {
        let (ts_lo, ts_hi) = split(timestamp.unwrap_or(NO_TIMESTAMP));
        let count = self.header_count() - first_header;
        push_fixed(
            &mut self.records,
            [
                input,
                key.0,
                key.1,
                value.0,
                value.1,
                first_header,
                count,
                ts_lo,
                ts_hi,
                output.unwrap_or(NONE),
            ],
        );
    }

    /// Appends a whole output record.
    pub fn push<'h>(
        &mut self,
        input: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = Header<'h>>,
        timestamp: Option<i64>,
        output: Option<u32>,
    ) {
        let key = self.push_bytes(key);
        let value = self.push_bytes(value);
        let first = self.header_count();
        for h in headers {
            self.push_header(h);
        }
        self.push_record(input, key, value, first, timestamp, output);
    }

    /// Rejects input `input` with `message`.
    pub fn reject(&mut self, input: u32, message: impl Into<String>) {
        self.errors.push(InputError {
            input,
            message: message.into(),
        });
    }

    /// Checks every view against the buffers, for a batch made from `inputs` input records.
    /// After this succeeds, [`OutputBatch::record`] cannot panic.
    pub fn validate(&self, inputs: usize) -> Result<(), LayoutError> {
        let err = |msg: String| Err(LayoutError(msg));
        let partial = |e: PartialWord| LayoutError(e.to_string());
        let record_words = word_count("records", &self.records).map_err(partial)?;
        let header_words = word_count("headers", &self.headers).map_err(partial)?;
        if !record_words.is_multiple_of(OUTPUT_WORDS) {
            return err(format!(
                "{record_words} record words is not a multiple of {OUTPUT_WORDS}"
            ));
        }
        if !header_words.is_multiple_of(HEADER_WORDS) {
            return err(format!(
                "{header_words} header words is not a multiple of {HEADER_WORDS}"
            ));
        }
        let data = self.data.len() as u64;
        let check_span = |off: u32, len: u32| len == NONE || off as u64 + len as u64 <= data;
        for (i, h) in self.headers.chunks_exact(HEADER_BYTES).enumerate() {
            let h: [u32; HEADER_WORDS] = words(h);
            if !check_span(h[0], h[1]) || h[1] == NONE || !check_span(h[2], h[3]) {
                return err(format!("header {i} points outside the data buffer"));
            }
            let name = &self.data[h[0] as usize..(h[0] + h[1]) as usize];
            // Most names are ASCII: checked inline, without the call into `from_utf8`.
            if !name.is_ascii() && std::str::from_utf8(name).is_err() {
                return err(format!("header {i} has a name that is not UTF-8"));
            }
        }
        let header_total = (header_words / HEADER_WORDS) as u64;
        let mut last_input = 0;
        for (i, w) in self.records.chunks_exact(OUTPUT_BYTES).enumerate() {
            let w: [u32; OUTPUT_WORDS] = words(w);
            if w[0] as usize >= inputs {
                return err(format!(
                    "record {i} names input {} of a {inputs}-record batch",
                    w[0]
                ));
            }
            if w[0] < last_input {
                return err(format!("record {i} is out of input order"));
            }
            last_input = w[0];
            if !check_span(w[1], w[2]) || !check_span(w[3], w[4]) {
                return err(format!("record {i} points outside the data buffer"));
            }
            if w[5] as u64 + w[6] as u64 > header_total {
                return err(format!("record {i} names headers that do not exist"));
            }
            if w[9] != NONE && w[9] as usize >= self.outputs.len() {
                return err(format!(
                    "record {i} names output {} of {}",
                    w[9],
                    self.outputs.len()
                ));
            }
        }
        for e in &self.errors {
            if e.input as usize >= inputs {
                return err(format!("an error names input {} of {inputs}", e.input));
            }
        }
        Ok(())
    }

    /// The output record at `index` (of a validated batch).
    ///
    /// # Panics
    /// When `index` is out of range or the batch is malformed.
    pub fn record(&self, index: usize) -> OutputRecord<'_> {
        let w: [u32; OUTPUT_WORDS] = words(&self.records[index * OUTPUT_BYTES..]);
        OutputRecord {
            input: w[0],
            key: span(&self.data, w[1], w[2]),
            value: span(&self.data, w[3], w[4]),
            headers: headers(&self.data, &self.headers, w[5], w[6]),
            timestamp: timestamp(w[7], w[8]),
            output: (w[9] != NONE).then_some(w[9]),
        }
    }

    /// Iterates the output records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = OutputRecord<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }
}

fn push_bytes(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> (u32, u32) {
    match bytes {
        Some(b) => {
            let off = data.len() as u32;
            data.extend_from_slice(b);
            (off, b.len() as u32)
        }
        None => (0, NONE),
    }
}

fn push_header(data: &mut Vec<u8>, list: &mut Vec<u8>, h: Header<'_>) {
    let (name_off, name_len) = push_bytes(data, Some(h.name.as_bytes()));
    let (value_off, value_len) = push_bytes(data, h.value);
    push_header_words(list, [name_off, name_len, value_off, value_len]);
}

/// Appends one header's views (name span, value span).
#[inline]
pub fn push_header_words(list: &mut Vec<u8>, words: [u32; HEADER_WORDS]) {
    push_fixed(list, words)
}

/// Appends `N` words (at most 16) as one fixed-size chunk: the words are written into a stack
/// array (plain stores on a little-endian target) and appended with one capacity check.
#[inline]
fn push_fixed<const N: usize>(list: &mut Vec<u8>, words: [u32; N]) {
    const { assert!(N <= 16) };
    let mut bytes = [0u8; 16 * WORD_BYTES];
    for (chunk, w) in bytes.chunks_exact_mut(WORD_BYTES).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    list.extend_from_slice(&bytes[..N * WORD_BYTES]);
}

fn span(data: &[u8], off: u32, len: u32) -> Option<&[u8]> {
    (len != NONE).then(|| &data[off as usize..off as usize + len as usize])
}

fn headers<'a>(data: &'a [u8], list: &'a [u8], first: u32, count: u32) -> Headers<'a> {
    let start = first as usize * HEADER_BYTES;
    Headers {
        words: &list[start..start + count as usize * HEADER_BYTES],
        data,
    }
}

fn split(v: i64) -> (u32, u32) {
    (v as u64 as u32, (v as u64 >> 32) as u32)
}

fn join(lo: u32, hi: u32) -> i64 {
    ((hi as u64) << 32 | lo as u64) as i64
}

fn timestamp(lo: u32, hi: u32) -> Option<i64> {
    let t = join(lo, hi);
    (t != NO_TIMESTAMP).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: Option<&'a [u8]>) -> Header<'a> {
        Header { name, value }
    }

    #[test]
    fn input_round_trip_keeps_every_field() {
        let mut b = InputBatch::default();
        let t = b.topic_index("users");
        b.push(
            Some(b"k1"),
            Some(b"v1"),
            [h("a", Some(b"1")), h("n", None)],
            Some(1_700_000_000_000),
            t,
            3,
            42,
        );
        b.push(None, Some(b""), [], None, t, 3, 1 << 40);
        assert_eq!(b.len(), 2);
        let r0 = b.record(0);
        assert_eq!(r0.key, Some(&b"k1"[..]));
        assert_eq!(r0.value, Some(&b"v1"[..]));
        assert_eq!(
            r0.headers.iter().collect::<Vec<_>>(),
            vec![h("a", Some(b"1")), h("n", None)]
        );
        assert_eq!(r0.timestamp, Some(1_700_000_000_000));
        assert_eq!((r0.topic, r0.partition, r0.offset), ("users", 3, 42));
        let r1 = b.record(1);
        assert_eq!(r1.key, None);
        assert_eq!(r1.value, Some(&b""[..]));
        assert!(r1.headers.is_empty());
        assert_eq!(r1.timestamp, None);
        assert_eq!(r1.offset, 1 << 40);
    }

    #[test]
    fn negative_timestamps_survive() {
        let mut b = InputBatch::default();
        b.push(None, None, [], Some(-5), 0, -1, -1);
        assert_eq!(b.record(0).timestamp, Some(-5));
        assert_eq!(b.record(0).partition, -1);
        assert_eq!(b.record(0).offset, -1);
    }

    #[test]
    fn output_round_trip_and_validate() {
        let mut o = OutputBatch::default();
        let clean = o.output_index("clean");
        o.push(0, Some(b"k"), Some(b"v"), [h("x", Some(b"y"))], None, None);
        o.push(2, None, None, [], Some(7), Some(clean));
        o.reject(1, "bad");
        o.validate(3).unwrap();
        let r = o.record(1);
        assert_eq!(
            (r.input, r.key, r.value, r.timestamp, r.output),
            (2, None, None, Some(7), Some(0))
        );
        assert_eq!(o.record(0).headers.find("x"), Some(Some(&b"y"[..])));
        assert!(
            o.validate(2).is_err(),
            "input 2 does not exist in a 2-record batch"
        );
    }

    #[test]
    fn validate_rejects_hostile_views() {
        let mut o = OutputBatch::default();
        o.push(0, Some(b"k"), None, [], None, None);
        let good = o.clone();

        set_word(&mut o.records, 2, 1000); // key length past the buffer
        assert!(o.validate(1).is_err());

        let mut o = good.clone();
        set_word(&mut o.records, 1, u32::MAX - 1); // offset + len overflows u32
        assert!(o.validate(1).is_err());

        let mut o = good.clone();
        set_word(&mut o.records, 6, 3); // headers that do not exist
        assert!(o.validate(1).is_err());

        let mut o = good.clone();
        set_word(&mut o.records, 9, 0); // output name that does not exist
        assert!(o.validate(1).is_err());

        let mut o = good.clone();
        o.records.truncate(o.records.len() - WORD_BYTES); // truncated record
        assert!(o.validate(1).is_err());

        let mut o = good.clone();
        o.push(0, None, None, [], None, None);
        set_word(&mut o.records, OUTPUT_WORDS, 0);
        set_word(&mut o.records, 0, 0);
        o.validate(1).unwrap();
        let mut o2 = OutputBatch::default();
        o2.push(1, None, None, [], None, None);
        o2.push(0, None, None, [], None, None);
        assert!(o2.validate(2).is_err(), "out of input order");

        let mut o = OutputBatch::default();
        o.push(0, None, None, [h("ok", None)], None, None);
        o.data[0] = 0xff; // header name no longer UTF-8
        assert!(o.validate(1).is_err());
    }

    #[test]
    fn validate_rejects_partial_words() {
        let mut o = OutputBatch::default();
        o.push(0, Some(b"k"), None, [h("n", None)], None, None);
        o.validate(1).unwrap();
        for cut in 1..WORD_BYTES {
            let mut bad = o.clone();
            bad.records.truncate(bad.records.len() - cut);
            let e = bad.validate(1).unwrap_err().to_string();
            assert!(
                e.contains("`records` holds") && e.contains("4-byte words"),
                "{e}"
            );
            let mut bad = o.clone();
            bad.headers.extend(std::iter::repeat_n(0, WORD_BYTES - cut));
            let e = bad.validate(1).unwrap_err().to_string();
            assert!(
                e.contains("`headers` holds") && e.contains("4-byte words"),
                "{e}"
            );
        }
    }

    #[test]
    fn words_are_little_endian() {
        let mut list = Vec::new();
        push_words(&mut list, &[1, 0x0403_0201]);
        assert_eq!(list, [1, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(word(&list, 1), 0x0403_0201);
        assert_eq!(words::<2>(&list), [1, 0x0403_0201]);
        assert_eq!(iter_words(&list).collect::<Vec<_>>(), [1, 0x0403_0201]);
        assert_eq!(from_words(&[1, 0x0403_0201]), list);
        let mut b = InputBatch::default();
        b.push(Some(b"k"), None, [], Some(-2), 0, 7, 0x1_0000_0002);
        assert_eq!(
            words::<INPUT_WORDS>(&b.records),
            [0, 1, 0, NONE, 0, 0, u32::MAX - 1, u32::MAX, 0, 7, 2, 1]
        );
        assert!(
            word_count("x", &[0; 5])
                .unwrap_err()
                .to_string()
                .starts_with("`x` holds 5 bytes")
        );
        assert_eq!(word_count("x", &[0; 8]), Ok(2));
    }
}
