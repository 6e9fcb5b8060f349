//! JSON string text as serde_json reads and writes it: UTF-8 checks, escapes decoded and written.

use super::tree::Scan;

/// Bytes a string holds as they are: ASCII other than controls, `"` and `\\`.
pub static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x80 {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// Whether any byte of `w` is not [`PLAIN`]: a quote, a backslash, a control character or a
/// non-ASCII byte (exact as a whole; which byte is left to the byte loop).
pub fn special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(w ^ (ONES * b'"' as u64));
    let backslash = zero(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (quote | backslash | control | (w & HIGH)) != 0
}

/// The length of the UTF-8 sequence starting `s` (its first byte is not ASCII), if it is valid
/// (no overlong form, no surrogate, at most U+10FFFF): what `str::from_utf8` accepts, checked in
/// place rather than in a second pass over the string.
pub fn utf8_len(s: &[u8]) -> Option<usize> {
    let cont = |i: usize| s.get(i).is_some_and(|b| b & 0xc0 == 0x80);
    let (len, ok) = match s[0] {
        0xc2..=0xdf => (2, true),
        0xe0 => (3, matches!(s.get(1), Some(0xa0..=0xbf))),
        0xed => (3, matches!(s.get(1), Some(0x80..=0x9f))),
        0xe1..=0xef => (3, cont(1)),
        0xf0 => (4, matches!(s.get(1), Some(0x90..=0xbf))),
        0xf4 => (4, matches!(s.get(1), Some(0x80..=0x8f))),
        0xf1..=0xf3 => (4, cont(1)),
        _ => return None,
    };
    (ok && (2..len).all(cont) && (len > 2 || cont(1))).then_some(len)
}

pub fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Decodes the content of a string with any JSON escapes; a lone surrogate is [`Scan::Unsure`].
pub fn decode_any(s: &[u8]) -> Result<String, Scan> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let e = s[i + 1];
        i += 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(&s[i..i + 4]).ok_or(Scan::Unsure)?;
                i += 4;
                match hi {
                    0xd800..=0xdbff => {
                        if s.get(i..i + 2) != Some(b"\\u") {
                            return Err(Scan::Unsure);
                        }
                        let lo =
                            hex4(s.get(i + 2..i + 6).ok_or(Scan::Unsure)?).ok_or(Scan::Unsure)?;
                        if !(0xdc00..=0xdfff).contains(&lo) {
                            return Err(Scan::Unsure);
                        }
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            .ok_or(Scan::Unsure)?
                    }
                    0xdc00..=0xdfff => return Err(Scan::Unsure),
                    _ => char::from_u32(hi).ok_or(Scan::Unsure)?,
                }
            }
            _ => return Err(Scan::Unsure),
        };
        let mut b = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
    String::from_utf8(out).map_err(|_| Scan::Unsure)
}

/// Decodes the content of a canonical string (only serde_json's escapes) into `out`.
pub fn decode_canonical(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let run = s[i..]
            .iter()
            .position(|&b| b == b'\\')
            .unwrap_or(s.len() - i);
        out.extend_from_slice(&s[i..i + run]);
        i += run;
        if i >= s.len() {
            break;
        }
        let c = match s[i + 1] {
            b'"' => b'"',
            b'\\' => b'\\',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => {
                // \u00xx
                let v = hex4(&s[i + 2..i + 6]).expect("canonical escape") as u8;
                i += 4;
                v
            }
        };
        out.push(c);
        i += 2;
    }
}

/// Whether serde_json escapes some character of `s`.
pub fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes `s` in quotes as serde_json does.
pub fn escaped_into(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            8 => b'b',
            12 => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        from = i + 1;
        if short == 0 {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}
