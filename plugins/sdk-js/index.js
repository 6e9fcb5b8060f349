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
import { log as hostLog } from "sluice:plugin/host@0.1.0";
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const utf8Decode = (b) => decoder.decode(b);
const utf8Encode = (s) => encoder.encode(s);

const NONE = 0xffffffff;

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

function asBytes(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return utf8Encode(v);
  return v;
}

/** Where `transform` writes the outputs of the record it is given. */
export class Emitter {
  constructor(data, records, headers, outputs, input) {
    this._data = data;
    this._records = records;
    this._headers = headers;
    this._outputs = outputs;
    this._in = input; // the input batch's data: the output's data starts with a copy of it
    this._input = 0;
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
  /**
   * Emits one output. `key`/`value`: Uint8Array, string (UTF-8) or null; `headers`: [name, value]
   * pairs; `timestamp`: milliseconds (default: the input's); `to`: a named output declared in the
   * pipeline config (default: the pipeline's default output).
   */
  emit({ key = null, value = null, headers = [], timestamp = null, to = null } = {}) {
    const hs = this._headers;
    const first = hs.len / 4;
    for (const [name, hv] of headers) {
      this._span(utf8Encode(name), hs);
      this._span(asBytes(hv), hs);
    }
    const r = this._records;
    r.push(this._input);
    this._span(asBytes(key), r);
    this._span(asBytes(value), r);
    r.push(first);
    r.push(hs.len / 4 - first);
    if (timestamp === null || timestamp === undefined) {
      r.push(0);
      r.push(0x80000000);
    } else {
      const t = BigInt.asUintN(64, BigInt(timestamp));
      r.push(Number(t & 0xffffffffn));
      r.push(Number(t >> 32n));
    }
    if (to === null || to === undefined) {
      r.push(NONE);
    } else {
      let o = this._outputs.indexOf(to);
      if (o < 0) {
        o = this._outputs.length;
        this._outputs.push(to);
      }
      r.push(o);
    }
  }
  /** Sends `record` on unchanged (key, value, headers, timestamp) to the default output. */
  forward(record) {
    // The input's spans are valid in the output's data as they are: copy words, not bytes.
    const w = record._w;
    const b = record._b;
    const count = w[b + 5];
    const hs = this._headers;
    const first = hs.len >> 2;
    if (count > 0) {
      hs.reserve(count * 4);
      hs.buf.set(record._hw.subarray(w[b + 4] * 4, (w[b + 4] + count) * 4), hs.len);
      hs.len += count * 4;
    }
    const r = this._records;
    r.reserve(10);
    const o = r.buf;
    const n = r.len;
    o[n] = this._input;
    o[n + 1] = w[b];
    o[n + 2] = w[b + 1];
    o[n + 3] = w[b + 2];
    o[n + 4] = w[b + 3];
    o[n + 5] = first;
    o[n + 6] = count;
    o[n + 7] = w[b + 6];
    o[n + 8] = w[b + 7];
    o[n + 9] = NONE;
    r.len = n + 10;
  }
}

/** One input record: `key`/`value` are Uint8Array or null (a Kafka null), `headers` a list of
 * [name, value] pairs, `timestamp` milliseconds or null. Views into the batch, valid during the
 * call; each field is decoded when first read. */
class InputRecord {
  constructor(data, w, b, hw, topics) {
    this._data = data;
    this._w = w;
    this._b = b;
    this._hw = hw;
    this._topics = topics;
    this._headers = undefined;
  }
  get key() {
    return span(this._data, this._w[this._b], this._w[this._b + 1]);
  }
  get value() {
    return span(this._data, this._w[this._b + 2], this._w[this._b + 3]);
  }
  get headers() {
    if (this._headers === undefined) {
      const w = this._w;
      const hw = this._hw;
      const data = this._data;
      const headers = [];
      for (let h = w[this._b + 4], end = h + w[this._b + 5]; h < end; h++) {
        const x = h * 4;
        headers.push([utf8Decode(data.subarray(hw[x], hw[x] + hw[x + 1])), span(data, hw[x + 2], hw[x + 3])]);
      }
      this._headers = headers;
    }
    return this._headers;
  }
  get timestamp() {
    const lo = this._w[this._b + 6];
    const hi = this._w[this._b + 7];
    if (lo === 0 && hi === 0x80000000) return null;
    return hi >= 0x80000000 ? Number(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo))) : hi * 4294967296 + lo;
  }
  get topic() {
    return this._topics[this._w[this._b + 8]];
  }
  get partition() {
    return this._w[this._b + 9] | 0;
  }
  get offset() {
    return this._w[this._b + 10] + this._w[this._b + 11] * 4294967296;
  }
  /** The value of the first header called `name` (null if absent or null). */
  header(name) {
    for (const [hn, hv] of this.headers) if (hn === name) return hv;
    return null;
  }
}

function span(data, off, len) {
  return len === NONE ? null : data.subarray(off, off + len);
}

function message(e) {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

/** Makes the component's `init` and `process` exports from a plugin class. */
export function defineTransform(Plugin) {
  let plugin = null;
  return {
    init(config) {
      try {
        plugin = new Plugin(new Config(config));
      } catch (e) {
        throw message(e); // refuses the config: result::err(message)
      }
    },
    process(batch) {
      const data = batch.data;
      const w = batch.records;
      const hw = batch.headers;
      const topics = batch.topics;
      const n = (w.length / 12) | 0;
      const outData = new Bytes(data.length + 4096);
      outData.push(data);
      const outRecords = new Words(n * 10);
      const outHeaders = new Words(hw.length);
      const outputs = [];
      const errors = [];
      const out = new Emitter(outData, outRecords, outHeaders, outputs, data);
      for (let i = 0; i < n; i++) {
        const record = new InputRecord(data, w, i * 12, hw, topics);
        out._input = i;
        const m0 = outData.len;
        const m1 = outRecords.len;
        const m2 = outHeaders.len;
        try {
          plugin.transform(record, out);
        } catch (e) {
          outData.len = m0;
          outRecords.len = m1;
          outHeaders.len = m2;
          errors.push({ input: i, message: message(e) });
        }
      }
      return {
        data: outData.buf.subarray(0, outData.len),
        records: outRecords.buf.subarray(0, outRecords.len),
        headers: outHeaders.buf.subarray(0, outHeaders.len),
        outputs,
        errors,
      };
    },
  };
}
