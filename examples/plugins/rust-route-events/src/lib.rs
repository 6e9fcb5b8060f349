//! Routes e-commerce activity to one output per event type and rejects malformed events.
//!
//! Input: a JSON object `{"type": "view"|"cart"|"purchase", "user_id", "product_id", "price", ...}`.
//! Each event is forwarded unchanged to the output named by the config key `route.<type>`
//! (defaults: `view` → `views`, `cart` → `carts`, `purchase` → `purchases`).
//!
//! Rejected: no value, not a JSON object, a missing string `type`, `user_id` or `product_id`, a type
//! with no route, a purchase without a non-negative numeric `price`.

use serde_json::{Map, Value};
use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct RouteEvents {
    routes: Vec<(String, String)>,
}

impl Transform for RouteEvents {
    fn init(config: &Config) -> Result<Self, String> {
        let mut routes: Vec<(String, String)> = [
            ("view", "views"),
            ("cart", "carts"),
            ("purchase", "purchases"),
        ]
        .iter()
        .map(|(t, o)| (t.to_string(), o.to_string()))
        .collect();
        for (key, output) in config.iter() {
            let Some(event_type) = key.strip_prefix("route.") else {
                return Err(format!(
                    "unknown config key `{key}` (expected `route.<event type>`)"
                ));
            };
            routes.retain(|(t, _)| t != event_type);
            if !output.is_empty() {
                routes.push((event_type.to_string(), output.to_string()));
            }
        }
        Ok(RouteEvents { routes })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let value = record.value.ok_or("record has no value")?;
        let event: Map<String, Value> = serde_json::from_slice(value)
            .map_err(|e| format!("value is not a JSON object: {e}"))?;
        let text = |field: &str| match event.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            _ => Err(format!("missing or empty string field `{field}`")),
        };
        let event_type = text("type")?;
        text("user_id")?;
        text("product_id")?;
        if event_type == "purchase" {
            match event.get("price").and_then(Value::as_f64) {
                Some(p) if p >= 0.0 => {}
                _ => return Err("a purchase needs a non-negative numeric `price`".into()),
            }
        }
        let output = self
            .routes
            .iter()
            .find(|(t, _)| t == event_type)
            .map(|(_, o)| o.as_str())
            .ok_or_else(|| format!("no route for event type `{event_type}`"))?;
        out.record()
            .key(record.key)
            .value(Some(value))
            .headers(&record.headers)
            .to(output)
            .emit();
        Ok(())
    }
}

export_transform!(RouteEvents);
