//! Masks personal data in user sign-up records and rejects invalid ones.
//!
//! Input: a JSON object shaped like a random-user API's output (`id`, `name`, `email`, `phone`,
//! `location`, `registered`). Output: the same object, same key order, compact, with each field
//! named in the `fields` config (default `email,phone`) masked:
//! - a field whose name contains `email`: `a****@example.com` (first character and domain kept);
//! - any other string field: every letter and digit but the last two replaced by `*`.
//!
//! Rejected (to the dead-letter topic, with the reason): a record without a value, a value that is
//! not a JSON object, a missing or empty string `id`, an email without exactly one `@` between
//! non-empty parts, a masked field that is not a string.
//!
//! The JSON work is the host's (`sluice_plugin::json`): the plugin reads `id` and the masked
//! fields of the whole batch in one call and sets the masked strings; no JSON is parsed or
//! written in the plugin.

use sluice_plugin::json::{Field, Paths};
use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct MaskPii {
    /// Each masked field, and whether it is an email (its name contains `email`).
    fields: Vec<(String, bool)>,
    /// `/id`, then one pointer per masked field.
    json: Paths,
    masked: String,
}

const ID: usize = 0;

impl Transform for MaskPii {
    fn init(config: &Config) -> Result<Self, String> {
        let fields: Vec<String> = config
            .get("fields")
            .unwrap_or("email,phone")
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        if fields.is_empty() {
            return Err("config `fields` must name at least one field to mask".into());
        }
        if let Some((key, _)) = config.iter().find(|(k, _)| *k != "fields") {
            return Err(format!("unknown config key `{key}` (expected `fields`)"));
        }
        let paths =
            std::iter::once("/id".to_string()).chain(fields.iter().map(|f| Paths::pointer(f)));
        Ok(MaskPii {
            json: Paths::new(paths),
            fields: fields
                .into_iter()
                .map(|f| {
                    let email = f.contains("email");
                    (f, email)
                })
                .collect(),
            masked: String::new(),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        record.value.ok_or("record has no value")?;
        let doc = self.json.doc(out);
        // A fixed message, the same in every language (see host/tests/languages.rs).
        if !doc.kind().is_object() {
            return Err("value is not a JSON object".into());
        }
        match doc.get(ID) {
            Field::String(id) if !id.is_empty() => {}
            _ => return Err("missing or empty string field `id`".into()),
        }
        let edit = doc.edit();
        for (i, (field, email)) in self.fields.iter().enumerate() {
            let text = match doc.get(1 + i) {
                Field::Missing => continue,
                Field::String(text) => text,
                _ => return Err(format!("field `{field}` is not a string")),
            };
            self.masked.clear();
            if *email {
                mask_email(text, &mut self.masked)?;
            } else {
                mask_tail(text, &mut self.masked);
            }
            edit.set_str(1 + i, &self.masked);
        }
        out.record()
            .key(record.key)
            .json_value(&edit)
            .headers(&record.headers)
            .emit();
        Ok(())
    }
}

fn mask_email(email: &str, out: &mut String) -> Result<(), String> {
    let (local, domain) = email
        .split_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        .ok_or_else(|| format!("invalid email `{email}`"))?;
    let first = local.chars().next().expect("local part is not empty");
    out.push(first);
    out.push_str("****@");
    out.push_str(domain);
    Ok(())
}

fn mask_tail(text: &str, out: &mut String) {
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    out.extend(text.chars().map(|c| {
        if !c.is_alphanumeric() {
            return c;
        }
        seen += 1;
        if seen + 2 > total { c } else { '*' }
    }));
}

export_transform!(MaskPii);
