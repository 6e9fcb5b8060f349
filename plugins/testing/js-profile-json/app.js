// Reads mask-pii's three fields through the host's JSON `read` and emits nothing: the batch's
// `read` call plus the SDK's field access, for the profile rows of host/benches/languages.rs
// (`SLUICE_BENCH_EXTRA`).
import { defineTransform, Kind } from "sluice";

class JsonView {
  constructor() {
    this.jsonPaths = ["/id", "/email", "/phone"];
  }
  transform(record, _out) {
    const doc = record.json;
    let n = 0;
    for (let i = 0; i < 3; i++) if (doc.kind(i) === Kind.STRING) n += doc.string(i).length;
    this.n = n;
  }
}

const plugin = defineTransform(JsonView);
export const init = plugin.init;
export const process = plugin.process;
