// JavaScript guest SDK for Sluice transforms.
//
// A plugin is a class: `constructor(config)` reads its config (throw `ConfigError` to refuse it)
// and `transform(record, out)` is called for every record, in order. It writes 0..N outputs with
// `out.emit({...})` / `out.forward(record)`, or throws (`Reject` or any error) to send that record
// to the dead-letter topic with the message as its reason. Export it from the plugin's module:
//
//     import { defineTransform, Reject } from "sluice";
//     class Upper {
//       transform(record, out) {
//         if (record.value === null) throw new Reject("record has no value");
//         out.emit({ key: record.key, value: record.value.map((b) => (b >= 97 && b <= 122 ? b - 32 : b)), headers: record.headers });
//       }
//     }
//     const plugin = defineTransform(Upper);
//     export const init = plugin.init;
//     export const process = plugin.process;
//
// The SDK runs the batch loop over the host's batch encoding (wit/sluice.wit); authors see plain
// records. `build.sh` bundles the module with this SDK (esbuild) and makes the component
// (componentize-js).
import { log as hostLog } from "sluice:plugin/host@0.3.0";
import { read as jsonRead, write as jsonWrite } from "sluice:plugin/json@0.3.0";
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const utf8Decode = (b) => decoder.decode(b);
const utf8Encode = (s) => encoder.encode(s);

const NONE = 0xffffffff;

/** The little-endian u32 words of a word list (`list<u8>` in contract 0.3.0): a view when the
 * bytes are 4-aligned (the bindings' usual case), else an aligned copy. */
export function words(bytes) {
  if ((bytes.byteOffset & 3) === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
  return new Uint32Array(bytes.slice(0, bytes.length & ~3).buffer);
}

/** The bytes of the first `n` words of `w` (a Uint32Array): a word list to hand to the host. */
export function wordBytes(w, n = w.length) {
  return new Uint8Array(w.buffer, w.byteOffset, n * 4);
}

/** Thrown by `transform`: this record goes to the dead-letter topic with the message. */
export class Reject extends Error {}

/** Thrown by the constructor: the host refuses this config with the message. */
export class ConfigError extends Error {}

/** The plugin's config: string pairs from the pipeline config, in file order. */
export class Config {
  constructor(pairs) {
    this.pairs = pairs.map(([k, v]) => [k, v]);
  }
  get(key, fallback = undefined) {
    for (const [k, v] of this.pairs) if (k === key) return v;
    return fallback;
  }
  keys() {
    return this.pairs.map(([k]) => k);
  }
  [Symbol.iterator]() {
    return this.pairs[Symbol.iterator]();
  }
}

export const log = {
  debug: (m) => hostLog("debug", String(m)),
  info: (m) => hostLog("info", String(m)),
  warn: (m) => hostLog("warn", String(m)),
  error: (m) => hostLog("error", String(m)),
};

class Bytes {
  constructor(n) {
    this.buf = new Uint8Array(Math.max(n, 1024));
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n > this.buf.length) {
      const b = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
      b.set(this.buf.subarray(0, this.len));
      this.buf = b;
    }
  }
  push(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
}

class Words {
  constructor(n) {
    this.buf = new Uint32Array(Math.max(n, 64));
    this.len = 0;
  }
  reserve(k) {
    if (this.len + k > this.buf.length) {
      const b = new Uint32Array(Math.max(this.buf.length * 2, this.len + k));
      b.set(this.buf);
      this.buf = b;
    }
  }
  push(w) {
    if (this.len === this.buf.length) {
      const b = new Uint32Array(this.buf.length * 2);
      b.set(this.buf);
      this.buf = b;
    }
    this.buf[this.len++] = w;
  }
}

// The batch being processed, in module bindings rather than object properties: in
// StarlingMonkey's interpreter reading a property costs ~0.1-0.2 µs, a module binding a few ns,
// and the per-record path (forward, emit, Json.kind/string) reads these many times a record.
// One batch (or one on-timer call) is processed at a time; each sets them before its first record.
const NO_WORDS = new Uint32Array(0);
let inW = NO_WORDS; // the input's record words
let inHW = NO_WORDS; // the input's header words
let oRec = null; // the output's record words (Words)
let oHdr = null; // the output's header words (Words)
let curIn = 0; // index of the input being transformed
let curRec = null; // the InputRecord being transformed (null in on-timer)
let curJb = null; // the batch's JsonBatch
let jFields = NO_WORDS; // what `read` found: 1 + 3 * jRead words per document
let jStride = 1;
let jRead = 0; // how many paths were read
let jTextStr = null; // `read`'s text decoded, when it is ASCII (else null: decode per field)
let eWords = null; // the batch's edits (Words, 5 per edit), see JsonBatch
let eValues = []; // string or Uint8Array per edit
let eDocmap = new Int32Array(0); // input index -> its document in the `write` call, or -1
let eChars = 0; // total length of the edits' strings so far
let eAscii = true; // whether every edit value is a string (so one join makes the text)
let jPending = []; // the batch's JsonBatch.pending

function asBytes(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return utf8Encode(v);
  return v;
}

/** Where `transform` writes the outputs of the record it is given. */
export class Emitter {
  constructor(data, outputs, input) {
    this._data = data;
    this._outputs = outputs;
    this._in = input; // the input batch's data: the output's data starts with a copy of it
    this._hstart = 0; // where the last `emit` started writing header words
    this._hinput = -1; // ...and for which input
  }
  _span(b, words) {
    if (b === null) {
      words.push(0);
      words.push(NONE);
    } else if (b.buffer === this._in.buffer && b.byteOffset >= this._in.byteOffset && b.byteOffset + b.length <= this._in.byteOffset + this._in.length) {
      // A view of the input (a record's key, value or header): already in the output's data.
      words.push(b.byteOffset - this._in.byteOffset);
      words.push(b.length);
    } else {
      words.push(this._data.len);
      words.push(b.length);
      this._data.push(b);
    }
  }
  /** Writes header words for `headers` ([name, value] pairs); a record's own headers array,
   * unchanged, is copied as its words. */
  _pushHeaders(headers, rec) {
    const hs = oHdr;
    this._hstart = hs.len;
    this._hinput = curIn;
    if (headers === null || headers.length === 0) return;
    if (rec !== null && headers === rec._headers && rec._headersIntact()) {
      copyHeaders(inW[rec._b + 4], headers.length);
    } else {
      for (const [name, hv] of headers) {
        this._span(utf8Encode(name), hs);
        this._span(asBytes(hv), hs);
      }
    }
  }
  /** Writes the two value words at `r.len`; `rec`'s own value passes as its span. */
  _value(value, rec, r) {
    const n = r.len;
    if (value instanceof Json) {
      // The edited document: filled in after the batch's one `write` call.
      const jb = value._jb;
      jb.pending.push(n, jb.doc(value._i), curIn);
      r.buf[n] = 0;
      r.buf[n + 1] = NONE;
      r.len = n + 2;
    } else if (rec !== null && value === rec._value && value !== undefined) {
      r.buf[n] = inW[rec._b + 2];
      r.buf[n + 1] = inW[rec._b + 3];
      r.len = n + 2;
    } else {
      this._span(asBytes(value), r);
    }
  }
  /** Writes the timestamp and output words at `n + 7`. */
  _tail(b, n, timestamp, to) {
    if (timestamp === null || timestamp === undefined) {
      b[n + 7] = 0;
      b[n + 8] = 0x80000000;
    } else {
      const t = BigInt.asUintN(64, BigInt(timestamp));
      b[n + 7] = Number(t & 0xffffffffn);
      b[n + 8] = Number(t >> 32n);
    }
    if (to === null || to === undefined) {
      b[n + 9] = NONE;
    } else {
      let k = this._outputs.indexOf(to);
      if (k < 0) {
        k = this._outputs.length;
        this._outputs.push(to);
      }
      b[n + 9] = k;
    }
  }
  /**
   * Emits one output. `key`/`value`: Uint8Array, string (UTF-8) or null, and `value` may be a
   * record's `json` view: the edited document; `headers`: [name, value] pairs; `timestamp`:
   * milliseconds (default: the input's); `to`: a named output declared in the pipeline config
   * (default: the pipeline's default output).
   */
  emit(o) {
    // Written for StarlingMonkey's interpreter, where every call and allocation counts: no
    // destructuring, words written in place, a record's own key/value/headers recognised by
    // identity and passed on as spans of the input.
    const hs = oHdr;
    const first = hs.len >> 2;
    const rec = curRec;
    const headers = o.headers;
    if (headers !== undefined) this._pushHeaders(headers, rec);
    const r = oRec;
    r.reserve(10);
    const n = r.len;
    r.buf[n] = curIn;
    r.len = n + 1;
    const key = o.key;
    if (rec !== null && key === rec._key && key !== undefined) {
      r.buf[n + 1] = inW[rec._b];
      r.buf[n + 2] = inW[rec._b + 1];
      r.len = n + 3;
    } else {
      this._span(asBytes(key), r);
    }
    this._value(o.value, rec, r);
    const b = r.buf;
    b[n + 5] = first;
    b[n + 6] = (hs.len >> 2) - first;
    this._tail(b, n, o.timestamp, o.to);
    r.len = n + 10;
  }
  /**
   * Sends `record` on to the default output: unchanged (key, value, headers, timestamp), or with
   * the fields given in `changes` (as in `emit`: `key`, `value`, `headers`, `timestamp`, `to`)
   * in place of its own. `out.forward(record, { value: record.json })` emits the edited
   * document with the record's key, headers and timestamp, its words copied, nothing decoded.
   */
  forward(record, changes) {
    // The input's spans are valid in the output's data as they are: copy words, not bytes.
    const w = inW;
    const b = record._b;
    const hs = oHdr;
    const first = hs.len >> 2;
    const headers = changes === undefined ? undefined : changes.headers;
    if (headers === undefined) {
      const count = w[b + 5];
      if (count > 0) copyHeaders(w[b + 4], count);
    } else {
      this._pushHeaders(headers, record);
    }
    const r = oRec;
    if (r.len + 10 > r.buf.length) r.reserve(10);
    const o = r.buf;
    const n = r.len;
    o[n] = curIn;
    o[n + 1] = w[b];
    o[n + 2] = w[b + 1];
    o[n + 3] = w[b + 2];
    o[n + 4] = w[b + 3];
    o[n + 7] = w[b + 6];
    o[n + 8] = w[b + 7];
    o[n + 9] = NONE;
    if (changes !== undefined) {
      const key = changes.key;
      if (key !== undefined) {
        r.len = n + 1;
        this._span(asBytes(key), r);
      }
      const value = changes.value;
      if (value instanceof Json) {
        // The common case (an edited document), inline: no call, no property of `this`.
        let j = eDocmap[value._i];
        if (j < 0) j = value._jb.doc(value._i);
        jPending.push(n + 3, j, curIn);
        o[n + 3] = 0;
        o[n + 4] = NONE;
      } else if (value !== undefined) {
        r.len = n + 3;
        this._value(value, record, r);
      }
      // As `emit`: no timestamp (the host keeps the input's) unless one is given, so the
      // words are the same as an `emit` of the same fields.
      const timestamp = changes.timestamp;
      const to = changes.to;
      if (timestamp === undefined && to === undefined) {
        o[n + 7] = 0;
        o[n + 8] = 0x80000000;
      } else {
        this._tail(o, n, timestamp, to);
      }
    }
    o[n + 5] = first;
    o[n + 6] = (hs.len >> 2) - first;
    r.len = n + 10;
  }
  /** Drops every output of input `i` (the last input written): it threw. */
  _rollback(i) {
    const r = oRec;
    const b = r.buf;
    let n = r.len;
    let hlen = -1;
    while (n >= 10 && b[n - 10] === i) {
      n -= 10;
      hlen = b[n + 5] * 4;
    }
    r.len = n;
    // Header words written by an `emit` that threw before its record words.
    if (this._hinput === i && (hlen < 0 || this._hstart < hlen)) hlen = this._hstart;
    if (hlen >= 0) oHdr.len = hlen;
    // Bytes it added to the output's data stay, unreferenced: nothing points at them.
  }
}

/** Copies the words of `count` input headers from header `h` to the output's. A loop, not `set`
 * of a `subarray`: in StarlingMonkey's interpreter making a typed array view costs about a
 * microsecond, more than copying a few words one by one. */
function copyHeaders(h, count) {
  const hs = oHdr;
  const n = count * 4;
  let o = hs.len;
  if (o + n > hs.buf.length) hs.reserve(n);
  const to = hs.buf;
  const from = inHW;
  for (let x = h * 4, end = x + n; x < end; x++) to[o++] = from[x];
  hs.len = o;
}

/** One input record: `key`/`value` are Uint8Array or null (a Kafka null), `headers` a list of
 * [name, value] pairs, `timestamp` milliseconds or null. Views into the batch, valid during the
 * call; each field is decoded when first read. */
class InputRecord {
  constructor(c, b) {
    this._c = c; // the batch: data, w (record words), hw (header words), topics, jb (JSON)
    this._b = b; // this record's first word in c.w
    this._key = undefined;
    this._value = undefined;
    this._headers = undefined;
  }
  get key() {
    if (this._key === undefined) {
      const w = this._c.w;
      const len = w[this._b + 1];
      this._key = len === NONE ? null : this._c.data.subarray(w[this._b], w[this._b] + len);
    }
    return this._key;
  }
  get value() {
    if (this._value === undefined) {
      const w = this._c.w;
      const len = w[this._b + 3];
      this._value = len === NONE ? null : this._c.data.subarray(w[this._b + 2], w[this._b + 2] + len);
    }
    return this._value;
  }
  get headers() {
    if (this._headers === undefined) {
      const c = this._c;
      const w = c.w;
      const hw = c.hw;
      const data = c.data;
      const headers = [];
      const copy = [];
      for (let h = w[this._b + 4], end = h + w[this._b + 5]; h < end; h++) {
        const x = h * 4;
        const pair = [utf8Decode(data.subarray(hw[x], hw[x] + hw[x + 1])), span(data, hw[x + 2], hw[x + 3])];
        headers.push(pair);
        copy.push(pair, pair[0], pair[1]);
      }
      this._headers = headers;
      this._hcopy = copy;
    }
    return this._headers;
  }
  /** Whether the headers array handed out is as it was made (so its words can be reused). */
  _headersIntact() {
    const h = this._headers;
    const c = this._hcopy;
    if (h.length * 3 !== c.length) return false;
    for (let k = 0, j = 0; k < h.length; k++, j += 3) {
      const pair = h[k];
      if (pair !== c[j] || pair.length !== 2 || pair[0] !== c[j + 1] || pair[1] !== c[j + 2]) return false;
    }
    return true;
  }
  get timestamp() {
    const w = this._c.w;
    const lo = w[this._b + 6];
    const hi = w[this._b + 7];
    if (lo === 0 && hi === 0x80000000) return null;
    return hi >= 0x80000000 ? Number(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo))) : hi * 4294967296 + lo;
  }
  get topic() {
    return this._c.topics[this._c.w[this._b + 8]];
  }
  get partition() {
    return this._c.w[this._b + 9] | 0;
  }
  get offset() {
    const w = this._c.w;
    return w[this._b + 10] + w[this._b + 11] * 4294967296;
  }
  /** The value of the first header called `name` (null if absent or null). */
  header(name) {
    for (const [hn, hv] of this.headers) if (hn === name) return hv;
    return null;
  }
  /** The record's value as a JSON document (`Json`): the fields the plugin declared in
   * `jsonPaths`, read by the host for the whole batch, and edits to it. */
  get json() {
    return new Json(curJb, (this._b / 12) | 0);
  }
}

/** One input batch as its records see it. */
class Batch {
  constructor(data, w, hw, topics, jb) {
    this.data = data;
    this.w = w;
    this.hw = hw;
    this.topics = topics;
    this.jb = jb;
  }
}

/** What a JSON path found: the `kind` enum of the `json` interface (wit/sluice.wit). */
export const Kind = Object.freeze({ MISSING: 0, NULL: 1, FALSE: 2, TRUE: 3, NUMBER: 4, STRING: 5, ARRAY: 6, OBJECT: 7 });
const STRING = 5;

/** The JSON Pointer (RFC 6901) of the field reached through `keys`: `pointer("a/b", 0)` is
 * `"/a~1b/0"`; `pointer()` is `""`, the whole document. */
export function pointer(...keys) {
  let p = "";
  for (const k of keys) p += "/" + String(k).replaceAll("~", "~0").replaceAll("/", "~1");
  return p;
}

const EDIT_FAILED =
  "the edited JSON value could not be written: an edit's parent is missing or not an object or array, an array index is out of range, or raw JSON does not parse";

/** One batch's JSON work: what the host read for the declared paths (one `read` call before the
 * records are transformed) and the edits recorded, written in one `write` call after. */
class JsonBatch {
  constructor(data, w, n, paths, index) {
    this.data = data;
    this.w = w;
    this.nread = paths.length;
    this.stride = 1 + 3 * paths.length;
    this.paths = paths;
    this.index = index;
    this.fields = null;
    this.text = null;
    this.textStr = null; // the whole `text` decoded when it is ASCII: fields are substrings of it
    this.editWords = new Words(64); // 5 per edit, offsets into the strings' joined text
    this.editValues = []; // string or Uint8Array per edit
    this.wdocs = new Words(64);
    this.docmap = new Int32Array(n).fill(-1); // input index -> its document in wdocs
    this.pending = []; // (position of an output's value span, document, input) triples
    if (paths.length > 0) {
      const docs = new Uint32Array(2 * n);
      for (let i = 0; i < n; i++) {
        docs[2 * i] = w[12 * i + 2];
        docs[2 * i + 1] = w[12 * i + 3];
      }
      const f = jsonRead(data, wordBytes(docs), paths);
      this.fields = words(f.fields);
      this.text = f.text;
      const t = utf8Decode(f.text);
      if (t.length === f.text.length) this.textStr = t;
    }
    curJb = this;
    jFields = this.fields === null ? NO_WORDS : this.fields;
    jStride = this.stride;
    jRead = this.fields === null ? 0 : this.nread;
    jTextStr = this.textStr;
    eWords = this.editWords;
    eValues = this.editValues;
    eDocmap = this.docmap;
    jPending = this.pending;
    eChars = 0;
    eAscii = true;
  }
  slot(path) {
    let i = typeof path === "string" ? this.index.get(path) : undefined;
    if (i === undefined) {
      if (typeof path !== "string") throw new RangeError(`JSON path index ${path} is not one of the ${this.nread} declared in jsonPaths`);
      if (this.paths.length === this.nread) {
        this.paths = this.paths.slice();
        this.index = new Map(this.index);
      }
      i = this.paths.length;
      this.paths.push(path);
      this.index.set(path, i);
    }
    return i;
  }
  doc(i) {
    let j = this.docmap[i];
    if (j < 0) {
      j = this.wdocs.len >> 1;
      this.docmap[i] = j;
      this.wdocs.push(this.w[12 * i + 2]);
      this.wdocs.push(this.w[12 * i + 3]);
    }
    return j;
  }
  /** `read` of one document: [its root kind, path's kind, offset, length] and the text. */
  readOne(i, path) {
    const f = jsonRead(this.data, wordBytes(new Uint32Array([this.w[12 * i + 2], this.w[12 * i + 3]])), path === null ? [] : [path]);
    return { fields: words(f.fields), text: f.text };
  }
  str(o, n) {
    return this.textStr !== null ? this.textStr.substring(o, o + n) : utf8Decode(this.text.subarray(o, o + n));
  }
  edit(i, path, op, value) {
    const p = typeof path === "number" && path >= 0 && path < jRead ? path : this.slot(path);
    const e = eWords;
    const n = e.len;
    if (n + 5 > e.buf.length) e.reserve(5);
    const b = e.buf;
    const j = eDocmap[i];
    b[n] = j >= 0 ? j : this.doc(i);
    b[n + 1] = p;
    b[n + 2] = op;
    b[n + 3] = eChars;
    if (typeof value === "string") {
      b[n + 4] = value.length;
      eChars += value.length;
    } else {
      eAscii = false;
      b[n + 4] = 0;
    }
    e.len = n + 5;
    eValues.push(value);
  }
  /** The edits' text, and their words pointing into it. */
  editText() {
    const values = this.editValues;
    if (eAscii) {
      const bytes = utf8Encode(values.join(""));
      if (bytes.length === eChars) return bytes; // ASCII: byte offsets are char offsets
    }
    const parts = values.map(asBytes);
    let total = 0;
    for (const p of parts) total += p.length;
    const bytes = new Uint8Array(total);
    const e = this.editWords.buf;
    let o = 0;
    let k = 0;
    for (let x = 0; x < this.editWords.len; x += 5) {
      if ((e[x + 2] & IN_UTF8) !== 0) continue; // a span of `transformBatch`'s UTF-8 buffer
      const p = parts[k++];
      bytes.set(p, o);
      e[x + 3] = o;
      e[x + 4] = p.length;
      o += p.length;
    }
    return bytes;
  }
  /** Drops the edits and pending outputs of input `i` (the last input transformed). */
  rollback(i) {
    const p = this.pending;
    let k = p.length;
    while (k >= 3 && p[k - 1] === i) k -= 3;
    p.length = k;
    const j = this.docmap[i];
    if (j < 0) return;
    const e = this.editWords;
    const b = e.buf;
    let n = e.len;
    while (n >= 5 && b[n - 5] === j) n -= 5;
    e.len = n;
    this.editValues.length = n / 5;
    eChars = n === 0 ? 0 : b[n - 2] + b[n - 1];
  }
  finish(outData, outRecords, errors) {
    const pending = this.pending;
    if (pending.length === 0) return;
    const text = this.editText();
    const res = jsonWrite(this.data, wordBytes(this.wdocs.buf, this.wdocs.len), this.paths, wordBytes(this.editWords.buf, this.editWords.len), text);
    const base = outData.len;
    outData.push(res.data);
    const d = words(res.docs);
    const r = outRecords.buf;
    const failed = new Set();
    for (let k = 0; k < pending.length; k += 3) {
      const pos = pending[k];
      const j = pending[k + 1];
      const i = pending[k + 2];
      const n = d[2 * j + 1];
      if (n === NONE) {
        if (!failed.has(i)) {
          failed.add(i);
          errors.push({ input: i, message: this.failure(i) });
        }
        continue;
      }
      r[pos] = base + d[2 * j];
      r[pos + 1] = n;
    }
    if (failed.size > 0) {
      // A rejected input emits nothing: drop its outputs, as after an exception.
      let to = 0;
      for (let k = 0; k < outRecords.len; k += 10) {
        if (failed.has(r[k])) continue;
        if (to !== k) r.copyWithin(to, k, k + 10);
        to += 10;
      }
      outRecords.len = to;
    }
  }
  failure(i) {
    if (this.w[12 * i + 3] === NONE) return "record has no value";
    const root = this.fields !== null ? this.fields[i * this.stride] : this.readOne(i, null).fields[0];
    return root !== 0 ? EDIT_FAILED : "value is not valid JSON";
  }
}

/** A record's value as a JSON document, read and edited by the host with serde_json's rules.
 *
 * A path is an index into the plugin's `jsonPaths` (fastest) or a JSON Pointer string; declared
 * paths were read for the whole batch in one host call, an undeclared one costs a host call of
 * its own. Edits (`set`, `setRaw`, `remove`) apply in order; emit the edited document with
 * `out.emit({ value: record.json })`: the SDK fills it in after the batch, with all of this
 * record's edits applied, serialised as serde_json does. A view is valid during the `transform`
 * call it was made in. */
export class Json {
  constructor(jb, i) {
    this._jb = jb;
    this._i = i;
    this._x = i * jStride + 1; // this document's first path word in jFields
  }
  /** [kind, offset, length, text source] of `path`. */
  _field(path) {
    const jb = this._jb;
    const i = typeof path === "string" ? jb.index.get(path) : path;
    if (typeof i === "number" && i >= 0 && i < jb.nread) {
      const x = this._i * jb.stride + 1 + 3 * i;
      const f = jb.fields;
      return [f[x], f[x + 1], f[x + 2], null];
    }
    if (typeof path !== "string") throw new RangeError(`JSON path index ${path} is not one of the ${jb.nread} declared in jsonPaths`);
    const f = jb.readOne(this._i, path);
    return [f.fields[1], f.fields[2], f.fields[3], f.text];
  }
  /** Whether the value is valid JSON (false for an absent value too). */
  get valid() {
    return this.kind("") !== 0;
  }
  /** What `path` found: a `Kind` (`MISSING` when the value is not valid JSON). `kind("")`, the
   * whole document's, costs no host call. */
  kind(path) {
    const jb = this._jb;
    if (typeof path === "number" && path >= 0 && path < jRead) return jFields[this._x + 3 * path];
    if (path === "") return jb.fields !== null ? jb.fields[this._i * jb.stride] : jb.readOne(this._i, null).fields[0];
    return this._field(path)[0];
  }
  /** The string at `path`, or null when it is missing or not a string. */
  string(path) {
    const jb = this._jb;
    if (typeof path === "number" && path >= 0 && path < jRead) {
      const x = this._x + 3 * path;
      const f = jFields;
      if (f[x] !== STRING) return null;
      const o = f[x + 1];
      // The batch's text as one string when it is ASCII: a substring, no decoding, no call.
      return jTextStr !== null ? jTextStr.substring(o, o + f[x + 2]) : jb.str(o, f[x + 2]);
    }
    const [k, o, n, text] = this._field(path);
    if (k !== STRING) return null;
    return text === null ? jb.str(o, n) : utf8Decode(text.subarray(o, o + n));
  }
  /** The JSON text at `path` (compact, as serde_json prints it; a string's is its decoded value),
   * or null when it is missing. */
  text(path) {
    const [k, o, n, text] = this._field(path);
    if (k === 0) return null;
    if (k === 1) return "null";
    if (k === 2) return "false";
    if (k === 3) return "true";
    return text === null ? this._jb.str(o, n) : utf8Decode(text.subarray(o, o + n));
  }
  /** The value at `path` as JavaScript (`JSON.parse` of its text), or `fallback` when missing. */
  get(path, fallback = undefined) {
    const k = this.kind(path);
    if (k === 0) return fallback;
    if (k === STRING) return this.string(path);
    return JSON.parse(this.text(path));
  }
  /** Sets `path` to the string `value` (a missing key of an existing object is added at its end). */
  set(path, value) {
    const v = typeof value === "string" ? value : String(value);
    // In `transformBatch` (a view from `batch.record(i)`) the batch's edits are by input.
    if (bN > 0) batchEdit(this._i, path, 1, v);
    else this._jb.edit(this._i, path, 1, v);
  }
  /** Sets `path` to the JSON text `json` (string or UTF-8 Uint8Array). */
  setRaw(path, json) {
    if (bN > 0) batchEdit(this._i, path, 2, json);
    else this._jb.edit(this._i, path, 2, json);
  }
  /** Removes `path` (nothing if it is missing). */
  remove(path) {
    if (bN > 0) batchEdit(this._i, path, 0, "");
    else this._jb.edit(this._i, path, 0, "");
  }
}

function span(data, off, len) {
  return len === NONE ? null : data.subarray(off, off + len);
}

// ---------------------------------------------------------------------------------------------
// The batch-at-a-time API: `transformBatch(batch, out)`.
//
// Every record costs the per-record path a few objects (the record view, its `json` view, the
// options of `forward`) and a few dozen property reads and calls, ~0.1-1 µs each in
// StarlingMonkey's interpreter. A plugin that defines `transformBatch` instead gets the batch as
// columns (typed arrays and arrays, made once per batch with loops over the host's words) and
// works over them in its own loops on local variables; the SDK writes the outputs of the whole
// batch in one loop of word copies.

/** One batch, as columns aligned with its records (index `i` is record `i`), for
 * `transformBatch(batch, out)`. Columns are made once per batch when first asked for; a path is
 * an index into the plugin's `jsonPaths` or a JSON Pointer (an undeclared one costs one host
 * `read` for the whole batch). Edits (`set`, `setRaw`, `remove`) apply in order to record `i`'s
 * document; `out.forwardAll({ json: true })` sends the edited documents. Valid during the call. */
export class RecordBatch {
  constructor(c, n) {
    /** The number of records. */
    this.length = n;
    this._c = c;
    this._cols = new Map(); // path -> [fields, stride, first word, text bytes, text string]
    this._present = null;
  }
  /** Uint8Array: 1 where the record has a value, 0 where it is a Kafka null. */
  get present() {
    if (this._present === null) {
      const n = this.length;
      const w = this._c.w;
      const p = new Uint8Array(n);
      for (let i = 0, b = 3; i < n; i++, b += 12) p[i] = w[b] === NONE ? 0 : 1;
      this._present = p;
    }
    return this._present;
  }
  /** Record `i` as `transform` sees it (key, value, headers, timestamp, topic, offset, json). */
  record(i) {
    this._check(i);
    return new InputRecord(this._c, i * 12);
  }
  _check(i) {
    if (!(i >= 0 && i < this.length && (i | 0) === i)) throw new RangeError(`record index ${i} is not in this batch of ${this.length}`);
  }
  /** Where `path`'s words are: declared paths in the batch's `read`, others read once. */
  _col(path) {
    const jb = this._c.jb;
    let col = this._cols.get(path);
    if (col !== undefined) return col;
    let p = path;
    if (path === "") p = -1;
    else if (typeof path === "string") {
      const k = jb.index.get(path);
      if (k !== undefined && k < jb.nread) p = k;
    } else if (!(typeof path === "number" && path >= 0 && path < jb.nread && (path | 0) === path)) {
      throw new RangeError(`JSON path index ${path} is not one of the ${jb.nread} declared in jsonPaths`);
    }
    if (typeof p === "number" && jb.fields !== null) {
      col = [jb.fields, jb.stride, p < 0 ? 0 : 1 + 3 * p, jb.text, jb.textStr];
    } else {
      // Not read with the batch: one `read` of this path (or none, for the root) for every document.
      const n = this.length;
      const w = this._c.w;
      const docs = new Uint32Array(2 * n);
      for (let i = 0; i < n; i++) {
        docs[2 * i] = w[12 * i + 2];
        docs[2 * i + 1] = w[12 * i + 3];
      }
      const root = p === -1;
      const f = jsonRead(this._c.data, wordBytes(docs), root ? [] : [path]);
      const t = utf8Decode(f.text);
      col = [words(f.fields), root ? 1 : 4, root ? 0 : 1, f.text, t.length === f.text.length ? t : null];
    }
    this._cols.set(path, col);
    return col;
  }
  /** Uint8Array of what `path` found in each record's value: a `Kind` (`kinds("")`: the document
   * itself, `MISSING` when the value is absent or not valid JSON). */
  kinds(path) {
    const col = this._col(path);
    const f = col[0];
    const stride = col[1];
    const n = this.length;
    const k = new Uint8Array(n);
    for (let i = 0, x = col[2]; i < n; i++, x += stride) k[i] = f[x];
    return k;
  }
  /** Uint32Array of the UTF-8 length in bytes of `path`'s text in each record (0 when missing,
   * null, false or true): a string's length without making the string. */
  lengths(path) {
    const col = this._col(path);
    const f = col[0];
    const stride = col[1];
    const n = this.length;
    const out = new Uint32Array(n);
    if (col[2] === 0) return out; // the root: its text is not read
    for (let i = 0, x = col[2]; i < n; i++, x += stride) out[i] = f[x + 2];
    return out;
  }
  /** Array of the string at `path` in each record, or null where it is missing or not a string. */
  strings(path) {
    const col = this._col(path);
    const f = col[0];
    const stride = col[1];
    const text = col[3];
    const s = col[4];
    const n = this.length;
    const out = new Array(n);
    if (col[2] === 0) return out.fill(null);
    for (let i = 0, x = col[2]; i < n; i++, x += stride) {
      if (f[x] !== STRING) {
        out[i] = null;
        continue;
      }
      const o = f[x + 1];
      // The batch's text as one string when it is ASCII: a substring, no decoding.
      out[i] = s !== null ? s.substring(o, o + f[x + 2]) : utf8Decode(text.subarray(o, o + f[x + 2]));
    }
    return out;
  }
  /** Array of the JSON text at `path` in each record (compact, as serde_json prints it; a
   * string's is its decoded value), or null where it is missing. */
  texts(path) {
    const col = this._col(path);
    if (col[2] === 0) throw new RangeError('texts("") is not read by the host: read the fields you need');
    const f = col[0];
    const stride = col[1];
    const text = col[3];
    const s = col[4];
    const n = this.length;
    const out = new Array(n);
    for (let i = 0, x = col[2]; i < n; i++, x += stride) {
      const k = f[x];
      if (k === 0) out[i] = null;
      else if (k === 1) out[i] = "null";
      else if (k === 2) out[i] = "false";
      else if (k === 3) out[i] = "true";
      else {
        const o = f[x + 1];
        out[i] = s !== null ? s.substring(o, o + f[x + 2]) : utf8Decode(text.subarray(o, o + f[x + 2]));
      }
    }
    return out;
  }
  /** Sets `path` of record `i`'s document to the string `value`. */
  set(i, path, value) {
    if (typeof value !== "string") value = String(value);
    // `batchEdit` inline for a declared path: this is the call a plugin makes per record.
    if (typeof path === "number" && path >= 0 && path < jRead && (path | 0) === path && i >= 0 && i < bN && (i | 0) === i) {
      const e = eWords;
      const n = e.len;
      if (n + 5 > e.buf.length) e.reserve(5);
      const b = e.buf;
      b[n] = i;
      b[n + 1] = path;
      b[n + 2] = 1;
      b[n + 3] = eChars;
      b[n + 4] = value.length;
      eChars += value.length;
      e.len = n + 5;
      eValues.push(value);
    } else {
      batchEdit(i, path, 1, value);
    }
  }
  /** Sets `path` of record `i`'s document to the JSON text `json` (string or UTF-8 bytes). */
  setRaw(i, path, json) {
    batchEdit(i, path, 2, json);
  }
  /** A Uint8Array of at least `capacity` bytes for string values written as UTF-8 (`setUtf8`),
   * kept across batches: a call with a larger capacity returns a larger one holding all the
   * old one held. Writing bytes on a typed array skips making a string per value. */
  utf8Buffer(capacity) {
    if (bUtf8.length < capacity) {
      const b = new Uint8Array(Math.max(capacity, 2 * bUtf8.length));
      b.set(bUtf8); // all of it: the plugin may have written past the spans set so far
      bUtf8 = b;
    }
    return bUtf8;
  }
  /** Sets `path` of record `i`'s document to the string whose UTF-8 bytes are
   * `utf8Buffer()[start, start + length)` (not valid UTF-8: the document cannot be written and
   * the record is rejected, as for any failed edit). */
  setUtf8(i, path, start, length) {
    if (!(start >= 0 && length >= 0 && start + length <= bUtf8.length && (start | 0) === start && (length | 0) === length)) {
      throw new RangeError(`bytes ${start}..${start + length} are not in the batch's UTF-8 buffer of ${bUtf8.length}`);
    }
    if (!(typeof path === "number" && path >= 0 && path < jRead && (path | 0) === path)) path = curJb.slot(path);
    if (!(i >= 0 && i < bN && (i | 0) === i)) throw new RangeError(`record index ${i} is not in this batch of ${bN}`);
    const e = eWords;
    const n = e.len;
    if (n + 5 > e.buf.length) e.reserve(5);
    const b = e.buf;
    b[n] = i;
    b[n + 1] = path;
    b[n + 2] = 1 | IN_UTF8; // no entry in eValues
    b[n + 3] = start;
    b[n + 4] = length;
    e.len = n + 5;
    bInUtf8 = true;
    if (start + length > bUtf8Used) bUtf8Used = start + length;
  }
  /** `setUtf8` for a whole column: sets `path` of every record `i` whose `lengths[i]` is not
   * `NO_EDIT` (0xffffffff) to the string at `utf8Buffer()[starts[i], starts[i] + lengths[i])`.
   * `starts` and `lengths` are Uint32Arrays of at least `length` entries. One call, one loop: the
   * edits of a column cost a few words each. */
  setUtf8Column(path, starts, lengths) {
    const n = bN;
    if (!(starts instanceof Uint32Array && lengths instanceof Uint32Array && starts.length >= n && lengths.length >= n)) {
      throw new TypeError(`setUtf8Column takes two Uint32Arrays of at least ${n} entries (starts, lengths)`);
    }
    const p = typeof path === "number" && path >= 0 && path < jRead && (path | 0) === path ? path : curJb.slot(path);
    const e = eWords;
    e.reserve(5 * n);
    const b = e.buf;
    const cap = bUtf8.length;
    let x = e.len;
    let used = bUtf8Used;
    for (let i = 0; i < n; i++) {
      const len = lengths[i];
      if (len === NONE) continue;
      const s = starts[i];
      if (s + len > cap) throw new RangeError(`record ${i}: bytes ${s}..${s + len} are not in the batch's UTF-8 buffer of ${cap}`);
      b[x] = i;
      b[x + 1] = p;
      b[x + 2] = 1 | IN_UTF8;
      b[x + 3] = s;
      b[x + 4] = len;
      x += 5;
      if (s + len > used) used = s + len;
    }
    e.len = x;
    bUtf8Used = used;
    bInUtf8 = true;
  }
  /** What the host read at `path`: `{ text, starts, lengths }`, the read's UTF-8 text (a
   * Uint8Array) and each record's span in it (a string's decoded value; length 0 when missing,
   * null or a boolean), and `ascii`: whether all of `text` is ASCII (so is every string in
   * it): strings as bytes, without making them. */
  spans(path) {
    const col = this._col(path);
    if (col[2] === 0) throw new RangeError('spans("") is not read by the host: read the fields you need');
    const f = col[0];
    const stride = col[1];
    const n = this.length;
    const starts = new Uint32Array(n);
    const lengths = new Uint32Array(n);
    for (let i = 0, x = col[2]; i < n; i++, x += stride) {
      starts[i] = f[x + 1];
      lengths[i] = f[x + 2];
    }
    return { text: col[3], starts, lengths, ascii: col[4] !== null };
  }
  /** Removes `path` from record `i`'s document (nothing if it is missing). */
  remove(i, path) {
    batchEdit(i, path, 0, "");
  }
}

let bN = 0; // the number of records of the batch in `transformBatch` (0 outside it)
let bUtf8 = new Uint8Array(0); // the UTF-8 buffer of `setUtf8` (kept across batches)
let bUtf8Used = 0; // how much of it this batch's edits use
let bInUtf8 = false; // whether an edit of this batch is a span of it
// Marks an edit (in its operation word) whose text is a span of the UTF-8 buffer, not an entry of
// eValues; cleared before the `write` call.
const IN_UTF8 = 0x100;
/** The `lengths` entry of `setUtf8Column` for a record whose field is not edited. */
export const NO_EDIT = 0xffffffff;

/** Records an edit of input `i` (word 0 is the input index until `finishBatch` maps it). */
function batchEdit(i, path, op, value) {
  if (!(i >= 0 && i < bN && (i | 0) === i)) throw new RangeError(`record index ${i} is not in this batch of ${bN}`);
  const p = typeof path === "number" && path >= 0 && path < jRead && (path | 0) === path ? path : curJb.slot(path);
  const e = eWords;
  const n = e.len;
  if (n + 5 > e.buf.length) e.reserve(5);
  const b = e.buf;
  b[n] = i;
  b[n + 1] = p;
  b[n + 2] = op;
  b[n + 3] = eChars;
  if (typeof value === "string") {
    b[n + 4] = value.length;
    eChars += value.length;
  } else {
    eAscii = false;
    b[n + 4] = 0;
  }
  e.len = n + 5;
  eValues.push(value);
}

/** Where `transformBatch` says what becomes of the batch's records: `reject(i, message)` some,
 * then `forwardAll()` the rest. A record neither rejected nor forwarded is dropped. */
export class BatchEmitter {
  constructor(n, errors) {
    this._n = n;
    this._errors = errors;
    this._rejected = new Uint8Array(n);
    this._done = false;
  }
  /** Sends record `i` to the dead-letter topic with `message`: it has no output, and its edits
   * are dropped. A second rejection of the same record keeps the first message. */
  reject(i, message) {
    if (!(i >= 0 && i < this._n && (i | 0) === i)) throw new RangeError(`record index ${i} is not in this batch of ${this._n}`);
    if (this._done) throw new Error("reject after forwardAll: reject records before forwarding the batch");
    const r = this._rejected;
    if (r[i] !== 0) return;
    r[i] = 1;
    this._errors.push({ input: i, message: message instanceof Error ? message.message || message.name : String(message) });
  }
  /** Whether record `i` was rejected. */
  rejected(i) {
    return this._rejected[i] === 1;
  }
  /**
   * Sends every record not rejected on to the default output, in order, with its key, headers
   * and timestamp as they came (their words copied, nothing decoded). The value is the record's
   * own, or with `{ json: true }` its document with its edits applied, serialised by the host as
   * `out.forward(record, { value: record.json })` would (a record whose value is absent or not
   * valid JSON, or whose edit fails, is then rejected as there). Call it once, last.
   */
  forwardAll(options) {
    if (this._done) throw new Error("forwardAll called twice in one batch");
    this._done = true;
    const json = options !== undefined && options !== null && options.json === true;
    const n = this._n;
    const rej = this._rejected;
    const w = inW;
    const hs = oHdr;
    const r = oRec;
    r.reserve(10 * n);
    const o = r.buf;
    let m = r.len;
    const docmap = eDocmap;
    const wd = curJb.wdocs;
    wd.reserve(2 * n);
    const d = wd.buf;
    let j = wd.len >> 1;
    bFwdAt = m;
    bFwdDoc = j;
    // Header words: every input's are copied in one go below when nothing was rejected (the
    // output's header list is then the input's), else record by record.
    hs.reserve(inHW.length);
    const hw = hs.buf;
    let h = hs.len;
    const from = inHW;
    for (let i = 0, b = 0; i < n; i++, b += 12) {
      if (rej[i] !== 0) continue;
      const count = w[b + 5];
      o[m + 5] = h >> 2;
      o[m + 6] = count;
      for (let x = w[b + 4] * 4, end = x + count * 4; x < end; x++) hw[h++] = from[x];
      o[m] = i;
      o[m + 1] = w[b];
      o[m + 2] = w[b + 1];
      if (json) {
        // Filled in after the batch's one `write` call (finishForwarded).
        d[2 * j] = w[b + 2];
        d[2 * j + 1] = w[b + 3];
        docmap[i] = j;
        j++;
        o[m + 3] = 0;
        o[m + 4] = NONE;
        o[m + 7] = 0;
        o[m + 8] = 0x80000000;
      } else {
        o[m + 3] = w[b + 2];
        o[m + 4] = w[b + 3];
        o[m + 7] = w[b + 6];
        o[m + 8] = w[b + 7];
      }
      o[m + 9] = NONE;
      m += 10;
    }
    hs.len = h;
    r.len = m;
    wd.len = 2 * j;
    if (json) bFwdEnd = m;
  }
}

let bFwdAt = 0; // where `forwardAll({ json: true })`'s output words start...
let bFwdEnd = 0; // ...and end (0: it was not called)
let bFwdDoc = 0; // the `write` document of its first output (the next ones follow in order)

/** After the batch's `write`: the value spans of `forwardAll({ json: true })`'s outputs, and
 * the rejection of those whose document could not be written. */
function finishForwarded(jb, outData, outRecords, errors) {
  if (bFwdEnd === 0) return;
  let text = jb.editText();
  if (bInUtf8) {
    // `setUtf8` edits point into the UTF-8 buffer, which goes first; the others move after it.
    const u = bUtf8Used;
    const all = new Uint8Array(u + text.length);
    all.set(bUtf8.subarray(0, u));
    all.set(text, u);
    const e = jb.editWords.buf;
    for (let x = 0, end = jb.editWords.len; x < end; x += 5) {
      if ((e[x + 2] & IN_UTF8) !== 0) e[x + 2] &= ~IN_UTF8;
      else e[x + 3] += u;
    }
    text = all;
  }
  const res = jsonWrite(jb.data, wordBytes(jb.wdocs.buf, jb.wdocs.len), jb.paths, wordBytes(jb.editWords.buf, jb.editWords.len), text);
  const base = outData.len;
  outData.push(res.data);
  const d = words(res.docs);
  const r = outRecords.buf;
  let failed = false;
  for (let pos = bFwdAt, j = bFwdDoc; pos < bFwdEnd; pos += 10, j++) {
    const len = d[2 * j + 1];
    if (len === NONE) {
      failed = true;
      r[pos] |= 0x80000000; // marked: dropped below
      continue;
    }
    r[pos + 3] = base + d[2 * j];
    r[pos + 4] = len;
  }
  if (!failed) return;
  // A rejected input emits nothing: its output goes, as in the per-record path.
  let to = bFwdAt;
  for (let k = bFwdAt; k < outRecords.len; k += 10) {
    const i = r[k];
    if (i >= 0x80000000) {
      errors.push({ input: i & 0x7fffffff, message: jb.failure(i & 0x7fffffff) });
      continue;
    }
    if (to !== k) r.copyWithin(to, k, k + 10);
    to += 10;
  }
  outRecords.len = to;
}

/** After `transformBatch`: the edits' input indices become documents of the `write` call, and
 * the edits of records not forwarded as documents (rejected, dropped) go. */
function finishBatchEdits(jb) {
  const e = jb.editWords;
  const b = e.buf;
  const values = jb.editValues;
  const docmap = jb.docmap;
  let to = 0;
  let v = 0; // values kept
  let vin = 0; // values seen
  for (let k = 0; k < e.len; k += 5) {
    const own = (b[k + 2] & IN_UTF8) === 0; // has an entry in `values`
    const j = docmap[b[k]];
    if (j < 0) {
      if (own) vin++;
      continue;
    }
    b[to] = j;
    b[to + 1] = b[k + 1];
    b[to + 2] = b[k + 2];
    b[to + 3] = b[k + 3];
    b[to + 4] = b[k + 4];
    if (own) values[v++] = values[vin++];
    to += 5;
  }
  if (to === e.len) return;
  e.len = to;
  values.length = v;
  // The strings' offsets in their joined text, without the dropped ones.
  let chars = 0;
  let k = 0;
  for (let x = 0; x < to; x += 5) {
    if ((b[x + 2] & IN_UTF8) !== 0) continue;
    const s = values[k++];
    if (typeof s !== "string") continue;
    b[x + 3] = chars;
    chars += s.length;
  }
  eChars = chars;
}

/** Runs `call(i, out)` for i in 0..n with one emitter (no input data), each call's outputs
 * discarded and an error recorded when it throws: the output batch of `on-timer`. */
export function runCalls(n, call) {
  const outData = new Bytes(4096);
  const outRecords = new Words(n * 10);
  const outHeaders = new Words(64);
  const outputs = [];
  const errors = [];
  const empty = new Uint8Array(0);
  const out = new Emitter(outData, outputs, empty);
  inW = NO_WORDS;
  inHW = NO_WORDS;
  oRec = outRecords;
  oHdr = outHeaders;
  curRec = null;
  for (let i = 0; i < n; i++) {
    curIn = i;
    const m0 = outData.len;
    const m1 = outRecords.len;
    const m2 = outHeaders.len;
    try {
      call(i, out);
    } catch (e) {
      outData.len = m0;
      outRecords.len = m1;
      outHeaders.len = m2;
      errors.push({ input: i, message: message(e) });
    }
  }
  return {
    data: outData.buf.subarray(0, outData.len),
    records: wordBytes(outRecords.buf, outRecords.len),
    headers: wordBytes(outHeaders.buf, outHeaders.len),
    outputs,
    errors,
  };
}

function message(e) {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

/** Makes the component's `init` and `process` exports from a plugin class. */
export function defineTransform(Plugin) {
  let plugin = null;
  let paths = [];
  let index = new Map();
  return {
    instance: () => plugin,
    init(config) {
      try {
        plugin = new Plugin(new Config(config));
        paths = Array.from(plugin.jsonPaths ?? [], String);
      } catch (e) {
        throw message(e); // refuses the config: result::err(message)
      }
      index = new Map();
      paths.forEach((p, i) => {
        if (!index.has(p)) index.set(p, i);
      });
    },
    process(batch) {
      const data = batch.data;
      const w = words(batch.records);
      const hw = words(batch.headers);
      const topics = batch.topics;
      const n = (w.length / 12) | 0;
      const outData = new Bytes(data.length + 4096);
      outData.push(data);
      const outRecords = new Words(n * 10);
      const outHeaders = new Words(hw.length);
      const outputs = [];
      const errors = [];
      const out = new Emitter(outData, outputs, data);
      inW = w;
      inHW = hw;
      oRec = outRecords;
      oHdr = outHeaders;
      const jb = new JsonBatch(data, w, n, paths, index);
      const c = new Batch(data, w, hw, topics, jb);
      const p = plugin;
      if (typeof p.transformBatch === "function") {
        const out = new BatchEmitter(n, errors);
        bN = n;
        curRec = null;
        try {
          p.transformBatch(new RecordBatch(c, n), out);
        } catch (e) {
          // Which record is to blame is unknown: trap, and the host re-runs the batch in halves
          // on fresh instances until the record that throws is alone (the rest go through); a
          // batch of one is that record: rejected with the message.
          if (n > 1) throw e;
          const m = message(e);
          for (let i = 0; i < n; i++) if (out._rejected[i] === 0) errors.push({ input: i, message: m });
          errors.sort((a, b) => a.input - b.input);
          outRecords.len = 0;
          outHeaders.len = 0;
          bFwdEnd = 0;
          jb.docmap.fill(-1); // and no `write`: its edits go too
        }
        bN = 0;
        finishBatchEdits(jb);
        finishForwarded(jb, outData, outRecords, errors);
        bFwdEnd = 0;
        bUtf8Used = 0;
        bInUtf8 = false;
        return {
          data: outData.buf.subarray(0, outData.len),
          records: wordBytes(outRecords.buf, outRecords.len),
          headers: wordBytes(outHeaders.buf, outHeaders.len),
          outputs,
          errors,
        };
      }
      // Nothing is saved per record for a rollback: a record that throws is the last one
      // written, so its outputs and edits are found at the ends of their lists by input index.
      for (let i = 0; i < n; i++) {
        const record = new InputRecord(c, i * 12);
        curIn = i;
        curRec = record;
        try {
          p.transform(record, out);
        } catch (e) {
          out._rollback(i);
          jb.rollback(i);
          errors.push({ input: i, message: message(e) });
        }
      }
      jb.finish(outData, outRecords, errors);
      return {
        data: outData.buf.subarray(0, outData.len),
        records: wordBytes(outRecords.buf, outRecords.len),
        headers: wordBytes(outHeaders.buf, outHeaders.len),
        outputs,
        errors,
      };
    },
  };
}
