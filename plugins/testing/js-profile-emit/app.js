// Emits each record's own key, value and headers: what one `emit` costs beyond `forward`, for the
// profile rows of host/benches/languages.rs (`SLUICE_BENCH_EXTRA`).
import { defineTransform } from "sluice";

class Emit {
  transform(record, out) {
    out.emit({ key: record.key, value: record.value, headers: record.headers });
  }
}

const plugin = defineTransform(Emit);
export const init = plugin.init;
export const process = plugin.process;
