// Reads every field of each record and emits nothing: what the SDK's record views cost, for the
// profile rows of host/benches/languages.rs (`SLUICE_BENCH_EXTRA`).
import { defineTransform } from "sluice";

class View {
  transform(record, _out) {
    let n = 0;
    if (record.key !== null) n += record.key.length;
    if (record.value !== null) n += record.value.length;
    for (const [name, value] of record.headers) n += name.length + (value === null ? 0 : value.length);
    if (record.timestamp === null) n += 1;
    this.n = n;
  }
}

const plugin = defineTransform(View);
export const init = plugin.init;
export const process = plugin.process;
