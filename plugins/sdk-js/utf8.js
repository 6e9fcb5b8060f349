// Strict UTF-8 (as Rust's str::from_utf8): no overlongs, no surrogates, nothing above U+10FFFF.

/** Decodes `bytes`; throws on invalid UTF-8. */
export function utf8Decode(bytes, start = 0, end = bytes.length) {
  let s = "";
  let i = start;
  while (i < end) {
    const c = bytes[i];
    if (c < 0x80) {
      // Fast path for ASCII runs.
      let j = i + 1;
      while (j < end && bytes[j] < 0x80 && j - i < 4096) j++;
      s += String.fromCharCode.apply(null, bytes.subarray(i, j));
      i = j;
      continue;
    }
    const cp = decodeAt(bytes, i, end);
    s += String.fromCodePoint(cp);
    i += cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return s;
}

/** The code point of the multi-byte sequence at `i`; throws if it is not valid UTF-8. */
export function decodeAt(bytes, i, end) {
  const c = bytes[i];
  const cont = (k) => {
    if (i + k >= end) throw new Error("invalid UTF-8");
    const b = bytes[i + k];
    if ((b & 0xc0) !== 0x80) throw new Error("invalid UTF-8");
    return b & 0x3f;
  };
  let cp;
  if (c >= 0xc2 && c <= 0xdf) {
    cp = ((c & 0x1f) << 6) | cont(1);
  } else if (c >= 0xe0 && c <= 0xef) {
    cp = ((c & 0x0f) << 12) | (cont(1) << 6) | cont(2);
    if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error("invalid UTF-8");
  } else if (c >= 0xf0 && c <= 0xf4) {
    cp = ((c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    if (cp < 0x10000 || cp > 0x10ffff) throw new Error("invalid UTF-8");
  } else {
    throw new Error("invalid UTF-8");
  }
  return cp;
}

/** Encodes a string (lone surrogates become U+FFFD). */
export function utf8Encode(s) {
  const out = new Uint8Array(s.length * 3);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        out[n++] = 0xf0 | (cp >> 18);
        out[n++] = 0x80 | ((cp >> 12) & 0x3f);
        out[n++] = 0x80 | ((cp >> 6) & 0x3f);
        out[n++] = 0x80 | (cp & 0x3f);
        i++;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 0x3f);
    } else {
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 0x3f);
      out[n++] = 0x80 | (c & 0x3f);
    }
  }
  return out.subarray(0, n);
}
