// mask-pii in JavaScript: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
import { defineTransform, pointer, Kind, ConfigError } from "sluice";
import { isAlphanumeric, trim } from "sluice/text";

const { STRING, MISSING, OBJECT } = Kind; // module bindings: cheaper than `Kind.STRING` on every record

class MaskPii {
  constructor(config) {
    this.fields = config
      .get("fields", "email,phone")
      .split(",")
      .map(trim)
      .filter((f) => f.length > 0);
    if (this.fields.length === 0) throw new ConfigError("config `fields` must name at least one field to mask");
    for (const key of config.keys()) {
      if (key !== "fields") throw new ConfigError(`unknown config key \`${key}\` (expected \`fields\`)`);
    }
    // Read by the host for the whole batch: `id` (path 0) and each masked field (1..).
    this.jsonPaths = ["/id", ...this.fields.map((f) => pointer(f))];
    this.emails = this.fields.map((f) => f.includes("email"));
  }

  // The whole batch at once, over columns (see `transformBatch` in plugins/sdk-js/README.md):
  // every check and mask is a loop over typed arrays in local variables, and the masked values
  // are written as UTF-8 bytes (`setUtf8`), so no string is made for a valid record. The SDK
  // forwards what is not rejected with its key, headers and timestamp as they came.
  transformBatch(batch, out) {
    const n = batch.length;
    const idKinds = batch.kinds(0);
    const idLengths = batch.lengths(0); // an empty `id` without making the string
    const fields = this.fields;
    const emails = this.emails;
    const m = fields.length;
    const kinds = [];
    const starts = [];
    const lengths = [];
    let text = null; // the host's read: UTF-8 of every declared field
    for (let f = 0; f < m; f++) {
      kinds.push(batch.kinds(f + 1));
      const s = batch.spans(f + 1);
      text = s.text;
      starts.push(s.starts);
      lengths.push(s.lengths);
    }
    // The masked values, never longer than the originals, but an email may grow by its "****".
    let buf = batch.utf8Buffer(text.length + 8 * n + 64);
    let at = 0;
    let present = null;
    let roots = null;
    for (let i = 0; i < n; i++) {
      if (idKinds[i] !== STRING || idLengths[i] === 0) {
        // The same checks in the same order as every other language's mask-pii.
        if (present === null) {
          present = batch.present;
          roots = batch.kinds("");
        }
        if (present[i] === 0) out.reject(i, "record has no value");
        else if (roots[i] !== OBJECT) out.reject(i, "value is not a JSON object");
        else out.reject(i, "missing or empty string field `id`");
        continue;
      }
      for (let f = 0; f < m; f++) {
        const kind = kinds[f][i];
        if (kind === MISSING) continue;
        if (kind !== STRING) {
          out.reject(i, `field \`${fields[f]}\` is not a string`);
          break; // its edits so far are dropped with it
        }
        const s = starts[f][i];
        const len = lengths[f][i];
        if (at + len + 8 > buf.length) buf = batch.utf8Buffer(2 * (at + len + 8));
        const end = s + len;
        if (emails[f]) {
          // Exactly one `@` (a byte never inside a multi-byte UTF-8 sequence), with something
          // before and after it; the first character (its 1 to 4 bytes), `****`, the domain.
          let a = -1;
          let count = 0;
          for (let k = s; k < end; k++) {
            if (text[k] === 64) {
              if (count++ === 0) a = k;
            }
          }
          if (count !== 1 || a === s || a === end - 1) {
            out.reject(i, `invalid email \`${decoder.decode(text.subarray(s, end))}\``);
            break;
          }
          const c = text[s];
          const first = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
          const o = at;
          for (let k = s; k < s + first; k++) buf[at++] = text[k];
          buf[at++] = 42;
          buf[at++] = 42;
          buf[at++] = 42;
          buf[at++] = 42;
          for (let k = a; k < end; k++) buf[at++] = text[k];
          batch.setUtf8(i, f + 1, o, at - o);
          continue;
        }
        // Every letter or digit before the second-to-last one becomes `*`: on the bytes when
        // the text is ASCII ([0-9A-Za-z]), else on its code points with Unicode's rules.
        let ascii = true;
        let seen = 0;
        let p = end;
        while (p > s) {
          const c = text[--p];
          if (c >= 0x80) {
            ascii = false;
            break;
          }
          if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) {
            if (++seen === 2) break;
          }
        }
        if (ascii) {
          for (let k = s; k < p; k++) {
            if (text[k] >= 0x80) {
              ascii = false;
              break;
            }
          }
        }
        if (!ascii) {
          batch.set(i, f + 1, maskTail(decoder.decode(text.subarray(s, end))));
          continue;
        }
        const o = at;
        if (seen < 2) p = s; // fewer than two: nothing is masked
        for (let k = s; k < p; k++) {
          const c = text[k];
          buf[at++] = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) ? 42 : c;
        }
        for (let k = p; k < end; k++) buf[at++] = text[k];
        batch.setUtf8(i, f + 1, o, at - o);
      }
    }
    // Every record not rejected, with its edited document as its value.
    out.forwardAll({ json: true });
  }
}

const decoder = new TextDecoder();

// The text's UTF-16 units, reused by every call. No regular expressions on the record path:
// SpiderMonkey runs `test` and a global `replace` as self-hosted JavaScript, which
// StarlingMonkey interprets, match by match.
const units = [];

function maskTail(text) {
  const n = text.length;
  let ascii = true;
  for (let k = 0; k < n; k++) {
    const c = text.charCodeAt(k);
    if (c >= 0x80) {
      ascii = false;
      break;
    }
    units[k] = c;
  }
  if (ascii) {
    // Every letter or digit before the second-to-last one becomes `*` ([0-9A-Za-z] in ASCII).
    units.length = n;
    let seen = 0;
    let p = n;
    while (p > 0 && seen < 2) {
      const c = units[--p];
      if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) seen++;
    }
    if (seen < 2) return text;
    for (let k = 0; k < p; k++) {
      const c = units[k];
      if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) units[k] = 42; // *
    }
    if (n <= 4096) return String.fromCharCode.apply(null, units);
    // Long text: in pieces, within any engine's limit on the arguments of one call.
    let out = "";
    for (let k = 0; k < n; k += 4096) out += String.fromCharCode.apply(null, units.slice(k, k + 4096));
    return out;
  }
  const chars = Array.from(text); // code points
  const total = chars.filter((c) => isAlphanumeric(c.codePointAt(0))).length;
  let seen = 0;
  return chars
    .map((c) => {
      if (!isAlphanumeric(c.codePointAt(0))) return c;
      seen += 1;
      return seen + 2 > total ? c : "*";
    })
    .join("");
}

const plugin = defineTransform(MaskPii);
export const init = plugin.init;
export const process = plugin.process;
