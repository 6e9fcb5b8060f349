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

use serde_json::{Map, Value};
use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct MaskPii {
    fields: Vec<String>,
}

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
        Ok(MaskPii { fields })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let value = record.value.ok_or("record has no value")?;
        // A fixed message, not serde_json's error text, so that the same plugin written in any
        // language rejects the same input with the same reason (see host/tests/languages.rs).
        let mut user: Map<String, Value> =
            serde_json::from_slice(value).map_err(|_| "value is not a JSON object".to_string())?;
        match user.get("id") {
            Some(Value::String(id)) if !id.is_empty() => {}
            _ => return Err("missing or empty string field `id`".into()),
        }
        for field in &self.fields {
            let Some(v) = user.get_mut(field) else {
                continue;
            };
            let Value::String(text) = v else {
                return Err(format!("field `{field}` is not a string"));
            };
            let masked = if field.contains("email") {
                mask_email(text)?
            } else {
                mask_tail(text)
            };
            *v = Value::String(masked);
        }
        let json = serde_json::to_vec(&user).map_err(|e| e.to_string())?;
        out.record()
            .key(record.key)
            .value(Some(&json))
            .headers(&record.headers)
            .emit();
        Ok(())
    }
}

fn mask_email(email: &str) -> Result<String, String> {
    let (local, domain) = email
        .split_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        .ok_or_else(|| format!("invalid email `{email}`"))?;
    let first = local.chars().next().expect("local part is not empty");
    Ok(format!("{first}****@{domain}"))
}

fn mask_tail(text: &str) -> String {
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen + 2 > total { c } else { '*' }
        })
        .collect()
}

export_transform!(MaskPii);
