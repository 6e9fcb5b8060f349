//! The fast path against serde_json itself: hand-written tricky documents, then generated and
//! mutated ones, read and edited both ways and compared byte for byte.

use serde_json::Value;

use sluice_abi::{from_words as w, iter_words};

use super::{JsonState, Limit, Work};

fn work() -> Work {
    Work::new(None, 1 << 30)
}

/// One batch of documents in one buffer, as a plugin sends them.
fn batch(docs: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    for d in docs {
        spans.extend_from_slice(&[data.len() as u32, d.len() as u32]);
        data.extend_from_slice(d);
    }
    (data, w(&spans))
}

/// A word list's words.
fn words_of(list: &[u8]) -> Vec<u32> {
    assert!(list.len().is_multiple_of(4), "whole words");
    iter_words(list).collect()
}

fn kind_of(v: &Value) -> u32 {
    match v {
        Value::Null => 1,
        Value::Bool(false) => 2,
        Value::Bool(true) => 3,
        Value::Number(_) => 4,
        Value::String(_) => 5,
        Value::Array(_) => 6,
        Value::Object(_) => 7,
    }
}

/// What `read` must give for one document: root kind, then (kind, text) per path.
fn reference_read(doc: &[u8], paths: &[String]) -> (u32, Vec<(u32, Vec<u8>)>) {
    let Ok(v) = serde_json::from_slice::<Value>(doc) else {
        return (0, paths.iter().map(|_| (0, Vec::new())).collect());
    };
    let fields = paths
        .iter()
        .map(|p| match v.pointer(p) {
            None => (0, Vec::new()),
            Some(f) => {
                let text = match f {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Number(n) => n.to_string().into_bytes(),
                    Value::Array(_) | Value::Object(_) => serde_json::to_vec(f).unwrap(),
                    _ => Vec::new(),
                };
                (kind_of(f), text)
            }
        })
        .collect();
    (kind_of(&v), fields)
}

fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

fn index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

/// An edit: path, operation (0 remove, 1 string, 2 raw), text.
type Edit = (String, u32, Vec<u8>);

/// What `write` must give for one document, on `serde_json::Value`.
fn reference_write(doc: &[u8], edits: &[Edit]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(doc).ok()?;
    for (path, op, text) in edits {
        let new = || -> Option<Value> {
            match op {
                1 => Some(Value::String(std::str::from_utf8(text).ok()?.to_string())),
                _ => serde_json::from_slice(text).ok(),
            }
        };
        if path.is_empty() {
            if *op == 0 {
                return None;
            }
            v = new()?;
            continue;
        }
        if !path.starts_with('/') {
            if *op == 0 {
                continue;
            }
            return None;
        }
        let cut = path.rfind('/').unwrap();
        let (parent_path, last) = (&path[..cut], &path[cut + 1..]);
        let last = last.replace("~1", "/").replace("~0", "~");
        let depth = parent_path.matches('/').count() + 1;
        let Some(parent) = v.pointer_mut(parent_path) else {
            if *op == 0 {
                continue;
            }
            return None;
        };
        match (parent, op) {
            (Value::Object(m), 0) => {
                m.shift_remove(&last);
            }
            (Value::Array(a), 0) => {
                if let Some(i) = index(&last).filter(|i| *i < a.len()) {
                    a.remove(i);
                }
            }
            (Value::Object(m), _) => {
                let n = new()?;
                if depth + nesting(&n) > 127 {
                    return None;
                }
                m.insert(last, n);
            }
            (Value::Array(a), _) => {
                let i = index(&last).filter(|i| *i < a.len())?;
                let n = new()?;
                if depth + nesting(&n) > 127 {
                    return None;
                }
                a[i] = n;
            }
            (_, 0) => {}
            _ => return None,
        }
    }
    Some(serde_json::to_vec(&v).unwrap())
}

/// Reads `paths` of `docs` with the fast path and checks every field against serde_json; then
/// applies `edits` (per document) both ways and compares the written bytes.
pub(super) fn check(docs: &[&[u8]], paths: &[String], edits: &[Vec<(usize, u32, Vec<u8>)>]) {
    let (data, spans) = batch(docs);
    let mut state = JsonState::default();
    let got = state
        .read(data.clone(), spans.clone(), paths.to_vec(), &mut work())
        .unwrap();
    let per = 1 + 3 * paths.len();
    let fields = words_of(&got.fields);
    assert_eq!(fields.len(), docs.len() * per);
    for (d, doc) in docs.iter().enumerate() {
        let (root, want) = reference_read(doc, paths);
        let f = &fields[d * per..(d + 1) * per];
        let show = String::from_utf8_lossy(doc);
        assert_eq!(f[0], root, "root kind of {show:?}");
        for (p, (kind, text)) in want.iter().enumerate() {
            let w = &f[1 + 3 * p..4 + 3 * p];
            let got_text = &got.text[w[1] as usize..(w[1] + w[2]) as usize];
            assert_eq!(
                (w[0], String::from_utf8_lossy(got_text)),
                (*kind, String::from_utf8_lossy(text)),
                "path {:?} of {show:?}",
                paths[p]
            );
        }
    }
    // Write, reusing the read's trees (same bytes), and again from scratch.
    let mut words = Vec::new();
    let mut text = Vec::new();
    for (d, list) in edits.iter().enumerate() {
        for (p, op, t) in list {
            words.extend_from_slice(&[d as u32, *p as u32, *op, text.len() as u32, t.len() as u32]);
            text.extend_from_slice(t);
        }
    }
    for fresh in [false, true] {
        if fresh {
            state = JsonState::default();
        }
        let out = state
            .write(
                data.clone(),
                spans.clone(),
                paths.to_vec(),
                w(&words),
                text.clone(),
                &mut work(),
            )
            .unwrap();
        for (d, doc) in docs.iter().enumerate() {
            let list: Vec<Edit> = edits
                .get(d)
                .map(|l| {
                    l.iter()
                        .map(|(p, op, t)| (paths[*p].clone(), *op, t.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let want = reference_write(doc, &list);
            let spans = words_of(&out.docs);
            let (at, len) = (spans[2 * d], spans[2 * d + 1]);
            let got =
                (len != u32::MAX).then(|| out.data[at as usize..(at + len) as usize].to_vec());
            assert_eq!(
                got.as_deref().map(String::from_utf8_lossy),
                want.as_deref().map(String::from_utf8_lossy),
                "writing {list:?} into {:?} (fresh: {fresh})",
                String::from_utf8_lossy(doc)
            );
        }
    }
}

pub(super) fn strings(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

pub(super) const PATHS: &[&str] = &[
    "",
    "/a",
    "/b",
    "/a/0",
    "/a/b",
    "/0",
    "/1",
    "/00",
    "/+1",
    "/-",
    "/a~1b",
    "/~0",
    "/~01",
    "x",
    "/ü",
    "/\"q",
    "/a\\b",
    "/",
    "//",
    "/e\u{1}",
    "/a/b/c",
    "/n/0/a",
    "/18446744073709551616",
];

#[test]
fn tricky_documents_read_and_write_as_serde_json() {
    let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let deep_bad = format!("{}{}", "[".repeat(128), "]".repeat(128));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(127), "}".repeat(127));
    let docs: Vec<Vec<u8>> = [
        r#"{"a":1,"b":"x"}"#,
        r#"{"a":[1,2,{"b":3}],"b":{"c":null}}"#,
        r#"  {"a" : [ 1 , 2 ] ,"b":true}  "#,
        "{\"a\":1,\"a\":2}",
        "{\"a\":1,\"b\":2,\"a\":{\"x\":[]}}",
        r#"{"a":"\/\u0041\u00e9\ud83d\ude00\n\u001F\u001f\u0008\b"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00x"}"#,
        r#"{"a":"\ud800\u0041"}"#,
        r#"{"a":"\x41"}"#,
        r#"{"a\u0000b":1,"a/b":2,"~":3,"ü":4,"\"q":5,"a\\b":6,"":7,"e\u0001":8}"#,
        r#"{"a":-0,"b":-0.0,"0":0.0,"1":1e2,"x":1E2}"#,
        r#"[18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809]"#,
        r#"[123456789012345678,1234567890123456789,-123456789012345678,-1234567890123456789]"#,
        r#"[1.5e300,1e-7,123.456e-10,2.5e-5,1e16,1e17,0.000001,1.7976931348623157e308,5e-324,1e21]"#,
        "[1e400]",
        "[-1e400]",
        "[0.1,0.2,0.30000000000000004,3.141592653589793,100.0,1.0e0]",
        "[01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[+1]",
        "[1e]",
        "[1e+]",
        "[nul]",
        "[truex]",
        "{\"a\":1}x",
        "{\"a\":1},",
        "{\"a\":1",
        "",
        "   ",
        "\u{feff}{\"a\":1}",
        "{\"a\":\"\u{7f}\u{2028}\"}",
        "{\"a\":\"tab\there\"}",
        "{a:1}",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{\"a\"1}",
        "null",
        "true",
        "false",
        "\"s\"",
        "42",
        "-0",
        "[]",
        "{}",
        "[[],{},[{}]]",
        "\t\r\n [ 1 ]\n",
        deep_ok.as_str(),
        deep_bad.as_str(),
        deep_obj.as_str(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        b"{\"a\":\"\xff\"}".to_vec(),
        b"{\"a\":\"\xc3(\"}".to_vec(),
        b"{\"a\":\"\xed\xa0\x80\"}".to_vec(),
        b"{\"a\":\"\xc0\xaf\"}".to_vec(),
        b"{\"\xff\":1}".to_vec(),
    ])
    .collect();
    let docs: Vec<&[u8]> = docs.iter().map(|d| d.as_slice()).collect();
    let paths = strings(PATHS);
    let edits: Vec<Vec<(usize, u32, Vec<u8>)>> = (0..docs.len())
        .map(|i| match i % 6 {
            0 => vec![(1, 1, "m\u{0}\"é".into())],
            1 => vec![(2, 0, vec![]), (1, 2, b" [ 1 , {\"z\" : -0 } ] ".to_vec())],
            2 => vec![(3, 1, b"v".to_vec()), (4, 2, b"{\"k\":1,\"k\":2}".to_vec())],
            3 => vec![(0, 2, b"{\"a\":[7]}".to_vec()), (3, 2, b"1e2".to_vec())],
            4 => vec![
                (10, 1, b"slash".to_vec()),
                (11, 0, vec![]),
                (14, 1, b"\xff".to_vec()),
            ],
            _ => vec![(1, 0, vec![]), (2, 2, b"nope".to_vec())],
        })
        .collect();
    check(&docs, &paths, &edits);
    // Every document once more without edits: untouched documents come out as serde_json writes.
    check(&docs, &paths, &[]);
}

#[test]
fn sets_that_nest_too_deep_fail_the_document() {
    let deep = format!("{}{}", "[".repeat(126), "]".repeat(126));
    let path = format!("/a{}", "/0".repeat(0));
    check(
        &[b"{\"a\":{}}", b"{\"a\":1}"],
        &[path, "/a/b".into()],
        &[
            vec![(0, 2, deep.clone().into_bytes())],
            vec![
                (0, 2, format!("[{deep}]").into_bytes()),
                (1, 1, b"x".to_vec()),
            ],
        ],
    );
}

#[test]
fn a_canonical_document_is_copied_and_an_edit_touches_only_its_parents() {
    let doc = br#"{"id":"u-1","name":{"first":"Zo\u00eb"},"email":"a@b.c","n":[1,2]}"#;
    let (data, spans) = batch(&[doc]);
    let mut state = JsonState::default();
    let paths = strings(&["/email", "/name/first", "/n"]);
    let got = state
        .read(data.clone(), spans.clone(), paths.clone(), &mut work())
        .unwrap();
    let fields = words_of(&got.fields);
    assert_eq!(fields[0], 7);
    let t = |i: usize| &got.text[fields[2 + 3 * i] as usize..][..fields[3 + 3 * i] as usize];
    assert_eq!(t(0), b"a@b.c");
    assert_eq!(t(1), "Zoë".as_bytes());
    assert_eq!(t(2), b"[1,2]");
    let out = state
        .write(
            data,
            spans,
            paths,
            w(&[0, 0, 1, 0, 5]),
            b"x@y.z".to_vec(),
            &mut work(),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(out.data).unwrap(),
        r#"{"id":"u-1","name":{"first":"Zoë"},"email":"x@y.z","n":[1,2]}"#
    );
}

#[test]
fn bad_spans_and_edits_trap_with_a_message() {
    let mut state = JsonState::default();
    let e = state
        .read(b"{}".to_vec(), w(&[0, 3]), vec![], &mut work())
        .unwrap_err();
    assert!(e.to_string().contains("outside `data`"), "{e}");
    let e = state
        .write(
            b"{}".to_vec(),
            w(&[0, 2]),
            vec!["/a".into()],
            w(&[0, 1, 1, 0, 0]),
            vec![],
            &mut work(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    // An absent document stays absent.
    let out = state
        .write(
            b"{}".to_vec(),
            w(&[0, u32::MAX]),
            vec![],
            vec![],
            vec![],
            &mut work(),
        )
        .unwrap();
    assert_eq!(words_of(&out.docs), vec![0, u32::MAX]);
    // A word list that is not whole 4-byte words is a plugin bug: the call traps, naming it.
    let mut docs = w(&[0, 2]);
    docs.pop();
    let e = state
        .read(b"{}".to_vec(), docs.clone(), vec![], &mut work())
        .unwrap_err();
    assert!(e.to_string().contains("`docs` holds 7 bytes"), "{e}");
    let e = state
        .write(
            b"{}".to_vec(),
            w(&[0, 2]),
            vec!["/a".into()],
            vec![0; 21],
            vec![],
            &mut work(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("`edits` holds 21 bytes"), "{e}");
}

#[test]
fn results_beyond_the_memory_budget_are_a_memory_limit() {
    let mut state = JsonState::default();
    let doc = format!("[{}]", vec!["1"; 10_000].join(","));
    let (data, spans) = batch(&[doc.as_bytes(); 4]);
    let err = state
        .read(
            data,
            spans,
            vec!["".into(); 100],
            &mut Work::new(None, 1 << 20),
        )
        .unwrap_err();
    let hit = err.downcast_ref::<super::JsonLimitHit>().expect("a limit");
    assert!(matches!(hit.limit, Limit::Memory { .. }), "{hit}");
}

#[test]
fn the_scanners_utf8_check_is_std_s() {
    const SOME: [u8; 12] = [
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xf5, 0xff,
    ];
    for a in 0x80..=0xffu8 {
        for b in 0..=0xffu8 {
            for c in SOME {
                for d in SOME {
                    let s = [a, b, c, d];
                    let want = match std::str::from_utf8(&s) {
                        Ok(t) => t.chars().next().map(char::len_utf8),
                        Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&s[..e.valid_up_to()])
                            .unwrap()
                            .chars()
                            .next()
                            .map(char::len_utf8),
                        Err(_) => None,
                    };
                    assert_eq!(super::text::utf8_len(&s), want, "{s:x?}");
                }
            }
        }
    }
}

#[test]
fn the_eight_byte_string_check_agrees_with_the_byte_table() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(8);
    let interesting = [
        0u8, 0x1f, 0x20, 0x21, b'"', b'\\', 0x5b, 0x7f, 0x80, 0xff, b'a',
    ];
    for _ in 0..200_000 {
        let bytes: [u8; 8] = std::array::from_fn(|_| {
            if rand::Rng::random_bool(&mut rng, 0.8) {
                b'a' + rand::Rng::random_range(&mut rng, 0..26)
            } else {
                interesting[rand::Rng::random_range(&mut rng, 0..interesting.len())]
            }
        });
        let want = bytes.iter().any(|&b| !super::text::PLAIN[b as usize]);
        assert_eq!(
            super::text::special(u64::from_le_bytes(bytes)),
            want,
            "{bytes:x?}"
        );
    }
}
