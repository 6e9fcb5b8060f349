// JSON as the Rust SDK's plugins see it (serde_json with `preserve_order`), so a JavaScript plugin
// produces byte-identical JSON to its Rust twin.
//
// `parse(bytes)` takes UTF-8 bytes and returns: objects as `Map` (key order kept; a repeated key
// keeps its first position and its last value), arrays, strings, integers within i64/u64 as
// `BigInt`, other numbers as `Number`, booleans and `null`. It throws where serde_json fails
// (invalid UTF-8, lone surrogate escapes, numbers out of range, nesting deeper than 127, trailing
// characters). `stringify(value)` returns compact UTF-8 bytes with serde_json's escapes and float
// format.
import { decodeAt, utf8Decode } from "./utf8.js";

const MAX_DEPTH = 127;
const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;

class Parser {
  constructor(b) {
    this.b = b;
    this.i = 0;
    this.depth = 0;
  }
  fail() {
    throw new SyntaxError("invalid JSON");
  }
  ws() {
    const b = this.b;
    let i = this.i;
    while (i < b.length) {
      const c = b[i];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }
  value() {
    this.ws();
    const c = this.b[this.i];
    switch (c) {
      case 0x7b: // {
        return this.object();
      case 0x5b: // [
        return this.array();
      case 0x22: // "
        return this.string();
      case 0x74:
        return this.lit("true", true);
      case 0x66:
        return this.lit("false", false);
      case 0x6e:
        return this.lit("null", null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail();
    }
  }
  lit(word, v) {
    for (let k = 0; k < word.length; k++) if (this.b[this.i + k] !== word.charCodeAt(k)) this.fail();
    this.i += word.length;
    return v;
  }
  enter() {
    if (++this.depth > MAX_DEPTH) this.fail();
    this.i++;
  }
  object() {
    this.enter();
    const m = new Map();
    this.ws();
    if (this.b[this.i] === 0x7d) {
      this.i++;
      this.depth--;
      return m;
    }
    for (;;) {
      this.ws();
      if (this.b[this.i] !== 0x22) this.fail();
      const k = this.string();
      this.ws();
      if (this.b[this.i] !== 0x3a) this.fail();
      this.i++;
      m.set(k, this.value());
      this.ws();
      const c = this.b[this.i++];
      if (c === 0x2c) continue;
      if (c === 0x7d) break;
      this.fail();
    }
    this.depth--;
    return m;
  }
  array() {
    this.enter();
    const a = [];
    this.ws();
    if (this.b[this.i] === 0x5d) {
      this.i++;
      this.depth--;
      return a;
    }
    for (;;) {
      a.push(this.value());
      this.ws();
      const c = this.b[this.i++];
      if (c === 0x2c) continue;
      if (c === 0x5d) break;
      this.fail();
    }
    this.depth--;
    return a;
  }
  hex4() {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.b[this.i++];
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else this.fail();
      v = v * 16 + d;
    }
    return v;
  }
  string() {
    const b = this.b;
    this.i++;
    let s = "";
    let run = this.i;
    for (;;) {
      if (this.i >= b.length) this.fail();
      const c = b[this.i];
      if (c === 0x22) {
        s += utf8Decode(b, run, this.i);
        this.i++;
        return s;
      }
      if (c < 0x20) this.fail();
      if (c === 0x5c) {
        s += utf8Decode(b, run, this.i);
        this.i++;
        const e = b[this.i++];
        switch (e) {
          case 0x22: s += '"'; break;
          case 0x5c: s += "\\"; break;
          case 0x2f: s += "/"; break;
          case 0x62: s += "\b"; break;
          case 0x66: s += "\f"; break;
          case 0x6e: s += "\n"; break;
          case 0x72: s += "\r"; break;
          case 0x74: s += "\t"; break;
          case 0x75: {
            const u = this.hex4();
            if (u >= 0xdc00 && u <= 0xdfff) this.fail(); // lone trailing surrogate
            if (u >= 0xd800 && u <= 0xdbff) {
              if (b[this.i] !== 0x5c || b[this.i + 1] !== 0x75) this.fail();
              this.i += 2;
              const l = this.hex4();
              if (l < 0xdc00 || l > 0xdfff) this.fail();
              s += String.fromCharCode(u, l);
            } else {
              s += String.fromCharCode(u);
            }
            break;
          }
          default:
            this.fail();
        }
        run = this.i;
        continue;
      }
      if (c < 0x80) this.i++;
      else {
        const cp = decodeAt(b, this.i, b.length);
        this.i += cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      }
    }
  }
  number() {
    const b = this.b;
    const start = this.i;
    const digit = () => b[this.i] >= 0x30 && b[this.i] <= 0x39;
    if (b[this.i] === 0x2d) this.i++;
    if (b[this.i] === 0x30) this.i++;
    else if (digit()) while (digit()) this.i++;
    else this.fail();
    let float = false;
    if (b[this.i] === 0x2e) {
      float = true;
      this.i++;
      if (!digit()) this.fail();
      while (digit()) this.i++;
    }
    if (b[this.i] === 0x65 || b[this.i] === 0x45) {
      float = true;
      this.i++;
      if (b[this.i] === 0x2b || b[this.i] === 0x2d) this.i++;
      if (!digit()) this.fail();
      while (digit()) this.i++;
    }
    const text = String.fromCharCode.apply(null, b.subarray(start, this.i));
    if (!float) {
      const n = BigInt(text);
      if (text[0] === "-") {
        if (n === 0n) return -0;
        if (n >= I64_MIN) return n;
      } else if (n <= U64_MAX) {
        return n;
      }
    }
    const f = Number(text);
    if (!Number.isFinite(f)) this.fail(); // serde_json: number out of range
    return f;
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

// Inputs the engine's own JSON.parse reads exactly as serde_json does: no float syntax, -0 or
// integer beyond 2^53 (serde_json keeps integers exact and tells 1 from 1.0), no surrogate
// escape (serde_json refuses lone ones), no integer-like object key (a JS object puts those
// first) and no nesting that could pass 127 levels. Anything else takes the byte parser.
const NEEDS_EXACT = /[0-9][.eE]|-0(?![0-9])|[0-9]{16}|\\u[dD][89abcdefABCDEF]|"(?:0|[1-9][0-9]*)"\s*:/;
const OPENERS = /[[{]/g;

function revive(_key, v) {
  if (typeof v === "number") return BigInt(v);
  if (v !== null && typeof v === "object" && !Array.isArray(v)) return new Map(Object.entries(v));
  return v;
}

/** Parses UTF-8 JSON bytes; throws where serde_json would fail. */
export function parse(bytes) {
  const text = decoder.decode(bytes); // throws on invalid UTF-8
  if (!NEEDS_EXACT.test(text) && (text.length < 128 || (text.match(OPENERS) || []).length < 128)) {
    return JSON.parse(text, revive);
  }
  return parseBytes(bytes);
}

/** The byte-level parser: every rule of serde_json, slower. */
export function parseBytes(bytes) {
  const p = new Parser(bytes);
  const v = p.value();
  p.ws();
  if (p.i !== bytes.length) p.fail();
  return v;
}

/** A finite float the way serde_json (ryu) writes it: `1.0`, `0.001`, `1e-7`, `1.5e+300`. */
export function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? "-0.0" : "0.0";
  const sign = f < 0 ? "-" : "";
  const [mant, exp] = Math.abs(f).toExponential().split("e"); // shortest digits, d.ddde±x
  let digits = mant.replace(".", "");
  let k = parseInt(exp, 10) - (digits.length - 1);
  const stripped = digits.replace(/0+$/, "");
  k += digits.length - stripped.length;
  digits = stripped;
  const n = digits.length;
  const kk = n + k;
  let body;
  if (k >= 0 && kk <= 16) body = digits + "0".repeat(k) + ".0";
  else if (kk > 0 && kk <= 16) body = digits.slice(0, kk) + "." + digits.slice(kk);
  else if (kk > -5 && kk <= 0) body = "0." + "0".repeat(-kk) + digits;
  else if (n === 1) body = digits + (kk - 1 > 0 ? "e+" : "e") + (kk - 1);
  else body = digits[0] + "." + digits.slice(1) + (kk - 1 > 0 ? "e+" : "e") + (kk - 1);
  return sign + body;
}

// JSON.stringify writes strings exactly as serde_json does (the same short escapes, other
// control characters as lowercase \u00xx, everything else as is).
const str = (s) => JSON.stringify(s);

function write(v) {
  if (v === null) return "null";
  switch (typeof v) {
    case "string":
      return str(v);
    case "bigint":
      return v.toString();
    case "number":
      return Number.isFinite(v) ? formatFloat(v) : "null";
    case "boolean":
      return v ? "true" : "false";
  }
  if (v instanceof Map) {
    const parts = [];
    for (const [k, x] of v) parts.push(str(k) + ":" + write(x));
    return "{" + parts.join(",") + "}";
  }
  if (Array.isArray(v)) return "[" + v.map(write).join(",") + "]";
  throw new TypeError("cannot write this value as JSON");
}

/** Compact UTF-8 JSON bytes, as serde_json::to_vec writes them. */
export function stringify(v) {
  return encoder.encode(write(v));
}
