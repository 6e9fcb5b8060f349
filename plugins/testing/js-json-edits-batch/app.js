// plugins/testing/js-json-edits on the batch-at-a-time API (`transformBatch`), for
// host/tests/languages.rs (json_edits_agree_in_python_js_and_go): the same outcomes from columns,
// per-index edits, `out.reject` after edits and `out.forwardAll({ json: true })`.
import { defineTransform, pointer, Kind } from "sluice";

class JsonEditsBatch {
  constructor() {
    this.jsonPaths = ["/name", pointer("tags", 0), "/drop"];
  }
  transformBatch(batch, out) {
    const n = batch.length;
    const names = batch.strings(0);
    const tagKinds = batch.kinds(1);
    const tagTexts = batch.texts(1);
    const nKinds = batch.kinds("/n"); // undeclared: one host call for the batch
    const fails = batch.kinds("/fail");
    const rejects = batch.kinds("/reject");
    for (let i = 0; i < n; i++) {
      if (names[i] !== null) batch.set(i, 0, "seen:" + names[i]);
      if (tagKinds[i] === Kind.NUMBER) batch.setRaw(i, 1, tagTexts[i] + "0");
      batch.remove(i, 2);
      if (nKinds[i] !== Kind.MISSING) batch.setRaw(i, "/n_kind", String(nKinds[i]));
      if (fails[i] === Kind.TRUE) batch.record(i).json.set("/missing/x", "y"); // no parent: cannot be written
      if (rejects[i] === Kind.TRUE) out.reject(i, "asked to reject");
    }
    out.forwardAll({ json: true });
  }
}

const plugin = defineTransform(JsonEditsBatch);
export const init = plugin.init;
export const process = plugin.process;
