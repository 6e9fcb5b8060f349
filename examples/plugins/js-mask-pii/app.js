// mask-pii in JavaScript: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
import { defineTransform, Reject, ConfigError } from "sluice";
import { parse, stringify } from "sluice/json";
import { isAlphanumeric, trim } from "sluice/text";

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
  }

  transform(record, out) {
    if (record.value === null) throw new Reject("record has no value");
    let user = null;
    try {
      user = parse(record.value);
    } catch {
      user = null;
    }
    if (!(user instanceof Map)) throw new Reject("value is not a JSON object");
    const id = user.get("id");
    if (typeof id !== "string" || id.length === 0) throw new Reject("missing or empty string field `id`");
    for (const field of this.fields) {
      if (!user.has(field)) continue;
      const text = user.get(field);
      if (typeof text !== "string") throw new Reject(`field \`${field}\` is not a string`);
      user.set(field, field.includes("email") ? maskEmail(text) : maskTail(text));
    }
    out.emit({ key: record.key, value: stringify(user), headers: record.headers });
  }
}

function maskEmail(email) {
  const at = email.indexOf("@");
  const local = at < 0 ? "" : email.slice(0, at);
  const domain = at < 0 ? "" : email.slice(at + 1);
  if (at < 0 || local === "" || domain === "" || domain.includes("@")) throw new Reject(`invalid email \`${email}\``);
  const first = String.fromCodePoint(local.codePointAt(0));
  return `${first}****@${domain}`;
}

function maskTail(text) {
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
