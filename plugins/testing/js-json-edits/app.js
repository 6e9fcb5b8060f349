// Every host JSON operation of the JavaScript SDK, for host/tests/languages.rs
// (json_edits_agree_in_python_js_and_go): declared and undeclared paths, set, setRaw, remove, an
// edit that fails, a rejection after edits, and values that are absent or not JSON.
import { defineTransform, pointer, Kind, Reject } from "sluice";

class JsonEdits {
  constructor() {
    this.jsonPaths = ["/name", pointer("tags", 0), "/drop"];
  }
  transform(record, out) {
    const doc = record.json;
    const name = doc.string(0);
    if (name !== null) doc.set(0, "seen:" + name);
    if (doc.kind(1) === Kind.NUMBER) doc.setRaw(1, doc.text(1) + "0");
    doc.remove(2);
    const n = doc.kind("/n"); // undeclared: a host call of its own
    if (n !== Kind.MISSING) doc.setRaw("/n_kind", String(n));
    if (doc.kind("/fail") === Kind.TRUE) doc.set("/missing/x", "y"); // no parent: cannot be written
    if (doc.kind("/reject") === Kind.TRUE) throw new Reject("asked to reject");
    out.emit({ key: record.key, value: doc, headers: record.headers });
  }
}

const plugin = defineTransform(JsonEdits);
export const init = plugin.init;
export const process = plugin.process;
