//! `GET /api/pipelines/NAME/state?key=K[&plugin=P]`: what a stateful plugin keeps under a key, in
//! the partition stores this process holds (tenant token rules as for the rest of the API).
//!
//! State is partitioned like the input, so a key lives in the store of the partition its records
//! came from: the answer lists each store of this process that has the key, by input partition.
//! Other processes of the group hold the other partitions; ask each (or all) of them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::api::{ApiError, ApiResult, find};

/// The query of a state lookup: the key as UTF-8 text (`key`) or hex (`key_hex`), and the
/// plugin, which may be left out when the pipeline has one plugin.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateQuery {
    key: Option<String>,
    key_hex: Option<String>,
    plugin: Option<String>,
}

pub(super) async fn lookup(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<StateQuery>,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?;
    let bad = |why: String| ApiError(StatusCode::BAD_REQUEST, why);
    let key = match (&query.key, &query.key_hex) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(hex)) => decode_hex(hex).ok_or_else(|| {
            bad(format!(
                "`key_hex` must be an even number of hex digits, got `{hex}`"
            ))
        })?,
        _ => {
            return Err(bad(
                "give the key as exactly one of `key=TEXT` or `key_hex=HEX`".into(),
            ));
        }
    };
    let plugins: Vec<String> = pipeline
        .live
        .as_ref()
        .map(|live| {
            live.current()
                .plugins
                .iter()
                .map(|p| p.name.to_string())
                .collect()
        })
        .unwrap_or_default();
    let plugin = match (query.plugin, plugins.as_slice()) {
        (Some(p), _) if plugins.contains(&p) => p,
        (Some(p), _) => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "pipeline `{name}` has no plugin `{p}` (its plugins: {})",
                    plugins.join(", ")
                ),
            ));
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(bad(format!(
                "pipeline `{name}` has several plugins; name one with `plugin=` ({})",
                plugins.join(", ")
            )));
        }
    };
    let found = pipeline.state_value(&plugin, &key).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the state of pipeline `{name}`: {e:#}"),
        )
    })?;
    let values: Vec<Value> = found
        .into_iter()
        .map(|(tp, value)| {
            json!({
                "topic": &*tp.0,
                "partition": tp.1,
                "value": std::str::from_utf8(&value).ok(),
                "value_hex": encode_hex(&value),
            })
        })
        .collect();
    Ok(Json(json!({
        "pipeline": name,
        "plugin": plugin,
        "key": String::from_utf8_lossy(&key),
        "values": values,
    })))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_odd_or_non_hex_input() {
        assert_eq!(decode_hex("00ff10").unwrap(), [0, 255, 16]);
        assert_eq!(encode_hex(&[0, 255, 16]), "00ff10");
        assert!(decode_hex("abc").is_none());
        assert!(decode_hex("zz").is_none());
        assert!(decode_hex("é1").is_none());
    }
}
