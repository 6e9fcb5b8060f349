// Text helpers with Rust's semantics (char::is_alphanumeric, str::trim), so a JavaScript plugin
// treats text exactly like its Rust twin.
import { ALNUM } from "./unicode.js";

/** Rust's `char::is_alphanumeric` for a code point: Unicode Alphabetic or Numeric. */
export function isAlphanumeric(cp) {
  if (cp < 0x80) return (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
  let lo = 0;
  let hi = ALNUM.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ALNUM[mid] <= cp) lo = mid + 1;
    else hi = mid;
  }
  return (lo & 1) === 1;
}

const WHITE_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

/** Rust's `char::is_whitespace` (the White_Space property). */
export function isWhitespace(cp) {
  return WHITE_SPACE.has(cp);
}

/** Rust's `str::trim`. */
export function trim(s) {
  let a = 0;
  let b = s.length;
  while (a < b && WHITE_SPACE.has(s.charCodeAt(a))) a++;
  while (b > a && WHITE_SPACE.has(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}
