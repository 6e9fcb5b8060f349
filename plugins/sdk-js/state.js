// Keyed state and timers for plugins of the `stateful-transform` world (wit/sluice.wit,
// interfaces `state` and `timers`): `import { get, put, register, defineStatefulTransform } from
// "sluice/state"`. State lives in the host, scoped to the partition of the records being processed;
// it survives traps, hot swaps and restarts, and a rejected record changes nothing. Keys and
// values are Uint8Array (a string is taken as UTF-8). build.sh builds a plugin that imports this
// module for the `stateful-transform` world.
import * as hostState from "sluice:plugin/state@0.3.0";
import { register as hostRegister, cancel as hostCancel, watermark as hostWatermark } from "sluice:plugin/timers@0.3.0";
import { defineTransform, runCalls, words, wordBytes } from "./index.js";

const encoder = new TextEncoder();
const NONE = 0xffffffff;
const I64_MIN = -9223372036854775808n;

/** A timer that fires once the partition's watermark reaches its time. */
export const EVENT_TIME = 0;
/** A timer that fires at the first batch boundary after the host's clock passes its time. */
export const PROCESSING_TIME = 1;
const DOMAINS = ["event-time", "processing-time"];

function bytes(x) {
  return typeof x === "string" ? encoder.encode(x) : x;
}

/** The value stored under `key`, or null. */
export function get(key) {
  return hostState.get(bytes(key)) ?? null;
}

/** Stores `value` under `key`. */
export function put(key, value) {
  hostState.put(bytes(key), bytes(value));
}

/** Removes `key` (nothing if it is absent). */
export function del(key) {
  hostState["delete"](bytes(key));
}

/** Up to `limit` [key, value] pairs whose keys start with `prefix`, in ascending byte order,
 * starting after the key `after` when given. */
export function scan(prefix = new Uint8Array(0), after = null, limit = 1000) {
  return hostState.scan(bytes(prefix), after === null ? undefined : bytes(after), limit);
}

/** Every [key, value] pair whose key starts with `prefix`, in order, a page at a time. */
export function* scanAll(prefix = new Uint8Array(0), page = 1000) {
  let after = null;
  for (;;) {
    const entries = scan(prefix, after, page);
    yield* entries;
    if (entries.length < page) return;
    after = entries[entries.length - 1][0];
  }
}

function pack(parts) {
  let total = 0;
  for (const p of parts) if (p !== null) total += p.length;
  const data = new Uint8Array(total);
  const spans = new Uint32Array(parts.length * 2);
  let o = 0;
  parts.forEach((p, i) => {
    if (p === null) {
      spans[2 * i] = 0;
      spans[2 * i + 1] = NONE;
    } else {
      data.set(p, o);
      spans[2 * i] = o;
      spans[2 * i + 1] = p.length;
      o += p.length;
    }
  });
  return [data, spans];
}

/** Several `get`s in one host call: a Uint8Array or null per key. */
export function getMany(keys) {
  const [data, keyWords] = pack(keys.map(bytes));
  const [got, spanBytes] = hostState.getMany(data, wordBytes(keyWords));
  const spans = words(spanBytes);
  const out = [];
  for (let i = 0; i < spans.length; i += 2) out.push(spans[i + 1] === NONE ? null : got.subarray(spans[i], spans[i] + spans[i + 1]));
  return out;
}

/** Several `put`s and deletes (a value of null) in one host call, in order: [key, value] pairs. */
export function putMany(entries) {
  const parts = [];
  for (const [k, v] of entries) parts.push(bytes(k), v === null || v === undefined ? null : bytes(v));
  const [data, entryWords] = pack(parts);
  hostState.putMany(data, wordBytes(entryWords));
}

/** Registers a timer for `key` at `at` (ms since the Unix epoch) in `domain`. */
export function register(domain, key, at) {
  hostRegister(DOMAINS[domain], bytes(key), BigInt(at));
}

/** Cancels the timer registered with the same (domain, key, at), if any. */
export function cancel(domain, key, at) {
  hostCancel(DOMAINS[domain], bytes(key), BigInt(at));
}

/** The partition's watermark (ms), or null before any record. */
export function watermark() {
  // As a signed 64-bit integer whatever the bindings hand over (a BigInt, maybe unsigned).
  const w = BigInt.asIntN(64, BigInt(hostWatermark()));
  return w === I64_MIN ? null : Number(w);
}

/** Makes the `init`, `process` and `onTimer` exports of a stateful plugin class: as
 * `defineTransform`, plus `onTimer(timer, out)` called for every timer that fired (`timer.key`,
 * `timer.domain`, `timer.time`), with the same emitter (throw to dead-letter the timer). */
export function defineStatefulTransform(Plugin) {
  const exports = defineTransform(Plugin);
  return {
    init: exports.init,
    process: exports.process,
    onTimer(fired) {
      const data = fired.data;
      const w = words(fired.timers);
      const n = (w.length / 5) | 0;
      const plugin = exports.instance();
      return runCalls(n, (i, out) => {
        const x = 5 * i;
        const hi = w[x + 4];
        const lo = w[x + 3];
        const time = hi >= 0x80000000 ? Number(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo))) : hi * 4294967296 + lo;
        plugin.onTimer({ key: data.subarray(w[x], w[x] + w[x + 1]), domain: w[x + 2], time }, out);
      });
    },
  };
}
