//! The e-commerce metrics of the seed scenario: one stateful plugin, run as two pipelines.
//!
//! Input: the JSON events `sluice dev` generates on `shop.events`, `{"type": "view" | "cart" |
//! "purchase", "user_id", "product_id", "price"}`, keyed by user, with the record's timestamp as
//! event time. State is per input partition (like Kafka Streams), so each figure is computed
//! where all the events it needs meet: per user on `shop.events` (keyed by user), per product on
//! a topic re-keyed by product — the same repartitioning step as a Kafka Streams `groupBy`.
//!
//! With `metrics = "users"` (on `shop.events`), outputs:
//! - `user_totals`: a user's running totals (views, cart adds, purchases, money spent), after
//!   every event of that user;
//! - `notifications`: an abandoned cart: a cart add of a product with no purchase of that product
//!   by that user within `abandon_after_minutes` (default 30) of event time;
//! - `by_product`: every valid event, unchanged but keyed by its product.
//!
//! With `metrics = "products"` (on the `by_product` topic), outputs:
//! - `product_metrics`: per product and event-time minute, the views, cart additions and
//!   purchases and the conversion rate (purchases / views, null without views), emitted once,
//!   when the watermark passes the end of the minute (a tumbling window in state, closed by an
//!   event-time timer).
//!
//! Rejected (to the dead-letter topic, with the reason): a value that is not such an event, an
//! unknown type, a negative price, a record without a timestamp. Records older than the
//! watermark never reach the plugin: the host dead-letters them as `late`.
//!
//! State keys: the window helper's (`window/minute`, 3 × u64: a window's counts), `u\0<user>`
//! (3 × u64 + cents: the user's totals), `c\0<user>\0<product>` (i64: the event time of the
//! last cart add of that product not yet bought).

use serde::Deserialize;
use sluice_plugin::state::{StateValue, StatefulTransform, delete, get, put};
use sluice_plugin::timers::{self, Domain, Timer};
use sluice_plugin::window::{Aggregate, Windows};
use sluice_plugin::{Config, Emitter, Record, export_stateful_transform};

const MINUTE_MS: i64 = 60_000;

struct ShopMetrics {
    role: Role,
    abandon_after_ms: i64,
    /// Per product: one-minute tumbling windows of the event counts.
    minutes: Windows<EventCounts>,
}

/// Which figures this instance computes (config `metrics`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Users,
    Products,
}

/// One event, as `sluice dev` generates them.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    user_id: String,
    product_id: String,
    price: f64,
}

impl StatefulTransform for ShopMetrics {
    fn init(config: &Config) -> Result<Self, String> {
        let mut abandon_after_ms = 30 * MINUTE_MS;
        let mut role = None;
        for (key, value) in config.iter() {
            match key {
                "metrics" => {
                    role = Some(match value {
                        "users" => Role::Users,
                        "products" => Role::Products,
                        _ => {
                            return Err(format!(
                                "config `metrics` must be `users` or `products`, got `{value}`"
                            ));
                        }
                    })
                }
                "abandon_after_minutes" => {
                    let minutes: f64 = value.parse().ok().filter(|m: &f64| *m > 0.0).ok_or_else(
                        || format!("config `abandon_after_minutes` must be a positive number of minutes, got `{value}`"),
                    )?;
                    abandon_after_ms = (minutes * MINUTE_MS as f64) as i64;
                }
                _ => {
                    return Err(format!(
                        "unknown config key `{key}` (expected `metrics`, `abandon_after_minutes`)"
                    ));
                }
            }
        }
        let role = role.ok_or("config `metrics` is required: `users` (on shop.events, keyed by user) or `products` (on the events re-keyed by product)")?;
        Ok(ShopMetrics {
            role,
            abandon_after_ms,
            minutes: Windows::tumbling("minute", MINUTE_MS, EventCounts),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let value = record.value.ok_or("record has no value")?;
        let event: Event = serde_json::from_slice(value).map_err(|e| {
            format!("value is not a shop event ({{type, user_id, product_id, price}}): {e}")
        })?;
        let at = record
            .timestamp
            .ok_or("record has no timestamp (event time)")?;
        let kind = match event.kind.as_str() {
            "view" => Kind::View,
            "cart" => Kind::Cart,
            "purchase" => Kind::Purchase,
            other => {
                return Err(format!(
                    "unknown event type `{other}` (expected view, cart or purchase)"
                ));
            }
        };
        if event.price < 0.0 {
            return Err(format!("negative price {}", event.price));
        }

        if self.role == Role::Products {
            self.minutes.add(event.product_id.as_bytes(), at, &kind);
            return Ok(());
        }
        out.record()
            .key(Some(event.product_id.as_bytes()))
            .value(Some(value))
            .headers(&record.headers)
            .to("by_product")
            .emit();

        // The user's running totals, after every event.
        let user = user_key(&event.user_id);
        let mut totals = get(&user).map(|v| words::<4>(&v)).unwrap_or([0; 4]);
        totals[kind as usize] += 1;
        if kind == Kind::Purchase {
            totals[3] += (event.price * 100.0).round() as u64;
        }
        put(&user, &bytes(&totals));
        let row = format!(
            r#"{{"user_id":{},"views":{},"cart_adds":{},"purchases":{},"spent":{}.{:02},"updated_at":{at}}}"#,
            json_string(&event.user_id),
            totals[0],
            totals[1],
            totals[2],
            totals[3] / 100,
            totals[3] % 100,
        );
        out.record()
            .key(Some(event.user_id.as_bytes()))
            .value(Some(row.as_bytes()))
            .to("user_totals")
            .emit();

        // Abandoned carts: the last cart add of a product waits for a purchase of it.
        let cart = cart_key(&event.user_id, &event.product_id);
        let pending = get(&cart).map(|v| words::<1>(&v)[0] as i64);
        match kind {
            Kind::Cart => {
                if let Some(carted) = pending {
                    timers::cancel(Domain::EventTime, &cart, carted + self.abandon_after_ms);
                }
                put(&cart, &bytes(&[at as u64]));
                timers::register(Domain::EventTime, &cart, at + self.abandon_after_ms);
            }
            Kind::Purchase => {
                if let Some(carted) = pending {
                    timers::cancel(Domain::EventTime, &cart, carted + self.abandon_after_ms);
                    delete(&cart);
                }
            }
            Kind::View => {}
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        if let Some(fired) = self.minutes.fire(timer) {
            let product = std::str::from_utf8(&fired.key).unwrap_or_default();
            let [views, cart_adds, purchases] = fired.value.0;
            let conversion = if views == 0 {
                "null".to_string()
            } else {
                (purchases as f64 / views as f64).to_string()
            };
            let minute = fired.window.start;
            let row = format!(
                r#"{{"product_id":{},"minute":{minute},"views":{views},"cart_adds":{cart_adds},"purchases":{purchases},"conversion_rate":{conversion}}}"#,
                json_string(product),
            );
            out.record()
                .key(Some(&fired.key))
                .value(Some(row.as_bytes()))
                .timestamp(minute)
                .to("product_metrics")
                .emit();
            return Ok(());
        }
        let Some(stored) = get(timer.key) else {
            return Ok(());
        };
        let mut parts = timer.key.splitn(3, |b| *b == 0);
        if parts.next() == Some(b"c") {
            let carted = words::<1>(&stored)[0] as i64;
            // A timer of an earlier cart add of the same product that was replaced.
            if carted + self.abandon_after_ms != timer.time {
                return Ok(());
            }
            let user = text(parts.next());
            let product = text(parts.next());
            let note = format!(
                r#"{{"type":"abandoned_cart","user_id":{},"product_id":{},"carted_at":{carted},"waited_ms":{}}}"#,
                json_string(user),
                json_string(product),
                self.abandon_after_ms,
            );
            out.record()
                .key(Some(user.as_bytes()))
                .value(Some(note.as_bytes()))
                .timestamp(timer.time)
                .to("notifications")
                .emit();
            delete(timer.key);
        }
        Ok(())
    }
}

/// The views, cart adds and purchases of a window.
struct EventCounts;

/// `[views, cart adds, purchases]`, kept in state as three little-endian u64.
struct Counts([u64; 3]);

impl StateValue for Counts {
    fn encode(&self) -> Vec<u8> {
        bytes(&self.0)
    }
    fn decode(value: &[u8]) -> Option<Self> {
        Some(Counts(words::<3>(value)))
    }
}

impl Aggregate for EventCounts {
    type Input = Kind;
    type Acc = Counts;
    fn zero(&self) -> Counts {
        Counts([0; 3])
    }
    fn add(&self, acc: &mut Counts, kind: &Kind) {
        acc.0[*kind as usize] += 1;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    View = 0,
    Cart = 1,
    Purchase = 2,
}

fn user_key(user: &str) -> Vec<u8> {
    [b"u\0", user.as_bytes()].concat()
}

fn cart_key(user: &str, product: &str) -> Vec<u8> {
    [b"c\0", user.as_bytes(), b"\0", product.as_bytes()].concat()
}

fn text(part: Option<&[u8]>) -> &str {
    std::str::from_utf8(part.unwrap_or_default()).unwrap_or_default()
}

/// `N` little-endian u64 words; missing words (a shorter value) read as 0.
fn words<const N: usize>(value: &[u8]) -> [u64; N] {
    let mut out = [0; N];
    for (word, chunk) in out.iter_mut().zip(value.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    out
}

fn bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

export_stateful_transform!(ShopMetrics);
