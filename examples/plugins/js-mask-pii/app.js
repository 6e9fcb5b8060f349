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
    this.masks = this.fields.map((f) => (f.includes("email") ? maskEmail : maskTail));
  }

  // The whole batch at once, over columns (see `transformBatch` in plugins/sdk-js/README.md):
  // every check and mask is a loop over typed arrays and arrays in local variables; the SDK
  // forwards what is not rejected with its key, headers and timestamp as they came.
  transformBatch(batch, out) {
    const n = batch.length;
    const idKinds = batch.kinds(0);
    const idLengths = batch.lengths(0); // an empty `id` without making the string
    const fields = this.fields;
    const masks = this.masks;
    const m = masks.length;
    const kinds = [];
    const texts = [];
    for (let f = 0; f < m; f++) {
      kinds.push(batch.kinds(f + 1));
      texts.push(batch.strings(f + 1));
    }
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
        const text = texts[f][i];
        const masked = masks[f](text);
        if (masked === null) {
          out.reject(i, `invalid email \`${text}\``);
          break;
        }
        batch.set(i, f + 1, masked);
      }
    }
    // Every record not rejected, with its edited document as its value.
    out.forwardAll({ json: true });
  }
}

function maskEmail(email) {
  // Exactly one `@`, with something before and after it. Positions, not slices: every string
  // made costs about a microsecond in StarlingMonkey's interpreter.
  const at = email.indexOf("@");
  if (at <= 0 || at === email.length - 1 || email.indexOf("@", at + 1) >= 0) return null; // invalid
  // The first code point of the local part: two UTF-16 units when it is beyond the BMP.
  const first = email.codePointAt(0) > 0xffff ? email.slice(0, 2) : email[0];
  return first + "****" + email.slice(at);
}

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
