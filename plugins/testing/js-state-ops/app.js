// Every state call of the JavaScript SDK, with a summary of what each returned as the output
// value (the same in every language: see python-state-ops, go-state-ops).
import { defineStatefulTransform, getMany, putMany, del, scan, watermark, get } from "sluice/state";

const dec = new TextDecoder();
const cat = (a, b) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};
const enc = (s) => new TextEncoder().encode(s);

class StateOps {
  transform(record, out) {
    const k = record.key;
    putMany([[cat(k, enc("/a")), "1"], [cat(k, enc("/b")), "2"], [cat(k, enc("/c")), null]]);
    const got = getMany([cat(k, enc("/a")), cat(k, enc("/b")), cat(k, enc("/c"))]);
    del(cat(k, enc("/a")));
    const listed = scan(cat(k, enc("/")), null, 10);
    const paged = scan(cat(k, enc("/")), cat(k, enc("/a")), 10);
    const wm = watermark();
    get(k);
    const summary =
      "get_many=" + got.map((v) => (v === null ? "-" : dec.decode(v))).join(",") +
      " scan=" + listed.map(([kk, v]) => dec.decode(kk) + "=" + dec.decode(v)).join(",") +
      " after=" + paged.map(([kk]) => dec.decode(kk)).join(",") +
      " wm=" + (wm === null ? "none" : String(wm));
    out.emit({ key: k, value: summary });
  }
  onTimer() {}
}

const plugin = defineStatefulTransform(StateOps);
export const init = plugin.init;
export const process = plugin.process;
export const onTimer = plugin.onTimer;
