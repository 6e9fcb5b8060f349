//! JSON field access done by the host (the WIT `json` interface): read a few fields of every
//! record's JSON value and write edits back without parsing or serialising JSON in the plugin.
//! Results are serde_json's, byte for byte the same in every language.
//!
//! Declare the paths (JSON Pointers) once, in `init`; in `transform`, [`Paths::doc`] gives the
//! record's view — the first call of a batch reads those paths of *every* record in one host
//! call — and [`Doc::edit`] starts an edited copy of the value, emitted with
//! [`OutputBuilder::json_value`](crate::OutputBuilder::json_value). The SDK applies every edit of
//! the batch in one host call after the last record and puts the written documents in place.
//!
//! ```ignore
//! struct Mask { json: json::Paths }
//! const EMAIL: usize = 0;
//!
//! impl Transform for Mask {
//!     fn init(_: &Config) -> Result<Self, String> {
//!         Ok(Mask { json: json::Paths::new(["/email"]) })
//!     }
//!     fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
//!         let doc = self.json.doc(out);
//!         if !doc.kind().is_object() {
//!             return Err("not a JSON object".into());
//!         }
//!         let edit = doc.edit();
//!         if let json::Field::String(_) = doc.get(EMAIL) {
//!             edit.set_str(EMAIL, "hidden");
//!         }
//!         out.record().key(record.key).json_value(&edit).emit();
//!         Ok(())
//!     }
//! }
//! ```

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};

use sluice_abi::{
    INPUT_BYTES, InputBatch, NONE, OUTPUT_BYTES, OUTPUT_WORDS, OutputBatch, WORD_BYTES, push_words,
    set_word, word, words,
};

/// Where a record's value span (words 2 and 3) sits in its [`INPUT_BYTES`] of views: the span's
/// bytes are copied as they are into the `docs` word lists, already little-endian.
const VALUE_SPAN: std::ops::Range<usize> = 2 * WORD_BYTES..4 * WORD_BYTES;

use crate::bindings::sluice::plugin::json as host;
use crate::{Emitter, OutputBuilder};

/// Value-span length marking an output whose value is an edited document still to be written:
/// the offset word holds the edit's slot.
const PENDING: u32 = u32::MAX - 1;

/// What a path found (the WIT `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not there (or the document is not valid JSON).
    Missing,
    /// `null`.
    Null,
    /// `false`.
    False,
    /// `true`.
    True,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    fn from_word(w: u32) -> Kind {
        match w {
            1 => Kind::Null,
            2 => Kind::False,
            3 => Kind::True,
            4 => Kind::Number,
            5 => Kind::String,
            6 => Kind::Array,
            7 => Kind::Object,
            _ => Kind::Missing,
        }
    }

    /// Whether it is an object.
    pub fn is_object(self) -> bool {
        self == Kind::Object
    }
}

/// A field of a document, borrowed from the batch's read result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// The path is not there.
    Missing,
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json prints it.
    Number(&'a str),
    /// A string, decoded.
    String(&'a str),
    /// An array, compact JSON.
    Array(&'a str),
    /// An object, compact JSON.
    Object(&'a str),
}

/// The paths a plugin reads and edits, declared once; also holds the current batch's results.
pub struct Paths {
    id: u32,
    paths: Vec<String>,
    batch: u64,
    /// The batch's `read` result: a word list, little-endian.
    fields: Vec<u8>,
    text: Vec<u8>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// The batch being processed (set by the SDK around the batch loop) and its number.
    static BATCH: Cell<(*const InputBatch, u64)> = const { Cell::new((std::ptr::null(), 0)) };
    /// Edited documents waiting for the batch's `write`.
    static PENDING_EDITS: RefCell<Pending> = RefCell::new(Pending::default());
}

#[derive(Default)]
struct Pending {
    groups: Vec<Group>,
    /// Per slot: (group, document index in the group).
    slots: Vec<(u32, u32)>,
}

struct Group {
    id: u32,
    paths: Vec<String>,
    /// Word lists, little-endian, as the host takes them.
    docs: Vec<u8>,
    edits: Vec<u8>,
    text: Vec<u8>,
}

impl Paths {
    /// Declares `paths` (JSON Pointers: `""` the whole value, `/a/b` field `b` of field `a`, `/0`
    /// an array element); [`Doc::get`] and the edits name them by their index here.
    pub fn new<I, S>(paths: I) -> Paths
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Paths {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            paths: paths.into_iter().map(Into::into).collect(),
            batch: 0,
            fields: Vec::new(),
            text: Vec::new(),
        }
    }

    /// The JSON Pointer of top-level key `key` (`/` and `~` escaped).
    pub fn pointer(key: &str) -> String {
        format!("/{}", key.replace('~', "~0").replace('/', "~1"))
    }

    /// The declared paths.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The view of the value of the record `out` emits for. The first call in a batch reads the
    /// paths of every record's value in one host call.
    ///
    /// # Panics
    /// Outside [`Transform::transform`](crate::Transform::transform).
    pub fn doc(&mut self, out: &Emitter<'_>) -> Doc<'_> {
        let (batch, number) = BATCH.with(Cell::get);
        assert!(
            !batch.is_null(),
            "json::Paths::doc is only usable while the SDK runs a batch"
        );
        if self.batch != number {
            // SAFETY: `BATCH` points to the batch `__process` is running, set before the loop
            // and cleared after it; `transform` only runs inside that loop.
            let batch = unsafe { &*batch };
            let mut docs = Vec::with_capacity(batch.len() * 2 * WORD_BYTES);
            for r in batch.records.chunks_exact(INPUT_BYTES) {
                docs.extend_from_slice(&r[VALUE_SPAN]);
            }
            let got = host::read(&batch.data, &docs, &self.paths);
            self.fields = got.fields;
            self.text = got.text;
            self.batch = number;
        }
        let per = (1 + 3 * self.paths.len()) * WORD_BYTES;
        let at = out.input as usize * per;
        Doc {
            paths: self,
            fields: &self.fields[at..at + per],
            record: out.input,
        }
    }
}

/// One record's value as the batch's `read` found it.
pub struct Doc<'a> {
    paths: &'a Paths,
    /// This document's words of the `read` result.
    fields: &'a [u8],
    record: u32,
}

impl<'a> Doc<'a> {
    /// The kind of the whole value: [`Kind::Missing`] if it is not valid JSON (or absent).
    pub fn kind(&self) -> Kind {
        Kind::from_word(word(self.fields, 0))
    }

    /// Whether the value is valid JSON.
    pub fn is_valid(&self) -> bool {
        word(self.fields, 0) != 0
    }

    /// The field at declared path number `path`.
    pub fn get(&self, path: usize) -> Field<'a> {
        let w: [u32; 3] = words(&self.fields[(1 + 3 * path) * WORD_BYTES..]);
        let text = || {
            let bytes = &self.paths.text[w[1] as usize..(w[1] + w[2]) as usize];
            // SAFETY: `json.read` returns UTF-8 text for every field (wit/sluice.wit), as the
            // host's `string` results are trusted to be; checking it again would cost ~30 ns
            // per field in WebAssembly.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        };
        match w[0] {
            1 => Field::Null,
            2 => Field::Bool(false),
            3 => Field::Bool(true),
            4 => Field::Number(text()),
            5 => Field::String(text()),
            6 => Field::Array(text()),
            7 => Field::Object(text()),
            _ => Field::Missing,
        }
    }

    /// Starts an edited copy of this value (unchanged until edited), to emit with
    /// [`OutputBuilder::json_value`].
    pub fn edit(&self) -> Edit {
        let (batch, _) = BATCH.with(Cell::get);
        // SAFETY: as in `Paths::doc`, which made this view.
        let batch = unsafe { &*batch };
        let r = self.record as usize * INPUT_BYTES;
        let span = &batch.records[r..r + INPUT_BYTES][VALUE_SPAN];
        PENDING_EDITS.with(|p| {
            let mut p = p.borrow_mut();
            let g = match p.groups.iter().position(|g| g.id == self.paths.id) {
                Some(g) => g,
                None => {
                    p.groups.push(Group {
                        id: self.paths.id,
                        paths: self.paths.paths.clone(),
                        docs: Vec::new(),
                        edits: Vec::new(),
                        text: Vec::new(),
                    });
                    p.groups.len() - 1
                }
            };
            let doc = (p.groups[g].docs.len() / (2 * WORD_BYTES)) as u32;
            p.groups[g].docs.extend_from_slice(span);
            p.slots.push((g as u32, doc));
            Edit {
                slot: p.slots.len() as u32 - 1,
                paths: self.paths.paths.len(),
            }
        })
    }
}

/// An edited copy of a record's value; edits apply in order, when the batch ends. It belongs to
/// the batch it was made in: keeping it for a later batch edits (or emits) another document.
#[derive(Debug)]
pub struct Edit {
    slot: u32,
    paths: usize,
}

impl Edit {
    fn push(&self, path: usize, op: u32, text: &[u8]) {
        assert!(path < self.paths, "path {path} was not declared");
        PENDING_EDITS.with(|p| {
            let mut p = p.borrow_mut();
            let (g, doc) = p.slots[self.slot as usize];
            let g = &mut p.groups[g as usize];
            let at = g.text.len() as u32;
            g.text.extend_from_slice(text);
            push_words(&mut g.edits, &[doc, path as u32, op, at, text.len() as u32]);
        })
    }

    /// Sets path number `path` to the string `value` (adding the key if its object lacks it).
    pub fn set_str(&self, path: usize, value: &str) {
        self.push(path, 1, value.as_bytes())
    }

    /// Sets path number `path` to the JSON text `json` (a document whose JSON is invalid is
    /// rejected when the batch ends).
    pub fn set_raw(&self, path: usize, json: &[u8]) {
        self.push(path, 2, json)
    }

    /// Removes path number `path` (nothing if it is not there).
    pub fn remove(&self, path: usize) {
        self.push(path, 0, &[])
    }
}

impl OutputBuilder<'_> {
    /// Sets the value to the edited document `edit` (serialised compact, as serde_json does).
    pub fn json_value(mut self, edit: &Edit) -> Self {
        self.value = (edit.slot, PENDING);
        self
    }
}

/// Called by the SDK before the batch loop.
pub(crate) fn begin(batch: &InputBatch) {
    BATCH.with(|b| {
        let (_, n) = b.get();
        b.set((batch as *const InputBatch, n.wrapping_add(1)));
    });
}

/// Called by the SDK after the batch loop: writes every edited document in one host call per
/// set of paths and puts them in place of the outputs' placeholders. An input whose document
/// could not be written (not valid JSON, or an edit failed) is rejected instead.
pub(crate) fn finish(out: &mut OutputBatch) {
    let batch = BATCH.with(|b| {
        let (p, n) = b.get();
        b.set((std::ptr::null(), n));
        p
    });
    let pending = PENDING_EDITS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.slots.is_empty() {
        return;
    }
    // SAFETY: `begin` set it to the batch that is still borrowed by `__process`.
    let batch = unsafe { &*batch };
    let mut written = Vec::with_capacity(pending.groups.len());
    for g in &pending.groups {
        let docs = host::write(&batch.data, &g.docs, &g.paths, &g.edits, &g.text);
        let base = out.data.len() as u32;
        out.data.extend_from_slice(&docs.data);
        written.push((base, docs.docs));
    }
    let mut failed: Vec<u32> = Vec::new();
    for r in out.records.chunks_exact_mut(OUTPUT_BYTES) {
        let w: [u32; OUTPUT_WORDS] = words(r);
        if w[4] != PENDING {
            continue;
        }
        let (g, doc) = pending.slots[w[3] as usize];
        let (base, spans) = &written[g as usize];
        let [at, len] = words(&spans[2 * doc as usize * WORD_BYTES..]);
        if len == NONE {
            if failed.last() != Some(&w[0]) {
                failed.push(w[0]);
            }
            set_word(r, 3, 0);
            set_word(r, 4, NONE);
        } else {
            set_word(r, 3, base + at);
            set_word(r, 4, len);
        }
    }
    if !failed.is_empty() {
        let mut kept = Vec::with_capacity(out.records.len());
        for r in out.records.chunks_exact(OUTPUT_BYTES) {
            if !failed.contains(&word(r, 0)) {
                kept.extend_from_slice(r);
            }
        }
        out.records = kept;
        for input in failed {
            out.reject(
                input,
                "the edited JSON value could not be written: the value is not valid JSON, or an edit's parent is missing or not an object or array, or a raw JSON edit is invalid",
            );
        }
    }
}
