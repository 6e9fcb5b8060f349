// Forwards every record unchanged on the raw batch layout (no SDK): JavaScript's floor, to
// compare the SDK's identity (js-identity) against.
export function init(_config) {}

export function process(batch) {
  // Word lists are little-endian u32 words in a Uint8Array (contract 0.3.0): view them as such.
  const rb = batch.records;
  const r = (rb.byteOffset & 3) === 0 ? new Uint32Array(rb.buffer, rb.byteOffset, rb.length >>> 2) : new Uint32Array(rb.slice().buffer);
  const n = (r.length / 12) | 0;
  const out = new Uint32Array(n * 10);
  for (let i = 0; i < n; i++) {
    const b = i * 12;
    const o = i * 10;
    out[o] = i;
    out[o + 1] = r[b];
    out[o + 2] = r[b + 1];
    out[o + 3] = r[b + 2];
    out[o + 4] = r[b + 3];
    out[o + 5] = r[b + 4];
    out[o + 6] = r[b + 5];
    out[o + 7] = 0;
    out[o + 8] = 0x80000000;
    out[o + 9] = 0xffffffff;
  }
  return { data: batch.data, records: new Uint8Array(out.buffer), headers: batch.headers, outputs: [], errors: [] };
}
