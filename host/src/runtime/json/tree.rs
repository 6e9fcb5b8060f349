//! The parsed form of a batch's documents: one arena of [`Node`]s whose text stays where it is
//! (spans into the input, the edit text or the host's own buffers), a validating scanner that
//! builds it, and the serialiser that writes it back as serde_json would.
//!
//! Every leaf's span holds its *canonical* text, byte for byte what `serde_json::to_vec` writes
//! for it: a string in its quotes with serde_json's escapes, a number as serde_json prints it.
//! The scanner keeps a token in place when it is already canonical and otherwise writes the
//! canonical form into [`Bufs::scratch`]. A container whose span in its buffer is already its
//! canonical serialisation (no whitespace, canonical leaves, no duplicate key) is marked
//! [`COMPACT`] and serialised by one copy.
//!
//! The scanner never declares a document invalid: whatever it is not sure of (invalid input,
//! duplicate keys, lone surrogates, a number serde_json refuses, nesting at serde_json's limit)
//! is [`Scan::Unsure`], and the caller lets serde_json decide.

use super::text::{PLAIN, decode_any, escaped_into, hex4, needs_escape, special, utf8_len};
use super::{Limit, Work};

/// No node.
pub const NIL: u32 = u32::MAX;

/// Nesting serde_json refuses: its parser allows 127 containers inside each other.
pub const MAX_NESTING: usize = 127;

/// What a node holds; the numbers are the WIT `kind` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not a node: a path that is not there, or an invalid document.
    Missing = 0,
    Null = 1,
    False = 2,
    True = 3,
    Number = 4,
    String = 5,
    Array = 6,
    Object = 7,
}

/// Which buffer a span points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Buf {
    /// The call's `data`.
    Doc = 0,
    /// Canonical text the host wrote (re-encoded strings and numbers, added keys).
    Scratch = 1,
    /// The `text` of a `write` call.
    Edit = 2,
    /// Documents serde_json parsed and serialised (the fallback).
    Canon = 3,
}

/// The span of a container is its canonical serialisation.
pub const COMPACT: u8 = 1;
/// The key's canonical text holds escapes.
pub const KEY_ESCAPED: u8 = 2;
/// The string's canonical text holds escapes.
pub const STR_ESCAPED: u8 = 4;

/// One JSON value in the arena, linked to its parent, first child and next sibling.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// The value's text: a leaf's canonical text; a container's source (canonical if [`COMPACT`]).
    pub start: u32,
    /// Length of the text.
    pub len: u32,
    /// In an object: the key's canonical text without its quotes.
    pub key_start: u32,
    /// Length of the key.
    pub key_len: u32,
    /// The containing node, [`NIL`] for a root.
    pub parent: u32,
    /// First child of a container.
    pub first: u32,
    /// Next sibling.
    pub next: u32,
    /// What the node holds.
    pub kind: Kind,
    /// Buffer of `start`.
    pub buf: Buf,
    /// Buffer of `key_start`.
    pub key_buf: Buf,
    /// [`COMPACT`], [`KEY_ESCAPED`], [`STR_ESCAPED`].
    pub flags: u8,
}

/// The buffers spans point into, borrowed for one operation.
pub struct Bufs<'a> {
    /// The call's `data`.
    pub doc: &'a [u8],
    /// Canonical text written by the host.
    pub scratch: &'a [u8],
    /// The `write` call's `text` (empty for `read`).
    pub edit: &'a [u8],
    /// serde_json's serialisations.
    pub canon: &'a [u8],
}

impl Bufs<'_> {
    /// The bytes of a span.
    pub fn get(&self, buf: Buf, start: u32, len: u32) -> &[u8] {
        let b = match buf {
            Buf::Doc => self.doc,
            Buf::Scratch => self.scratch,
            Buf::Edit => self.edit,
            Buf::Canon => self.canon,
        };
        &b[start as usize..start as usize + len as usize]
    }
}

/// Why a scan gave up.
#[derive(Debug)]
pub enum Scan {
    /// Not sure the fast path agrees with serde_json here: let serde_json decide.
    Unsure,
    /// Over the call's budget.
    Limit(Limit),
}

impl From<Limit> for Scan {
    fn from(l: Limit) -> Self {
        Scan::Limit(l)
    }
}

/// Builds nodes from the text of one value.
pub struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    end: usize,
    buf: Buf,
    /// Numbers are serde_json's own output: keep them as they are (serde_json's float parser is
    /// not exact, so re-parsing its output could change a last digit).
    trusted_numbers: bool,
    nodes: &'a mut Vec<Node>,
    scratch: &'a mut Vec<u8>,
    work: &'a mut Work,
    deepest: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl<'a> Scanner<'a> {
    /// A scanner of `src[start..end]`, whose spans are offsets into `src` tagged `buf`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        src: &'a [u8],
        start: usize,
        end: usize,
        buf: Buf,
        trusted_numbers: bool,
        nodes: &'a mut Vec<Node>,
        scratch: &'a mut Vec<u8>,
        work: &'a mut Work,
    ) -> Self {
        Scanner {
            src,
            pos: start,
            end,
            buf,
            trusted_numbers,
            nodes,
            scratch,
            work,
            deepest: 0,
        }
    }

    /// Scans the whole span as one document (surrounding whitespace allowed); returns its root
    /// and its nesting (0 for a scalar). On failure the nodes added are removed again.
    pub fn document(mut self) -> Result<(u32, usize), Scan> {
        let mark = self.nodes.len();
        let scratch_mark = self.scratch.len();
        let result = self.whole();
        if result.is_err() {
            self.nodes.truncate(mark);
            self.scratch.truncate(scratch_mark);
        }
        result
    }

    fn whole(&mut self) -> Result<(u32, usize), Scan> {
        self.work.add((self.end - self.pos) as u64)?;
        self.skip_ws();
        let root = self.value(NIL, 0)?;
        self.skip_ws();
        if self.pos != self.end {
            return Err(Scan::Unsure);
        }
        Ok((root, self.deepest))
    }

    fn skip_ws(&mut self) -> bool {
        let from = self.pos;
        while self.pos < self.end && is_ws(self.src[self.pos]) {
            self.pos += 1;
        }
        self.pos != from
    }

    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.src[self.pos])
    }

    fn push(&mut self, node: Node) -> Result<u32, Scan> {
        self.work.node(self.nodes.len())?;
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as u32)
    }

    fn leaf(&self, kind: Kind, start: usize, len: usize, parent: u32) -> Node {
        Node {
            start: start as u32,
            len: len as u32,
            key_start: 0,
            key_len: 0,
            parent,
            first: NIL,
            next: NIL,
            kind,
            buf: self.buf,
            key_buf: self.buf,
            flags: COMPACT,
        }
    }

    /// One value at `self.pos` (no whitespace before it); `depth` containers enclose it.
    fn value(&mut self, parent: u32, depth: usize) -> Result<u32, Scan> {
        let start = self.pos;
        match self.peek().ok_or(Scan::Unsure)? {
            b'{' | b'[' => self.container(parent, depth + 1),
            b'"' => {
                let (escaped, canonical) = self.string()?;
                let len = self.pos - start;
                let mut node = self.leaf(Kind::String, start, len, parent);
                if !canonical {
                    let decoded = decode_any(&self.src[start + 1..self.pos - 1])?;
                    node.start = self.scratch.len() as u32;
                    escaped_into(&decoded, self.scratch);
                    node.len = self.scratch.len() as u32 - node.start;
                    node.buf = Buf::Scratch;
                    node.flags = 0;
                    if needs_escape(&decoded) {
                        node.flags |= STR_ESCAPED;
                    }
                } else if escaped {
                    node.flags |= STR_ESCAPED;
                }
                self.push(node)
            }
            b'-' | b'0'..=b'9' => {
                let (len, simple) = self.number()?;
                let mut node = self.leaf(Kind::Number, start, len, parent);
                if !simple && !self.trusted_numbers {
                    let token = &self.src[start..start + len];
                    let value: serde_json::Value =
                        serde_json::from_slice(token).map_err(|_| Scan::Unsure)?;
                    node.start = self.scratch.len() as u32;
                    serde_json::to_writer(&mut *self.scratch, &value).expect("writing to a Vec");
                    node.len = self.scratch.len() as u32 - node.start;
                    node.buf = Buf::Scratch;
                    node.flags = 0;
                }
                self.push(node)
            }
            _ => {
                let (kind, word): (Kind, &[u8]) = match self.src[start] {
                    b'n' => (Kind::Null, b"null"),
                    b't' => (Kind::True, b"true"),
                    b'f' => (Kind::False, b"false"),
                    _ => return Err(Scan::Unsure),
                };
                if self.src[start..self.end].starts_with(word) {
                    self.pos += word.len();
                    let node = self.leaf(kind, start, word.len(), parent);
                    self.push(node)
                } else {
                    Err(Scan::Unsure)
                }
            }
        }
    }

    fn container(&mut self, parent: u32, depth: usize) -> Result<u32, Scan> {
        if depth > MAX_NESTING {
            return Err(Scan::Unsure);
        }
        self.deepest = self.deepest.max(depth);
        let start = self.pos;
        let object = self.src[start] == b'{';
        let close = if object { b'}' } else { b']' };
        let kind = if object { Kind::Object } else { Kind::Array };
        let me = self.push(self.leaf(kind, start, 0, parent))?;
        self.pos += 1;
        let mut compact = !self.skip_ws();
        let mut last = NIL;
        let mut count = 0usize;
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                let (key_start, key_len, key_buf, key_flags) = if object {
                    if self.peek() != Some(b'"') {
                        return Err(Scan::Unsure);
                    }
                    let k = self.pos;
                    let (escaped, canonical) = self.string()?;
                    let key = if canonical {
                        (
                            k + 1,
                            self.pos - k - 2,
                            self.buf,
                            if escaped { KEY_ESCAPED } else { 0 },
                        )
                    } else {
                        compact = false;
                        let decoded = decode_any(&self.src[k + 1..self.pos - 1])?;
                        let at = self.scratch.len();
                        escaped_into(&decoded, self.scratch);
                        let flags = if needs_escape(&decoded) {
                            KEY_ESCAPED
                        } else {
                            0
                        };
                        (at + 1, self.scratch.len() - at - 2, Buf::Scratch, flags)
                    };
                    compact &= !self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(Scan::Unsure);
                    }
                    self.pos += 1;
                    compact &= !self.skip_ws();
                    key
                } else {
                    (0, 0, self.buf, 0)
                };
                let child = self.value(me, depth)?;
                {
                    let c = &mut self.nodes[child as usize];
                    c.key_start = key_start as u32;
                    c.key_len = key_len as u32;
                    c.key_buf = key_buf;
                    c.flags |= key_flags;
                    compact &= c.flags & COMPACT != 0 && c.buf == self.buf;
                }
                if last == NIL {
                    self.nodes[me as usize].first = child;
                } else {
                    self.nodes[last as usize].next = child;
                }
                last = child;
                count += 1;
                compact &= !self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        compact &= !self.skip_ws();
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Scan::Unsure),
                }
            }
        }
        if object && count > 1 && self.has_duplicate_key(me, count)? {
            return Err(Scan::Unsure);
        }
        let n = &mut self.nodes[me as usize];
        n.len = (self.pos - start) as u32;
        if !compact {
            n.flags &= !COMPACT;
        }
        Ok(me)
    }

    /// Whether two keys of object `me` are equal (their canonical texts are, since canonical
    /// encoding is one-to-one).
    fn has_duplicate_key(&mut self, me: u32, count: usize) -> Result<bool, Scan> {
        let bufs = Bufs {
            doc: if self.buf == Buf::Doc { self.src } else { &[] },
            scratch: self.scratch,
            edit: if self.buf == Buf::Edit { self.src } else { &[] },
            canon: if self.buf == Buf::Canon {
                self.src
            } else {
                &[]
            },
        };
        let nodes = &*self.nodes;
        let key = |i: u32| {
            let n = &nodes[i as usize];
            bufs.get(n.key_buf, n.key_start, n.key_len)
        };
        self.work.add((count * count.min(16)) as u64)?;
        let mut c = nodes[me as usize].first;
        if count <= 16 {
            // Most objects are small: compare pairwise, without allocating, on a fingerprint
            // (length and first bytes) before the bytes themselves.
            let mut keys: [(u64, &[u8]); 16] = [(0, &[]); 16];
            let mut i = 0;
            while c != NIL {
                let k = key(c);
                let mut head = [0u8; 8];
                let n = k.len().min(7);
                head[..n].copy_from_slice(&k[..n]);
                head[7] = k.len() as u8;
                let f = u64::from_le_bytes(head);
                if keys[..i].iter().any(|(g, o)| *g == f && *o == k) {
                    return Ok(true);
                }
                keys[i] = (f, k);
                i += 1;
                c = nodes[c as usize].next;
            }
            return Ok(false);
        }
        let mut keys = Vec::with_capacity(count);
        while c != NIL {
            keys.push(key(c));
            c = nodes[c as usize].next;
        }
        keys.sort_unstable();
        Ok(keys.windows(2).any(|w| w[0] == w[1]))
    }

    /// A string at `self.pos` (on its quote), left after its closing quote. Returns (has
    /// escapes, is canonical as it is).
    fn string(&mut self) -> Result<(bool, bool), Scan> {
        let s = &self.src[..self.end];
        let mut p = self.pos + 1;
        let mut escaped = false;
        let mut canonical = true;
        loop {
            // Plain bytes first, eight at a time, then one by one: most of a document is string
            // content.
            while p + 8 <= s.len() {
                let w = u64::from_le_bytes(s[p..p + 8].try_into().expect("8 bytes"));
                if special(w) {
                    break;
                }
                p += 8;
            }
            while p < s.len() && PLAIN[s[p] as usize] {
                p += 1;
            }
            let b = *s.get(p).ok_or(Scan::Unsure)?;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *s.get(p + 1).ok_or(Scan::Unsure)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => p += 2,
                        b'/' => {
                            canonical = false;
                            p += 2;
                        }
                        b'u' => {
                            let hex = s.get(p + 2..p + 6).ok_or(Scan::Unsure)?;
                            let cp = hex4(hex).ok_or(Scan::Unsure)?;
                            // serde_json writes \u00xx (lowercase) only for control characters
                            // that have no short escape.
                            let short = matches!(cp, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                            if cp >= 0x20 || short || hex.iter().any(u8::is_ascii_uppercase) {
                                canonical = false;
                            }
                            p += 6;
                        }
                        _ => return Err(Scan::Unsure),
                    }
                }
                0x80.. => p += utf8_len(&s[p..]).ok_or(Scan::Unsure)?,
                _ => return Err(Scan::Unsure),
            }
        }
        self.pos = p + 1;
        Ok((escaped, canonical))
    }

    /// A number at `self.pos`: its length, and whether it is an integer serde_json prints as
    /// written (not `-0`, at most 18 digits so that it fits in i64/u64).
    fn number(&mut self) -> Result<(usize, bool), Scan> {
        let start = self.pos;
        let s = &self.src[..self.end];
        let mut p = self.pos;
        let neg = s[p] == b'-';
        if neg {
            p += 1;
        }
        let digits_from = p;
        match s.get(p) {
            Some(b'0') => p += 1,
            Some(b'1'..=b'9') => {
                while matches!(s.get(p), Some(b'0'..=b'9')) {
                    p += 1;
                }
            }
            _ => return Err(Scan::Unsure),
        }
        let digits = p - digits_from;
        let mut integer = true;
        if s.get(p) == Some(&b'.') {
            integer = false;
            p += 1;
            if !matches!(s.get(p), Some(b'0'..=b'9')) {
                return Err(Scan::Unsure);
            }
            while matches!(s.get(p), Some(b'0'..=b'9')) {
                p += 1;
            }
        }
        if matches!(s.get(p), Some(b'e' | b'E')) {
            integer = false;
            p += 1;
            if matches!(s.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            if !matches!(s.get(p), Some(b'0'..=b'9')) {
                return Err(Scan::Unsure);
            }
            while matches!(s.get(p), Some(b'0'..=b'9')) {
                p += 1;
            }
        }
        self.pos = p;
        let simple = integer && digits <= 18 && !(neg && s[digits_from] == b'0');
        Ok((p - start, simple))
    }
}

/// Writes node `n` as serde_json serialises it; stops with [`Limit::Memory`] once `out` holds
/// more than `max` bytes.
pub fn emit(
    nodes: &[Node],
    bufs: &Bufs<'_>,
    n: u32,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), Limit> {
    let node = &nodes[n as usize];
    if node.flags & COMPACT != 0 || !matches!(node.kind, Kind::Object | Kind::Array) {
        out.extend_from_slice(bufs.get(node.buf, node.start, node.len));
        return over(out, max);
    }
    let object = node.kind == Kind::Object;
    out.push(if object { b'{' } else { b'[' });
    let mut c = node.first;
    while c != NIL {
        let child = &nodes[c as usize];
        if object {
            out.push(b'"');
            out.extend_from_slice(bufs.get(child.key_buf, child.key_start, child.key_len));
            out.extend_from_slice(b"\":");
        }
        emit(nodes, bufs, c, out, max)?;
        c = child.next;
        if c != NIL {
            out.push(b',');
        }
    }
    out.push(if object { b'}' } else { b']' });
    over(out, max)
}

fn over(out: &[u8], max: usize) -> Result<(), Limit> {
    if out.len() > max {
        return Err(Limit::Memory {
            what: "serialised JSON",
            bytes: out.len() as u64,
            limit: max as u64,
        });
    }
    Ok(())
}
