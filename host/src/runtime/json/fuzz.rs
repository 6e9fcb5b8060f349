//! Generated and mutated documents, read and edited by the fast path and by serde_json.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{PATHS, check, strings};

/// A random JSON document: random whitespace, keys from a small set (so that paths hit and keys
/// repeat), escapes canonical or not, numbers of every shape.
fn gen_value(rng: &mut StdRng, depth: usize, out: &mut Vec<u8>) {
    let ws = |rng: &mut StdRng, out: &mut Vec<u8>| {
        if rng.random_bool(0.15) {
            for _ in 0..rng.random_range(1..3) {
                out.push(b" \t\n\r"[rng.random_range(0..4)]);
            }
        }
    };
    ws(rng, out);
    let pick = if depth > 6 {
        rng.random_range(0..6)
    } else {
        rng.random_range(0..9)
    };
    match pick {
        0 => out.extend_from_slice(b"null"),
        1 => out.extend_from_slice(if rng.random() { b"true" } else { b"false" }),
        2 | 3 => gen_number(rng, out),
        4 | 5 => gen_string(rng, out),
        6 => {
            out.push(b'[');
            let n = rng.random_range(0..4);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                gen_value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let n = rng.random_range(0..5);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                ws(rng, out);
                const KEYS: &[&str] = &[
                    "\"a\"",
                    "\"b\"",
                    "\"0\"",
                    "\"1\"",
                    "\"a/b\"",
                    "\"~\"",
                    "\"\\u0061\"",
                    "\"\\\"q\"",
                    "\"ü\"",
                    "\"n\"",
                    "\"\"",
                ];
                out.extend_from_slice(KEYS[rng.random_range(0..KEYS.len())].as_bytes());
                ws(rng, out);
                out.push(b':');
                gen_value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(b'}');
        }
    }
    ws(rng, out);
}

fn gen_number(rng: &mut StdRng, out: &mut Vec<u8>) {
    const NUMS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "42",
        "123456789012345678",
        "1234567890123456789",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "0.5",
        "-0.0",
        "1e2",
        "1E-2",
        "1.25e+3",
        "1e400",
        "5e-324",
        "0.1",
        "3.0",
        "100000000000000000000000",
        "2.2250738585072014e-308",
        "9007199254740993",
    ];
    if rng.random_bool(0.5) {
        out.extend_from_slice(NUMS[rng.random_range(0..NUMS.len())].as_bytes());
    } else {
        let v: i64 = rng.random_range(-100000..100000);
        out.extend_from_slice(v.to_string().as_bytes());
        if rng.random_bool(0.3) {
            out.extend_from_slice(format!(".{}", rng.random_range(0..1000)).as_bytes());
        }
        if rng.random_bool(0.2) {
            out.extend_from_slice(format!("e{}", rng.random_range(-30..30)).as_bytes());
        }
    }
}

fn gen_string(rng: &mut StdRng, out: &mut Vec<u8>) {
    const PARTS: &[&str] = &[
        "a",
        "b",
        "hello",
        "ü",
        "😀",
        "\\n",
        "\\t",
        "\\\"",
        "\\\\",
        "\\/",
        "\\u0041",
        "\\u00e9",
        "\\u001f",
        "\\u001F",
        "\\u0000",
        "\\u0008",
        "\\b",
        "\\f",
        "\\r",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\udc00",
        "\\u2028",
        "\u{7f}",
        " ",
        "@",
        "~",
    ];
    out.push(b'"');
    for _ in 0..rng.random_range(0..5) {
        out.extend_from_slice(PARTS[rng.random_range(0..PARTS.len())].as_bytes());
    }
    out.push(b'"');
}

/// Breaks a document now and then: truncation, a stray byte, invalid UTF-8, trailing garbage.
fn mutate(rng: &mut StdRng, doc: &mut Vec<u8>) {
    match rng.random_range(0..12) {
        0 if !doc.is_empty() => {
            let n = rng.random_range(0..doc.len());
            doc.truncate(n);
        }
        1 if !doc.is_empty() => {
            let i = rng.random_range(0..doc.len());
            doc[i] = b"{}[],:\"\\ 0e-.x\xff\x00"[rng.random_range(0..16)];
        }
        2 => doc.extend_from_slice(b" x"),
        3 => {
            let i = rng.random_range(0..=doc.len());
            doc.insert(i, 0xc3);
        }
        _ => {}
    }
}

#[test]
fn generated_documents_read_and_write_as_serde_json() {
    let mut rng = StdRng::seed_from_u64(16);
    let paths = strings(PATHS);
    for round in 0..2000 {
        let mut docs = Vec::new();
        for _ in 0..20 {
            let mut d = Vec::new();
            gen_value(&mut rng, 0, &mut d);
            if round % 2 == 1 {
                mutate(&mut rng, &mut d);
            }
            docs.push(d);
        }
        let edits: Vec<Vec<(usize, u32, Vec<u8>)>> = (0..docs.len())
            .map(|_| {
                (0..rng.random_range(0..4))
                    .map(|_| {
                        let p = rng.random_range(0..paths.len());
                        match rng.random_range(0..3) {
                            0 => (p, 0, Vec::new()),
                            1 => (p, 1, "x\"\u{1}ü".as_bytes().to_vec()),
                            _ => {
                                let mut v = Vec::new();
                                gen_value(&mut rng, 3, &mut v);
                                (p, 2, v)
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = docs.iter().map(|d| d.as_slice()).collect();
        check(&refs, &paths, &edits);
    }
}
