// Does nothing with each record: the JavaScript SDK's per-record loop alone, for the profile
// rows of host/benches/languages.rs (`SLUICE_BENCH_EXTRA`).
import { defineTransform } from "sluice";

class Empty {
  transform(_record, _out) {}
}

const plugin = defineTransform(Empty);
export const init = plugin.init;
export const process = plugin.process;
