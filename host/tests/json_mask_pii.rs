//! `mask-pii` on the host's `json` interface behaves exactly like the serde_json-in-the-plugin
//! version it replaced: the old plugin's logic, run natively here with serde_json
//! (`preserve_order`, as the plugin had it), gives the same values and rejection messages on the
//! conformance file under several `fields` configs.

mod common;

use base64::Engine as _;
use serde_json::{Map, Value};
use sluice::testing::config::Limits;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice_abi::InputBatch;

/// The values of the conformance file (`value` or `value_base64`; none when absent).
fn values() -> Vec<Option<Vec<u8>>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mask-pii-conformance.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(b) = v.get("value_base64") {
                return Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_str().unwrap())
                        .unwrap(),
                );
            }
            v.get("value")
                .map(|s| s.as_str().unwrap().as_bytes().to_vec())
        })
        .collect()
}

/// The plugin before issue 16, verbatim in behaviour.
fn old_mask_pii(fields: &[String], value: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let value = value.ok_or("record has no value")?;
    let mut user: Map<String, Value> =
        serde_json::from_slice(value).map_err(|_| "value is not a JSON object".to_string())?;
    match user.get("id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => return Err("missing or empty string field `id`".into()),
    }
    for field in fields {
        let Some(v) = user.get_mut(field) else {
            continue;
        };
        let Value::String(text) = v else {
            return Err(format!("field `{field}` is not a string"));
        };
        let masked = if field.contains("email") {
            let (local, domain) = text
                .split_once('@')
                .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
                .ok_or_else(|| format!("invalid email `{text}`"))?;
            format!("{}****@{domain}", local.chars().next().unwrap())
        } else {
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
        };
        *v = Value::String(masked);
    }
    Ok(serde_json::to_vec(&user).unwrap())
}

#[test]
fn mask_pii_on_host_json_matches_the_serde_json_plugin_it_replaced() {
    let values = values();
    let mut batch = InputBatch::default();
    let t = batch.topic_index("signups");
    for (i, v) in values.iter().enumerate() {
        batch.push(None, v.as_deref(), std::iter::empty(), None, t, 0, i as i64);
    }
    let runtime = Runtime::new(ComponentCache::default_dir()).unwrap();
    for spec in [
        "email,phone",
        " phone ,\u{3000}id, ,email",
        "name",
        "extra,email",
        "email,email,a/b",
    ] {
        let fields: Vec<String> = spec
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        let plugin = runtime
            .load(&PluginSpec {
                name: "mask_pii".into(),
                path: common::plugin("mask_pii"),
                config: vec![("fields".into(), spec.into())],
                limits: Limits::default(),
                scope: String::new(),
                tenant: String::new(),
            })
            .unwrap();
        let out = plugin.instantiate().unwrap().process(&mut batch).unwrap();
        let mut got: Vec<Option<Result<Vec<u8>, String>>> = vec![None; values.len()];
        for r in out.iter() {
            assert!(got[r.input as usize].is_none(), "one output per input");
            got[r.input as usize] = Some(Ok(r.value.unwrap().to_vec()));
        }
        for e in &out.errors {
            got[e.input as usize] = Some(Err(e.message.clone()));
        }
        for (i, v) in values.iter().enumerate() {
            let want = old_mask_pii(&fields, v.as_deref());
            assert_eq!(
                got[i]
                    .clone()
                    .map(|r| r.map(|b| String::from_utf8_lossy(&b).into_owned())),
                Some(want.map(|b| String::from_utf8_lossy(&b).into_owned())),
                "record {i} with fields = {spec:?}: {:?}",
                v.as_deref().map(String::from_utf8_lossy)
            );
        }
    }
}
