// mask-pii in JavaScript: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
import { defineTransform, pointer, Kind, ConfigError, NO_EDIT } from "sluice";
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
  // every check and mask is a loop over typed arrays in local variables, the masked values are
  // written as UTF-8 bytes and set a column at a time (`setUtf8Column`), so a valid record makes
  // no string, object or call of its own. The SDK forwards what is not rejected with its key,
  // headers and timestamp as they came.
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
    const edits = []; // per field: the masked value's span in `buf`, per record
    let text = null; // the host's read: the UTF-8 of every declared field
    let ascii = true;
    for (let f = 0; f < m; f++) {
      kinds.push(batch.kinds(f + 1));
      const s = batch.spans(f + 1);
      text = s.text;
      ascii = s.ascii;
      starts.push(s.starts);
      lengths.push(s.lengths);
      edits.push(new Uint32Array(n), new Uint32Array(n).fill(NO_EDIT));
    }
    // The masked values are written after a copy of the read's text, so a value's bytes are
    // copied within one array (`copyWithin`, native) and masked in place. A masked value is never
    // longer than its original but for an email's "****".
    const t = text.length;
    let buf = batch.utf8Buffer(t + t + 8 * n + 64);
    buf.set(text);
    let at = t;
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
        const end = s + len;
        if (at + len + 8 > buf.length) buf = batch.utf8Buffer(2 * (at + len + 8));
        const o = at;
        if (emails[f]) {
          // Exactly one `@` (a byte never inside a multi-byte UTF-8 sequence), with something
          // before and after it; then the first character (its 1 to 4 bytes), `****`, the domain.
          const a = text.indexOf(64, s);
          if (a <= s || a >= end - 1 || text.lastIndexOf(64, end - 1) !== a) {
            out.reject(i, `invalid email \`${decoder.decode(text.subarray(s, end))}\``);
            break;
          }
          const c = text[s];
          const first = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
          buf.copyWithin(at, s, s + first);
          at += first;
          buf[at] = 42;
          buf[at + 1] = 42;
          buf[at + 2] = 42;
          buf[at + 3] = 42;
          buf.copyWithin(at + 4, a, end);
          at += 4 + end - a;
        } else {
          // Every letter or digit before the second-to-last one becomes `*`: on the bytes when
          // the text is ASCII ([0-9A-Za-z]), else on its code points with Unicode's rules.
          let p = end;
          let seen = 0;
          let fieldAscii = true;
          while (p > s) {
            const c = text[--p];
            if (c >= 0x80) {
              fieldAscii = false;
              break;
            }
            if (ALNUM[c] === 1 && ++seen === 2) break;
          }
          if (!ascii && fieldAscii) {
            for (let k = s; k < p; k++) {
              if (text[k] >= 0x80) {
                fieldAscii = false;
                break;
              }
            }
          }
          if (!fieldAscii) {
            batch.set(i, f + 1, maskTail(decoder.decode(text.subarray(s, end))));
            continue;
          }
          if (seen < 2) p = s; // fewer than two: nothing is masked
          buf.copyWithin(at, s, end);
          for (let k = at, e = at + p - s; k < e; k++) buf[k] = MASK[buf[k]];
          at += len;
        }
        edits[2 * f][i] = o;
        edits[2 * f + 1][i] = at - o;
      }
    }
    for (let f = 0; f < m; f++) batch.setUtf8Column(f + 1, edits[2 * f], edits[2 * f + 1]);
    // Every record not rejected, with its edited document as its value.
    out.forwardAll({ json: true });
  }
}

// ASCII letters and digits ([0-9A-Za-z]): 1 in ALNUM; MASK maps them to `*`, the rest to itself.
const ALNUM = new Uint8Array(128);
const MASK = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  ALNUM[c] = alnum ? 1 : 0;
  MASK[c] = alnum ? 42 : c;
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
