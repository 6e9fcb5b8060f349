//! The seed scenario end to end (issue 15): the shipped `shop-users` and `shop-products`
//! pipelines of examples/docker.toml, with examples/plugins/rust-shop-metrics, over the mock
//! cluster and a real Postgres loaded with examples/postgres/schema.sql. Events with chosen event
//! times go in; the test computes what every table row and notification must be and compares,
//! reads a user's totals from the store through the admin API, and runs the Grafana dashboard's
//! SQL panels against the tables.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::postgres::Postgres;
use common::{Kafka, RunningHost, free_port, write_config};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: i32 = 4;
const TOKEN: &str = "shop-metrics-operator-token";
const MINUTE: i64 = 60_000;

/// One event of the generator's shape, with its event time.
struct Event {
    at: i64,
    kind: &'static str,
    user: String,
    product: String,
    cents: u64,
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shipped shop pipelines of examples/docker.toml, pointed at this test's cluster, database
/// and admin port.
fn config(port: u16, database: &str) -> String {
    let shipped = std::fs::read_to_string(repo().join("examples/docker.toml")).unwrap();
    let (_, shop) = shipped
        .split_once("# Shop metrics, kept in state")
        .expect("examples/docker.toml has the shop metrics pipelines");
    let shop = shop
        .replace(
            "../build/plugins/shop_metrics.wasm",
            "{plugin:shop_metrics}",
        )
        .replace("${DATABASE_URL}", database);
    assert!(shop.contains("{plugin:shop_metrics}"), "{shop}");
    // This test produces three minutes of event time at once, so the re-keyed topic mixes
    // partitions of shop.events that are minutes apart (with a live generator they are
    // seconds apart, which the shipped 30 s covers): the per-product pipeline waits for them.
    let (users, products) = shop
        .split_once("name = \"shop-products\"")
        .expect("the shop-products pipeline");
    let products = products.replacen(
        "allowed_lateness_ms = 30000",
        "allowed_lateness_ms = 600000",
        1,
    );
    let shop = format!("{users}name = \"shop-products\"{products}");
    format!(
        r#"
[kafka]
bootstrap_servers = "{{bootstrap}}"
[admin]
listen = "127.0.0.1:{port}"
operator_token = "{TOKEN}"
[runtime]
state_dir = "STATE_DIR"

# Shop metrics, kept in state{shop}"#
    )
}

/// Deterministic events over three minutes of event time, then, on every partition, ticks 45
/// minutes later that move the watermark past every window and abandoned-cart deadline.
fn events(start: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for i in 0..600 {
        let kind = match next(10) {
            0..=5 => "view",
            6..=8 => "cart",
            _ => "purchase",
        };
        out.push(Event {
            at: start + i * 300,
            kind,
            user: format!("u-{:03}", next(25)),
            product: format!("p-{:02}", next(12)),
            cents: 100 + next(9900),
        });
    }
    for i in 0..48 {
        out.push(Event {
            at: start + 45 * MINUTE + i,
            kind: "view",
            user: format!("tick-{i:02}"),
            product: format!("tick-{i:02}"),
            cents: 100,
        });
    }
    out
}

fn produce(kafka: &Kafka, events: &[Event]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for e in events {
        let value = format!(
            r#"{{"type":"{}","user_id":"{}","product_id":"{}","price":{}.{:02}}}"#,
            e.kind,
            e.user,
            e.product,
            e.cents / 100,
            e.cents % 100
        );
        let mut record = BaseRecord::to("shop.events")
            .key(&e.user)
            .payload(&value)
            .timestamp(e.at);
        // Ticks go to every partition, so that every partition's watermark moves on.
        let tick_partition;
        if let Some(n) = e.user.strip_prefix("tick-") {
            tick_partition = n.parse::<i32>().unwrap() % PARTITIONS;
            record = record.partition(tick_partition);
        }
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// What the tables and the notifications topic must hold, computed from the events.
struct Expected {
    /// (product, minute) → [views, cart adds, purchases].
    minutes: BTreeMap<(String, i64), [i64; 3]>,
    /// user → [views, cart adds, purchases, cents spent].
    users: BTreeMap<String, [i64; 4]>,
    /// (user, product) → event time of the cart add never bought.
    abandoned: BTreeMap<(String, String), i64>,
}

fn expected(events: &[Event]) -> Expected {
    let mut minutes = BTreeMap::new();
    let mut users = BTreeMap::new();
    let mut pending = BTreeMap::new();
    for e in events.iter().filter(|e| !e.user.starts_with("tick-")) {
        let kind = ["view", "cart", "purchase"]
            .iter()
            .position(|k| *k == e.kind)
            .unwrap();
        let minute = e.at.div_euclid(MINUTE) * MINUTE;
        let m: &mut [i64; 3] = minutes.entry((e.product.clone(), minute)).or_insert([0; 3]);
        m[kind] += 1;
        let u: &mut [i64; 4] = users.entry(e.user.clone()).or_insert([0; 4]);
        u[kind] += 1;
        let cart = (e.user.clone(), e.product.clone());
        match e.kind {
            "cart" => {
                pending.insert(cart, e.at);
            }
            "purchase" => {
                u[3] += e.cents as i64;
                pending.remove(&cart);
            }
            _ => {}
        }
    }
    Expected {
        minutes,
        users,
        abandoned: pending,
    }
}

/// One GET with the operator's token; returns the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    common::http(port, "GET", path, Some(TOKEN), b"")
}

#[test]
fn shop_metrics_reach_postgres_notifications_and_the_dashboard_exactly() {
    let kafka = Kafka::new(1);
    for topic in ["shop.events", "shop.events.by-product"] {
        kafka.topic(topic, PARTITIONS);
    }
    for topic in ["shop.notifications", "shop.metrics.dlq"] {
        kafka.topic(topic, 1);
    }
    let pg = Postgres::new();
    pg.execute(&std::fs::read_to_string(repo().join("examples/postgres/schema.sql")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text =
        config(port, &pg.url).replace("STATE_DIR", &dir.path().join("state").display().to_string());
    let path = write_config(dir.path(), &text, &kafka.bootstrap());
    let host = RunningHost::start(&path);

    // Whole minutes in the past, so that event time and the wall clock never meet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now - 120 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let events = events(start);
    let want = expected(&events);
    let (real, ticks) = events.split_at(600);
    produce(&kafka, real);
    // The ticks go in once every real event is on the re-keyed topic: its partitions mix the
    // partitions of shop.events, and a tick 45 minutes ahead arriving there before older events
    // would make them late (in production the skew between partitions is what
    // `allowed_lateness_ms` covers).
    kafka.read_count(&["shop.events.by-product"], 600, Duration::from_secs(60));
    produce(&kafka, ticks);

    // Every closed minute of every product, and every user's totals, in Postgres.
    let progress = || {
        let count = |sql: &str| pg.number(sql);
        (
            count("SELECT count(*) FROM product_minute_metrics WHERE product_id NOT LIKE 'tick%'"),
            count("SELECT count(*) FROM user_totals WHERE user_id NOT LIKE 'tick%'"),
            count(
                "SELECT coalesce(sum(views + cart_adds + purchases), 0)::bigint FROM user_totals \
                 WHERE user_id NOT LIKE 'tick%'",
            ),
        )
    };
    let done = (want.minutes.len() as i64, want.users.len() as i64, 600);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while progress() != done {
        if std::time::Instant::now() > deadline {
            let dead = kafka.read_until(&["shop.metrics.dlq"], Duration::from_secs(2), |_| false);
            panic!(
                "the shop metrics did not reach Postgres: (product minutes, users, events) = {:?}, \
                 expected {done:?}; dead letters: {dead:?}",
                progress()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = pg.query(
        "SELECT product_id, (extract(epoch FROM minute) * 1000)::bigint, views, cart_adds, \
         purchases, conversion_rate FROM product_minute_metrics WHERE product_id NOT LIKE 'tick%'",
    );
    let mut got = BTreeMap::new();
    for r in &rows {
        let counts: [i64; 3] = [r.get(2), r.get(3), r.get(4)];
        let conversion: Option<f64> = r.get(5);
        let expected_conversion = (counts[0] > 0).then(|| counts[2] as f64 / counts[0] as f64);
        // serde_json (without `float_roundtrip`) may read the last digit differently.
        match (conversion, expected_conversion) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "conversion rate of {r:?}"),
            (a, b) => assert_eq!(a, b, "conversion rate of {r:?}"),
        }
        got.insert((r.get::<_, String>(0), r.get::<_, i64>(1)), counts);
    }
    assert_eq!(got, want.minutes, "per product and minute");

    let rows = pg.query(
        "SELECT user_id, views, cart_adds, purchases, (spent * 100)::bigint FROM user_totals \
         WHERE user_id NOT LIKE 'tick%'",
    );
    let got: BTreeMap<String, [i64; 4]> = rows
        .iter()
        .map(|r| (r.get(0), [r.get(1), r.get(2), r.get(3), r.get(4)]))
        .collect();
    assert_eq!(got, want.users, "per user totals");

    // An abandoned-cart notice per cart add never bought, and no other.
    let notes = kafka.read_count(
        &["shop.notifications"],
        want.abandoned.len(),
        Duration::from_secs(60),
    );
    let got: BTreeMap<(String, String), i64> = notes
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(v["type"], "abandoned_cart");
            assert_eq!(v["waited_ms"], 30 * MINUTE);
            assert_eq!(r.key.as_deref(), v["user_id"].as_str());
            (
                (
                    v["user_id"].as_str().unwrap().to_string(),
                    v["product_id"].as_str().unwrap().to_string(),
                ),
                v["carted_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(notes.len(), got.len(), "one notice per cart: {notes:?}");
    assert_eq!(got, want.abandoned, "abandoned carts");
    assert!(!want.abandoned.is_empty());

    let dead = kafka.read_until(&["shop.metrics.dlq"], Duration::from_secs(1), |_| false);
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");

    // A user's totals, read from the state store through the admin API.
    let (user, totals) = want.users.iter().next().unwrap();
    let key: String = [b"u\0".as_slice(), user.as_bytes()]
        .concat()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, body) = get(
        port,
        &format!("/api/pipelines/shop-users/state?key_hex={key}"),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values = answer["values"].as_array().unwrap();
    assert_eq!(
        values.len(),
        1,
        "the user's state lives in one partition: {body}"
    );
    let hex = values[0]["value_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let stored: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64)
        .collect();
    assert_eq!(stored, totals.to_vec(), "{user}'s totals in the store");
    let (status, body) = get(port, "/api/pipelines/shop-users/state?key=x&key_hex=78");
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(port, "/api/pipelines/shop-users/state?key=x&plugin=nope");
    assert_eq!(status, 404, "{body}");

    // The dashboard's SQL panels answer from these tables.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("examples/observability/grafana/dashboards/sluice.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let Some(sql) = target["rawSql"].as_str() else {
                continue;
            };
            panels += 1;
            // Grafana's macro for the dashboard's time range, here the whole day.
            let sql = sql.replace(
                "$__timeFilter(minute)",
                "minute BETWEEN now() - interval '1 day' AND now()",
            );
            let rows = pg.query(&sql);
            assert!(!rows.is_empty(), "panel `{}` shows nothing", panel["title"]);
        }
    }
    assert_eq!(panels, 2, "the dashboard's Postgres panels");
    let per_minute = pg.query(
        &dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["title"]
                    .as_str()
                    .unwrap()
                    .contains("views, cart adds and purchases")
            })
            .unwrap()["targets"][0]["rawSql"]
            .as_str()
            .unwrap()
            .replace(
                "$__timeFilter(minute)",
                "minute BETWEEN now() - interval '1 day' AND now() AND product_id NOT LIKE 'tick%'",
            ),
    );
    let views: i64 = per_minute.iter().map(|r| r.get::<_, i64>(1)).sum();
    let want_views: i64 = want.minutes.values().map(|c| c[0]).sum();
    assert_eq!(views, want_views, "views per minute on the dashboard");

    host.stop().unwrap();
}
