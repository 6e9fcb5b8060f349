// A per-key counter (the stateful plugin of host/tests/languages.rs): emits each key's running
// count, and when an event-time timer at the end of the record's second fires, that key's count
// then. Keys are required.
import { Reject } from "sluice";
import { defineStatefulTransform, get, put, register, EVENT_TIME } from "sluice/state";

const decoder = new TextDecoder();

class Counter {
  transform(record, out) {
    if (record.key === null) throw new Reject("record has no key");
    const old = get(record.key);
    const n = (old === null ? 0 : Number(decoder.decode(old))) + 1;
    put(record.key, String(n));
    const ts = record.timestamp;
    if (ts !== null && ts >= 0) register(EVENT_TIME, record.key, ts - (ts % 1000) + 1000);
    out.emit({ key: record.key, value: String(n) });
  }
  onTimer(timer, out) {
    const n = get(timer.key);
    out.emit({ key: timer.key, value: `${n === null ? "0" : decoder.decode(n)} at ${timer.time}`, timestamp: timer.time });
  }
}

const plugin = defineStatefulTransform(Counter);
export const init = plugin.init;
export const process = plugin.process;
export const onTimer = plugin.onTimer;
