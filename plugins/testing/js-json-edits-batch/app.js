// plugins/testing/js-json-edits on the batch-at-a-time API (`transformBatch`), for
// host/tests/languages.rs (json_edits_agree_in_python_js_and_go): the same outcomes from columns,
// per-index edits, UTF-8 edits (`setUtf8`, `setUtf8Column`) mixed with string ones, `out.reject`
// after edits and `out.forwardAll({ json: true })`.
import { defineTransform, pointer, Kind, NO_EDIT } from "sluice";

class JsonEditsBatch {
  constructor() {
    this.jsonPaths = ["/name", pointer("tags", 0), "/drop"];
  }
  transformBatch(batch, out) {
    const n = batch.length;
    // "seen:" + name written as UTF-8 bytes: even records a column at a time, odd ones one by one.
    const names = batch.spans(0);
    const nameKinds = batch.kinds(0);
    const buf = batch.utf8Buffer(names.text.length + 5 * n);
    const starts = new Uint32Array(n);
    const lengths = new Uint32Array(n).fill(NO_EDIT);
    let at = 0;
    const tagKinds = batch.kinds(1);
    const tagTexts = batch.texts(1);
    const nKinds = batch.kinds("/n"); // undeclared: one host call for the batch
    const fails = batch.kinds("/fail");
    const rejects = batch.kinds("/reject");
    // For a_record_that_raises_in_a_batch_hook_is_dead_lettered_alone: a throw after some work (a rejection, a
    // UTF-8 edit, the outputs) rejects every record not yet rejected, and the next batch is clean.
    const throws = batch.kinds("/throw");
    for (let i = 0; i < n; i++) {
      if (nameKinds[i] === Kind.STRING) {
        const o = at;
        for (const c of [115, 101, 101, 110, 58]) buf[at++] = c; // "seen:"
        for (let k = names.starts[i], end = k + names.lengths[i]; k < end; k++) buf[at++] = names.text[k];
        if (i % 2 === 0) {
          starts[i] = o;
          lengths[i] = at - o;
        } else {
          batch.setUtf8(i, 0, o, at - o);
        }
      }
      if (tagKinds[i] === Kind.NUMBER) batch.setRaw(i, 1, tagTexts[i] + "0");
      batch.remove(i, 2);
      if (nKinds[i] !== Kind.MISSING) batch.setRaw(i, "/n_kind", String(nKinds[i]));
      if (fails[i] === Kind.TRUE) batch.record(i).json.set("/missing/x", "y"); // no parent: cannot be written
      if (rejects[i] === Kind.TRUE) out.reject(i, "asked to reject");
    }
    batch.setUtf8Column(0, starts, lengths);
    out.forwardAll({ json: true });
    for (let i = 0; i < n; i++) if (throws[i] === Kind.TRUE) throw new Error(`record ${i} asked to throw`);
  }
}

const plugin = defineTransform(JsonEditsBatch);
export const init = plugin.init;
export const process = plugin.process;
