//! The `json` interface of `wit/sluice.wit`: plugins read fields of whole batches of JSON
//! documents by JSON Pointer and write edits back, with serde_json's semantics (the host's own
//! JSON, `preserve_order`), so a value edited by a plugin in any language comes out byte for byte
//! the same.
//!
//! # Fast path, and when serde_json decides
//!
//! Parsing into a `serde_json::Value` and serialising it again costs ~3 µs per 300-byte
//! document. Instead a validating single-pass scanner ([`tree`]) builds a light tree of spans
//! into the input, keeping every token that is already in serde_json's canonical form where it is
//! and re-encoding the others; `write` then copies untouched subtrees in one piece and serialises
//! only the containers an edit touched. Whatever the scanner is not sure of — invalid input,
//! duplicate keys, lone surrogates, nesting at serde_json's limit — goes to serde_json itself:
//! it decides validity, and its canonical output is scanned instead (so every document, fast or
//! not, is edited by the same code). Numbers other than plain short integers are each parsed and
//! printed by serde_json. `tests` compares both paths on generated and hand-written documents.
//!
//! # Bounds
//!
//! These calls run in the host, outside the guest's epoch deadline and memory cap, so they carry
//! their own ([`Work`]): host memory (results, nodes, re-encoded text, serde_json's fallback
//! charged at [`FALLBACK_BYTES_PER_BYTE`]) is held within `limits.memory_mb`, and the call's
//! deadline is checked every [`CHECK_WORK_UNITS`] units of work (bytes scanned, nodes visited,
//! bytes written). Over either, the call traps with [`JsonLimitHit`] (`limit:memory` or
//! `limit:deadline`).
//!
//! # Reusing `read`'s parse
//!
//! `read` keeps its trees (and the batch bytes it was given, which are moved, not copied) until
//! the next call; a `write` of the same bytes takes each document's tree from there instead of
//! scanning it again.

mod budget;
mod edit;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
mod text;
mod tree;

use super::bindings::sluice::plugin::json as wit;
use super::instance::PluginState;
use super::limits::FALLBACK_BYTES_PER_BYTE;
use budget::JsonBadCall;
pub use budget::{JsonLimitHit, Limit, Work};
use edit::{Path, apply, parse_paths};
use sluice_abi::{WORD_BYTES, push_words, words};
use tree::{Buf, Bufs, Kind, NIL, Node, Scan, Scanner};

/// The parsed documents of a call, and the host's own text they point into.
#[derive(Default)]
pub struct Arena {
    nodes: Vec<Node>,
    scratch: Vec<u8>,
    canon: Vec<u8>,
}

impl Arena {
    fn clear(&mut self) {
        self.nodes.clear();
        self.scratch.clear();
        self.canon.clear();
    }

    /// Host bytes held.
    fn bytes(&self) -> u64 {
        (self.nodes.len() * std::mem::size_of::<Node>() + self.scratch.len() + self.canon.len())
            as u64
    }

    fn bufs<'a>(&'a self, doc: &'a [u8], edit: &'a [u8]) -> Bufs<'a> {
        Bufs {
            doc,
            scratch: &self.scratch,
            edit,
            canon: &self.canon,
        }
    }

    /// Parses `src[start..end]` (a document of `data`, or raw JSON of an edit): the fast scan,
    /// else serde_json's verdict. `None` when it is not valid JSON. Returns (root, nesting).
    fn parse(
        &mut self,
        src: &[u8],
        buf: Buf,
        start: usize,
        end: usize,
        work: &mut Work,
    ) -> Result<Option<(u32, usize)>, Limit> {
        let scanned = Scanner::new(
            src,
            start,
            end,
            buf,
            false,
            &mut self.nodes,
            &mut self.scratch,
            work,
        )
        .document();
        match scanned {
            Ok(found) => return Ok(Some(found)),
            Err(Scan::Limit(l)) => return Err(l),
            Err(Scan::Unsure) => {}
        }
        let charge = ((end - start) as u64).saturating_mul(FALLBACK_BYTES_PER_BYTE);
        work.memory("serde_json fallback", self.bytes().saturating_add(charge))?;
        work.add(((end - start) as u64).saturating_mul(4))?;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&src[start..end]) else {
            return Ok(None);
        };
        let from = self.canon.len();
        serde_json::to_writer(&mut self.canon, &value).expect("writing to a Vec");
        drop(value);
        let to = self.canon.len();
        let canon = std::mem::take(&mut self.canon);
        let scanned = Scanner::new(
            &canon,
            from,
            to,
            Buf::Canon,
            true,
            &mut self.nodes,
            &mut self.scratch,
            work,
        )
        .document();
        self.canon = canon;
        match scanned {
            Ok(found) => Ok(Some(found)),
            Err(Scan::Limit(l)) => Err(l),
            Err(Scan::Unsure) => {
                // serde_json's own output is always within the scanner's grammar; if not, the
                // document is reported invalid rather than written differently.
                debug_assert!(false, "the scanner refused serde_json's output");
                Ok(None)
            }
        }
    }
}

/// What `read` leaves for a following `write`.
struct Cache {
    data: Vec<u8>,
    /// The `docs` word list `read` was given (2 little-endian words per document).
    docs: Vec<u8>,
    /// Root per document of `docs` (NIL: invalid, or already used by a `write`).
    roots: Vec<u32>,
    /// Nesting of each root.
    depths: Vec<u8>,
}

/// The json state of one plugin instance.
#[derive(Default)]
pub struct JsonState {
    arena: Arena,
    cache: Option<Cache>,
}

/// Host memory kept between calls at most (per instance); more is released after the call.
const KEEP_BYTES: usize = 4 << 20;

fn bad(call: &'static str, message: String) -> wasmtime::Error {
    JsonBadCall { call, message }.into()
}

fn limit_hit(call: &'static str) -> impl Fn(Limit) -> wasmtime::Error {
    move |limit| JsonLimitHit { call, limit }.into()
}

/// The number of words of the word list `list`; traps when it is not whole 4-byte words.
fn word_count(call: &'static str, list: &str, bytes: &[u8]) -> wasmtime::Result<usize> {
    sluice_abi::word_count(list, bytes).map_err(|e| bad(call, e.to_string()))
}

/// The documents of a call as (start, end) ranges, `None` for an absent span; traps on a span
/// outside `data`.
fn doc_ranges(
    call: &'static str,
    data: &[u8],
    docs: &[u8],
) -> wasmtime::Result<Vec<Option<(usize, usize)>>> {
    let count = word_count(call, "docs", docs)?;
    if !count.is_multiple_of(2) {
        return Err(bad(call, format!("`docs` holds {count} words, not pairs")));
    }
    docs.chunks_exact(2 * WORD_BYTES)
        .enumerate()
        .map(|(i, w)| {
            let w: [u32; 2] = words(w);
            if w[1] == u32::MAX {
                return Ok(None);
            }
            let (s, e) = (w[0] as usize, w[0] as usize + w[1] as usize);
            if e > data.len() {
                return Err(bad(
                    call,
                    format!(
                        "document {i} spans {s}..{e}, outside `data` ({} bytes)",
                        data.len()
                    ),
                ));
            }
            Ok(Some((s, e)))
        })
        .collect()
}

impl JsonState {
    /// `json.read`: see `wit/sluice.wit`.
    pub fn read(
        &mut self,
        data: Vec<u8>,
        docs: Vec<u8>,
        paths: Vec<String>,
        work: &mut Work,
    ) -> wasmtime::Result<wit::Fields> {
        const CALL: &str = "read";
        self.cache = None;
        self.arena.clear();
        let ranges = doc_ranges(CALL, &data, &docs)?;
        let hit = limit_hit(CALL);
        let paths = parse_paths(&paths, work).map_err(&hit)?;
        let words = (ranges.len() as u64).saturating_mul(1 + 3 * paths.len() as u64);
        work.memory("the `fields` result", words.saturating_mul(4))
            .map_err(&hit)?;
        let mut fields = Vec::with_capacity(words as usize * WORD_BYTES);
        let mut text = Vec::with_capacity(data.len() / 4);
        let mut roots = Vec::with_capacity(ranges.len());
        let mut depths = Vec::with_capacity(ranges.len());
        for range in &ranges {
            let parsed = match range {
                Some((s, e)) => self
                    .arena
                    .parse(&data, Buf::Doc, *s, *e, work)
                    .map_err(&hit)?,
                None => None,
            };
            let (root, depth) = parsed.unwrap_or((NIL, 0));
            roots.push(root);
            depths.push(depth as u8);
            let bufs = self.arena.bufs(&data, &[]);
            let nodes = &self.arena.nodes;
            let root_kind = if root == NIL {
                Kind::Missing as u32
            } else {
                nodes[root as usize].kind as u32
            };
            push_words(&mut fields, &[root_kind]);
            for path in &paths {
                let found = if root == NIL {
                    NIL
                } else {
                    edit::lookup(nodes, &bufs, root, path, work).map_err(&hit)?
                };
                if found == NIL {
                    push_words(&mut fields, &[Kind::Missing as u32, 0, 0]);
                    continue;
                }
                let n = &nodes[found as usize];
                let at = text.len();
                let max = work
                    .max_bytes
                    .saturating_sub(self.arena.bytes() + words * 4);
                match n.kind {
                    Kind::String => {
                        let content = bufs.get(n.buf, n.start + 1, n.len - 2);
                        if n.flags & tree::STR_ESCAPED != 0 {
                            text::decode_canonical(content, &mut text);
                        } else {
                            text.extend_from_slice(content);
                        }
                    }
                    Kind::Number => text.extend_from_slice(bufs.get(n.buf, n.start, n.len)),
                    Kind::Array | Kind::Object => {
                        tree::emit(nodes, &bufs, found, &mut text, max as usize)
                            .map_err(|l| hit(work.over_cap(l)))?;
                    }
                    _ => {}
                }
                work.add((text.len() - at) as u64).map_err(&hit)?;
                work.memory(
                    "the `text` result",
                    (text.len() as u64).saturating_add(words * 4),
                )
                .map_err(&hit)?;
                push_words(
                    &mut fields,
                    &[n.kind as u32, at as u32, (text.len() - at) as u32],
                );
            }
            work.add(1 + paths.len() as u64).map_err(&hit)?;
        }
        work.memory(
            "parsed documents and results",
            self.arena.bytes() + text.len() as u64 + words * 4,
        )
        .map_err(&hit)?;
        if text.len() > u32::MAX as usize - 1 {
            return Err(hit(Limit::Memory {
                what: "the `text` result",
                bytes: text.len() as u64,
                limit: u32::MAX as u64,
            }));
        }
        self.cache = Some(Cache {
            data,
            docs,
            roots,
            depths,
        });
        Ok(wit::Fields { fields, text })
    }

    /// `json.write`: see `wit/sluice.wit`.
    pub fn write(
        &mut self,
        data: Vec<u8>,
        docs: Vec<u8>,
        paths: Vec<String>,
        edits: Vec<u8>,
        text: Vec<u8>,
        work: &mut Work,
    ) -> wasmtime::Result<wit::Documents> {
        const CALL: &str = "write";
        let hit = limit_hit(CALL);
        let ranges = doc_ranges(CALL, &data, &docs)?;
        let paths: Vec<Path> = parse_paths(&paths, work).map_err(&hit)?;
        // Edits per document, in the order given.
        let edit_words = word_count(CALL, "edits", &edits)?;
        if !edit_words.is_multiple_of(5) {
            return Err(bad(
                CALL,
                format!("`edits` holds {edit_words} words, not 5 per edit"),
            ));
        }
        const EDIT_BYTES: usize = 5 * WORD_BYTES;
        let mut per_doc = vec![0u32; ranges.len() + 1];
        for (i, e) in edits.chunks_exact(EDIT_BYTES).enumerate() {
            let e: [u32; 5] = words(e);
            let (doc, path, op) = (e[0] as usize, e[1] as usize, e[2]);
            let end = e[3] as u64 + e[4] as u64;
            if doc >= ranges.len() || path >= paths.len() || op > 2 || end > text.len() as u64 {
                return Err(bad(
                    CALL,
                    format!(
                        "edit {i} (document {doc}, path {path}, operation {op}, text {}..{end}) is out of range: {} documents, {} paths, operations 0..=2, {} bytes of text",
                        e[3],
                        ranges.len(),
                        paths.len(),
                        text.len()
                    ),
                ));
            }
            per_doc[doc + 1] += 1;
        }
        for i in 1..per_doc.len() {
            per_doc[i] += per_doc[i - 1];
        }
        let mut order = vec![0u32; edit_words / 5];
        let mut fill = per_doc.clone();
        for (i, e) in edits.chunks_exact(EDIT_BYTES).enumerate() {
            let doc = sluice_abi::word(e, 0) as usize;
            order[fill[doc] as usize] = i as u32;
            fill[doc] += 1;
        }

        // The trees of `read`, if it was given the same bytes.
        let mut cache = self.cache.take().filter(|c| c.data == data);
        if cache.is_none() {
            self.arena.clear();
        }
        let mut cursor = 0usize;
        let mut out = Vec::with_capacity(data.len() + data.len() / 8);
        let mut spans = Vec::with_capacity(docs.len());
        const DOC_BYTES: usize = 2 * WORD_BYTES;
        for (d, range) in ranges.iter().enumerate() {
            let Some((s, e)) = *range else {
                push_words(&mut spans, &[0, u32::MAX]);
                continue;
            };
            let mut root = None;
            if let Some(c) = cache.as_mut() {
                let key = [s as u32, (e - s) as u32];
                if let Some(j) =
                    (cursor..c.roots.len()).find(|&j| words::<2>(&c.docs[j * DOC_BYTES..]) == key)
                {
                    cursor = j + 1;
                    if c.roots[j] != NIL {
                        root = Some(Some((c.roots[j], c.depths[j] as usize)));
                        c.roots[j] = NIL;
                    }
                }
            }
            let root = match root {
                Some(r) => r,
                None => self
                    .arena
                    .parse(&data, Buf::Doc, s, e, work)
                    .map_err(&hit)?,
            };
            let Some((mut root, _)) = root else {
                push_words(&mut spans, &[0, u32::MAX]);
                continue;
            };
            let mut ok = true;
            for &i in &order[per_doc[d] as usize..per_doc[d + 1] as usize] {
                let e: [u32; 5] = words(&edits[i as usize * EDIT_BYTES..]);
                let path = &paths[e[1] as usize];
                let value = (e[3] as usize, e[3] as usize + e[4] as usize);
                match apply(
                    &mut self.arena,
                    &data,
                    &text,
                    &mut root,
                    path,
                    e[2],
                    value,
                    work,
                )
                .map_err(&hit)?
                {
                    true => {}
                    false => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                push_words(&mut spans, &[0, u32::MAX]);
                continue;
            }
            let at = out.len();
            let max = work.max_bytes.saturating_sub(self.arena.bytes());
            let bufs = self.arena.bufs(&data, &text);
            tree::emit(&self.arena.nodes, &bufs, root, &mut out, max as usize)
                .map_err(|l| hit(work.over_cap(l)))?;
            work.add((out.len() - at) as u64).map_err(&hit)?;
            work.memory(
                "the written documents",
                self.arena.bytes() + out.len() as u64,
            )
            .map_err(&hit)?;
            if out.len() >= u32::MAX as usize {
                return Err(hit(Limit::Memory {
                    what: "the written documents",
                    bytes: out.len() as u64,
                    limit: u32::MAX as u64 - 1,
                }));
            }
            push_words(&mut spans, &[at as u32, (out.len() - at) as u32]);
        }
        drop(cache);
        self.arena.clear();
        Ok(wit::Documents {
            data: out,
            docs: spans,
        })
    }

    /// Releases what a call grew beyond [`KEEP_BYTES`].
    fn trim(&mut self) {
        if self.cache.is_some() {
            // `read`'s trees wait for a `write`; the next call releases them.
            return;
        }
        let a = &mut self.arena;
        if a.nodes.capacity() * std::mem::size_of::<Node>() > KEEP_BYTES {
            a.nodes = Vec::new();
        }
        if a.scratch.capacity() > KEEP_BYTES {
            a.scratch = Vec::new();
        }
        if a.canon.capacity() > KEEP_BYTES {
            a.canon = Vec::new();
        }
    }
}

impl wit::Host for PluginState {
    fn read(
        &mut self,
        data: Vec<u8>,
        docs: Vec<u8>,
        paths: Vec<String>,
    ) -> wasmtime::Result<wit::Fields> {
        let mut work = Work::new(self.deadline, self.memory_cap() as u64);
        let result = self.json.read(data, docs, paths, &mut work);
        if result.is_err() {
            self.json.cache = None;
            self.json.arena.clear();
        }
        self.json.trim();
        result
    }

    fn write(
        &mut self,
        data: Vec<u8>,
        docs: Vec<u8>,
        paths: Vec<String>,
        edits: Vec<u8>,
        text: Vec<u8>,
    ) -> wasmtime::Result<wit::Documents> {
        let mut work = Work::new(self.deadline, self.memory_cap() as u64);
        let result = self.json.write(data, docs, paths, edits, text, &mut work);
        self.json.cache = None;
        self.json.arena.clear();
        self.json.trim();
        result
    }
}
