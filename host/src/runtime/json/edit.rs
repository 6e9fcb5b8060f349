//! JSON Pointers (as `serde_json::Value::pointer` reads them) and the edits of `write`, on the
//! trees of [`super::tree`].

use super::tree::{Buf, Bufs, COMPACT, KEY_ESCAPED, Kind, MAX_NESTING, NIL, Node, STR_ESCAPED};
use super::{Arena, Limit, Work, text};

/// One segment of a pointer.
pub struct Segment {
    /// The key, in canonical (serde_json-escaped) form without quotes.
    key: Vec<u8>,
    /// Whether `key` holds escapes.
    escaped: bool,
    /// The segment as an array index, as serde_json parses it (no `+`, no leading zero).
    index: Option<usize>,
}

/// A parsed JSON Pointer.
pub struct Path {
    /// `false` for a non-empty pointer not starting with `/`: it finds nothing.
    valid: bool,
    segments: Vec<Segment>,
}

/// Parses every pointer once per call.
pub fn parse_paths(paths: &[String], work: &mut Work) -> Result<Vec<Path>, Limit> {
    // What the parsed form takes: per segment a `Segment` and its key (a pointer of many empty
    // segments, `////…`, is the worst case), per path a `Path`.
    let per_segment = (std::mem::size_of::<Segment>() + 16) as u64;
    let bytes: u64 = paths
        .iter()
        .map(|p| {
            let segments = p.bytes().filter(|&b| b == b'/').count() as u64;
            std::mem::size_of::<Path>() as u64 + 2 * p.len() as u64 + per_segment * segments
        })
        .sum();
    work.memory("parsed paths", bytes)?;
    work.add(bytes)?;
    Ok(paths.iter().map(|p| parse(p)).collect())
}

fn parse(pointer: &str) -> Path {
    if pointer.is_empty() {
        return Path {
            valid: true,
            segments: Vec::new(),
        };
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Path {
            valid: false,
            segments: Vec::new(),
        };
    };
    let segments = rest
        .split('/')
        .map(|s| {
            // The order serde_json uses.
            let s = s.replace("~1", "/").replace("~0", "~");
            let index = if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
                None
            } else {
                s.parse().ok()
            };
            let mut key = Vec::with_capacity(s.len() + 2);
            text::escaped_into(&s, &mut key);
            key.pop();
            key.remove(0);
            Segment {
                escaped: text::needs_escape(&s),
                key,
                index,
            }
        })
        .collect();
    Path {
        valid: true,
        segments,
    }
}

/// The child of `n` that `seg` names, with the child before it (or NIL): `None` if none.
fn child(
    nodes: &[Node],
    bufs: &Bufs<'_>,
    n: u32,
    seg: &Segment,
    work: &mut Work,
) -> Result<Option<(u32, u32)>, Limit> {
    let node = &nodes[n as usize];
    let mut prev = NIL;
    let mut c = node.first;
    let mut walked = 0u64;
    let found = match node.kind {
        Kind::Object => loop {
            if c == NIL {
                break None;
            }
            let ch = &nodes[c as usize];
            walked += 1;
            if ch.key_len as usize == seg.key.len()
                && bufs.get(ch.key_buf, ch.key_start, ch.key_len) == seg.key.as_slice()
            {
                break Some((c, prev));
            }
            prev = c;
            c = ch.next;
        },
        Kind::Array => match seg.index {
            None => None,
            Some(mut i) => loop {
                if c == NIL {
                    break None;
                }
                walked += 1;
                if i == 0 {
                    break Some((c, prev));
                }
                i -= 1;
                prev = c;
                c = nodes[c as usize].next;
            },
        },
        _ => None,
    };
    work.add(walked)?;
    Ok(found)
}

/// The node `path` finds from `root`, or NIL.
pub fn lookup(
    nodes: &[Node],
    bufs: &Bufs<'_>,
    root: u32,
    path: &Path,
    work: &mut Work,
) -> Result<u32, Limit> {
    if !path.valid {
        return Ok(NIL);
    }
    let mut n = root;
    for seg in &path.segments {
        match child(nodes, bufs, n, seg, work)? {
            Some((c, _)) => n = c,
            None => return Ok(NIL),
        }
    }
    Ok(n)
}

/// Clears [`COMPACT`] on `n` and every container above it: their spans no longer hold them.
fn touch(nodes: &mut [Node], mut n: u32) {
    while n != NIL {
        nodes[n as usize].flags &= !COMPACT;
        n = nodes[n as usize].parent;
    }
}

/// Applies one edit (`op`: 0 remove, 1 set string, 2 set raw JSON; `value` a range of `text`) to
/// the document at `root`. `Ok(false)` when the edit fails the document (see the WIT).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    arena: &mut Arena,
    data: &[u8],
    text: &[u8],
    root: &mut u32,
    path: &Path,
    op: u32,
    value: (usize, usize),
    work: &mut Work,
) -> Result<bool, Limit> {
    if !path.valid {
        // Nothing is there: removing it does nothing, setting it has no parent.
        return Ok(op == 0);
    }
    let Some((last, parents)) = path.segments.split_last() else {
        if op == 0 {
            return Ok(false);
        }
        let Some((new, _)) = new_value(arena, text, op, value, work)? else {
            return Ok(false);
        };
        arena.nodes[new as usize].parent = NIL;
        *root = new;
        return Ok(true);
    };
    let mut parent = *root;
    {
        let bufs = arena.bufs(data, text);
        for seg in parents {
            match child(&arena.nodes, &bufs, parent, seg, work)? {
                Some((c, _)) => parent = c,
                None => return Ok(op == 0),
            }
        }
    }
    let kind = arena.nodes[parent as usize].kind;
    if !matches!(kind, Kind::Object | Kind::Array) {
        return Ok(op == 0);
    }
    let found = child(&arena.nodes, &arena.bufs(data, text), parent, last, work)?;
    if op == 0 {
        if let Some((c, prev)) = found {
            let next = arena.nodes[c as usize].next;
            if prev == NIL {
                arena.nodes[parent as usize].first = next;
            } else {
                arena.nodes[prev as usize].next = next;
            }
            touch(&mut arena.nodes, parent);
        }
        return Ok(true);
    }
    if found.is_none() && kind == Kind::Array {
        return Ok(false);
    }
    let Some((new, nesting)) = new_value(arena, text, op, value, work)? else {
        return Ok(false);
    };
    // The parent holds `parents.len() + 1` containers down to itself.
    if parents.len() + 1 + nesting > MAX_NESTING {
        return Ok(false);
    }
    let nodes = &mut arena.nodes;
    nodes[new as usize].parent = parent;
    match found {
        Some((old, prev)) => {
            let o = nodes[old as usize];
            let n = &mut nodes[new as usize];
            n.next = o.next;
            n.key_start = o.key_start;
            n.key_len = o.key_len;
            n.key_buf = o.key_buf;
            n.flags = (n.flags & !KEY_ESCAPED) | (o.flags & KEY_ESCAPED);
            if prev == NIL {
                nodes[parent as usize].first = new;
            } else {
                nodes[prev as usize].next = new;
            }
        }
        None => {
            // A new key, at the end.
            let at = arena.scratch.len();
            arena.scratch.extend_from_slice(&last.key);
            let n = &mut nodes[new as usize];
            n.next = NIL;
            n.key_start = at as u32;
            n.key_len = last.key.len() as u32;
            n.key_buf = Buf::Scratch;
            n.flags &= !KEY_ESCAPED;
            if last.escaped {
                n.flags |= KEY_ESCAPED;
            }
            let mut c = nodes[parent as usize].first;
            if c == NIL {
                nodes[parent as usize].first = new;
            } else {
                let mut walked = 0;
                while nodes[c as usize].next != NIL {
                    c = nodes[c as usize].next;
                    walked += 1;
                }
                work.add(walked)?;
                nodes[c as usize].next = new;
            }
        }
    }
    touch(nodes, parent);
    Ok(true)
}

/// The node of an edit's new value, and its nesting; `None` if the text is not UTF-8 (a string)
/// or not JSON (raw).
fn new_value(
    arena: &mut Arena,
    text: &[u8],
    op: u32,
    (start, end): (usize, usize),
    work: &mut Work,
) -> Result<Option<(u32, usize)>, Limit> {
    if op == 2 {
        return arena.parse(text, Buf::Edit, start, end, work);
    }
    let Ok(s) = std::str::from_utf8(&text[start..end]) else {
        return Ok(None);
    };
    work.add(s.len() as u64)?;
    let at = arena.scratch.len();
    text::escaped_into(s, &mut arena.scratch);
    work.node(arena.nodes.len())?;
    work.memory("edited values", arena.bytes())?;
    arena.nodes.push(Node {
        start: at as u32,
        len: (arena.scratch.len() - at) as u32,
        key_start: 0,
        key_len: 0,
        parent: NIL,
        first: NIL,
        next: NIL,
        kind: Kind::String,
        buf: Buf::Scratch,
        key_buf: Buf::Scratch,
        flags: if text::needs_escape(s) {
            STR_ESCAPED
        } else {
            0
        },
    });
    Ok(Some(((arena.nodes.len() - 1) as u32, 0)))
}
