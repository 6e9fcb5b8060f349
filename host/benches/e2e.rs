//! End to end against what users would write instead (`make bench-e2e`, or
//! `cargo bench -p sluice --bench e2e`): one librdkafka mock cluster in this process, one input
//! topic of 500,000 JSON user records (~300 B, the shape examples/plugins/rust-mask-pii expects)
//! on 16 partitions, and each contender as its own process reading it with its own consumer group
//! into its own output topic:
//!
//! - `sluice run` with the Rust passthrough plugin;
//! - a plain rdkafka consume → produce loop in Rust (this binary again, in loop mode), at-least-once:
//!   it commits offsets after flushing each batch's records;
//! - a Python confluent-kafka loop doing mask-pii's masking (bench/e2e_loop.py), also
//!   at-least-once; confluent-kafka comes from PyPI into a venv under ~/.cache/sluice/bench-venv
//!   when missing (its wheel bundles librdkafka);
//! - `sluice run` with mask-pii in Rust, Python and JavaScript (whatever is in examples/plugins;
//!   built like host/tests/languages.rs builds them);
//! - the seed scenario's stateful metrics pipeline (`shop-users` of examples/dev.toml:
//!   examples/plugins/rust-shop-metrics with `metrics = "users"`: per-user running totals in keyed
//!   state, an abandoned-cart timer per cart add, every event re-keyed by product), beside a
//!   passthrough pipeline over the same input: a second topic of 500,000 shop events (~90 B, the
//!   shape `sluice dev` generates, all valid, keyed by user, event time rising 1 ms a record).
//!   Both at-least-once like the rest; every output of the metrics pipeline is checked: each
//!   event re-keyed unchanged, each user's totals after each event, and exactly the
//!   abandoned-cart notices the events call for;
//! - the metrics pipeline's Kafka writes without its state: plugins/testing/fanout forwarding
//!   every shop event 4.4 times (`shop-fanout`: its outputs and changelog, 4.4 records per event)
//!   or 2.3 times (`shop-outputs`: its outputs alone), to as many partitions as the metrics
//!   pipeline writes; every event must arrive, unchanged, that many times on average. Against
//!   passthrough, they are the ceilings of any stateful pipeline writing that much.
//!
//! Throughput is read from each group's committed offsets between 10% and 90% of the input, so
//! process start, plugin compilation and the group join do not count; CPU is the child's
//! utime + stime from /proc over the same window (the mock cluster's CPU, in this process, is
//! counted for nobody). Every contender must deliver all 500,000 records, each exactly the value
//! expected (the input, or the input masked), or the bench fails.
//!
//! librdkafka's mock cluster keeps at most 5 MB of message sets per partition and drops the
//! oldest beyond that: the input is produced lz4-compressed (about 3× smaller, 16 × 31,250
//! records), and the output topics have 48 partitions so that uncompressed outputs fit too. The
//! bench checks that no partition was trimmed.
//!
//! `SLUICE_E2E_ONLY=passthrough,rust-loop` runs only the named contenders (`shop-passthrough`,
//! `shop-metrics`, `shop-fanout`, `shop-outputs` over the shop events). `SLUICE_E2E_ROUNDS=5`
//! runs them all five times, in turn, and gives each ratio as the median of the rounds' ratios
//! with its range: on a shared 2-core machine one run can be 30% off. `SLUICE_E2E_KAFKA` adds TOML lines to the Sluice
//! contenders' `[kafka]` table (`producer = { "linger.ms" = "50" }`) to try client settings.

#![allow(dead_code)]
// tests/languages.rs declares `mod common;` privately; this bench needs it too.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/languages.rs"]
mod languages;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{HostProcess, Kafka};
use languages::Lang;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOTAL: usize = 500_000;
const PARTITIONS: i32 = 16;
const OUT_PARTITIONS: i32 = 48;
const INPUT: &str = "users";
/// The loops' batch: as many records as Sluice's default `batch.max_records`.
const LOOP_BATCH: usize = 1000;

// ---------------------------------------------------------------------------------------------
// The records.

const PEOPLE: [(&str, &str, &str); 12] = [
    ("Zoë", "García", "zoe.garcia"),
    ("Liam", "O'Brien", "liam.obrien"),
    ("Aiko", "Tanaka", "aiko.tanaka"),
    ("Mateo", "Rossi", "mateo.rossi"),
    ("Olga", "Ivanova", "olga.ivanova"),
    ("Kwame", "Mensah", "kwame.mensah"),
    ("Sofía", "Hernández", "sofia.hernandez"),
    ("Noah", "Schmidt", "noah.schmidt"),
    ("Ingrid", "Larsen", "ingrid.larsen"),
    ("Ravi", "Patel", "ravi.patel"),
    ("Chloé", "Dubois", "chloe.dubois"),
    ("Yusuf", "Demir", "yusuf.demir"),
];

const PLACES: [(&str, &str, &str, &str, &str); 8] = [
    (
        "Calle Mayor",
        "Valencia",
        "Comunidad Valenciana",
        "Spain",
        "+34",
    ),
    (
        "Rue de la Paix",
        "Lyon",
        "Auvergne-Rhône-Alpes",
        "France",
        "+33",
    ),
    ("Hauptstraße", "Leipzig", "Sachsen", "Germany", "+49"),
    ("Via Roma", "Torino", "Piemonte", "Italy", "+39"),
    (
        "Main Street",
        "Springfield",
        "Illinois",
        "United States",
        "+1",
    ),
    ("Karl Johans gate", "Bergen", "Vestland", "Norway", "+47"),
    ("Nevsky Prospekt", "Kazan", "Tatarstan", "Russia", "+7"),
    ("High Street", "Bristol", "England", "United Kingdom", "+44"),
];

const DOMAINS: [&str; 4] = [
    "example.com",
    "mail.example.org",
    "example.net",
    "corp.example",
];

/// User record `i` as compact JSON: the input, or (`masked`) what mask-pii makes of it with its
/// default fields (`email`, `phone`).
fn user(i: usize, masked: bool) -> String {
    let (first, last, handle) = PEOPLE[i % PEOPLE.len()];
    let (street, city, state, country, dial) = PLACES[(i / 7) % PLACES.len()];
    let domain = DOMAINS[(i / 3) % DOMAINS.len()];
    let email = format!("{handle}{}@{domain}", i % 10_000);
    let phone = format!(
        "{dial} {:03} {:03} {:03}",
        (i * 7) % 1000,
        (i * 13) % 1000,
        i % 1000
    );
    let (email, phone) = if masked {
        (format!("{}****@{domain}", &handle[..1]), mask_tail(&phone))
    } else {
        (email, phone)
    };
    format!(
        concat!(
            r#"{{"id":"u-{:07}","name":{{"title":"{}","first":"{}","last":"{}"}},"#,
            r#""email":"{}","phone":"{}","location":{{"street":"{} {}","city":"{}","#,
            r#""state":"{}","country":"{}","postcode":"{:05}"}},"#,
            r#""registered":{{"date":"20{:02}-{:02}-{:02}T{:02}:{:02}:00Z","age":{}}}}}"#
        ),
        i,
        ["Ms", "Mr", "Mx", "Dr"][i % 4],
        first,
        last.replace('\'', "’"),
        email,
        phone,
        1 + i % 997,
        street,
        city,
        state,
        country,
        (i * 37) % 100_000,
        10 + i % 15,
        1 + i % 12,
        1 + i % 28,
        i % 24,
        i % 60,
        i % 15,
    )
}

/// mask-pii's masking of a non-email field: every letter and digit but the last two becomes `*`.
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

fn key(i: usize) -> String {
    format!("u-{i:07}")
}

// ---------------------------------------------------------------------------------------------
// The shop events (the seed scenario's input).

const SHOP_INPUT: &str = "shop-events";
/// Distinct users: a user's events are `SHOP_USERS` ms of event time apart (50 s), more than a
/// batch spans on one partition (1000 records × 16 partitions × 1 ms = 16 s) plus the allowed
/// lateness, and the one after that comes after the abandoned-cart deadline (60 s): so which
/// cart adds are abandoned does not depend on where batches end.
const SHOP_USERS: usize = 50_000;
/// Event time of event 0; event `i` is at `SHOP_T0 + i` ms.
const SHOP_T0: i64 = 1_700_000_000_000;
const ABANDON_MS: i64 = 60_000;
const SHOP_LATENESS_MS: i64 = 2_000;
/// Kafka records the metrics pipeline writes per event (outputs and changelog, measured: 1
/// by_product, 1 user_totals, 0.26 notices, 2.13 changelog): the `shop-fanout` contender
/// forwards each event this many times.
const FANOUT_ALL: f64 = 4.4;
/// The metrics pipeline's outputs alone, without its changelog: the `shop-outputs` contender.
const FANOUT_OUTPUTS: f64 = 2.3;

#[derive(Clone, Copy, PartialEq)]
enum ShopKind {
    View,
    Cart,
    Purchase,
}

/// Event `i`: (user, kind, product, price in cents). A user views any product, carts products
/// p-0000..p-0249, and buys either what they carted in their previous event or a product they
/// never cart (p-0250..): 60% views, 30% cart adds, 10% purchases.
fn shop_event(i: usize) -> (usize, ShopKind, usize, u64) {
    let user = i % SHOP_USERS;
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let kind = match h % 10 {
        0..=5 => ShopKind::View,
        6..=8 => ShopKind::Cart,
        _ => ShopKind::Purchase,
    };
    let product = match kind {
        ShopKind::View => (h / 10 % 500) as usize,
        ShopKind::Cart => (h / 10 % 250) as usize,
        ShopKind::Purchase => match i.checked_sub(SHOP_USERS).map(shop_event) {
            Some((_, ShopKind::Cart, carted, _)) if (h / 10).is_multiple_of(2) => carted,
            _ => 250 + (h / 10 % 250) as usize,
        },
    };
    (user, kind, product, 100 + h / 1000 % 19_900)
}

fn shop_value(i: usize) -> String {
    let (user, kind, product, cents) = shop_event(i);
    let kind = match kind {
        ShopKind::View => "view",
        ShopKind::Cart => "cart",
        ShopKind::Purchase => "purchase",
    };
    format!(
        r#"{{"type":"{kind}","user_id":"u-{user:06}","product_id":"p-{product:04}","price":{}.{:02}}}"#,
        cents / 100,
        cents % 100
    )
}

fn shop_partition(user: usize) -> i32 {
    (user % PARTITIONS as usize) as i32
}

/// What the metrics pipeline must emit for the shop input: per event, the user's totals row
/// (`user_totals`, in event order), and the set of abandoned-cart notices.
struct ShopExpected {
    totals: Vec<String>,
    notices: std::collections::HashSet<String>,
}

fn shop_expected() -> ShopExpected {
    let mut per_user = vec![[0u64; 4]; SHOP_USERS];
    let mut totals = Vec::with_capacity(TOTAL);
    let mut max_ts = [i64::MIN; PARTITIONS as usize];
    for i in 0..TOTAL {
        let (user, kind, _, cents) = shop_event(i);
        let t = &mut per_user[user];
        t[kind as usize] += 1;
        if kind == ShopKind::Purchase {
            t[3] += cents;
        }
        totals.push(format!(
            r#"{{"user_id":"u-{user:06}","views":{},"cart_adds":{},"purchases":{},"spent":{}.{:02},"updated_at":{}}}"#,
            t[0],
            t[1],
            t[2],
            t[3] / 100,
            t[3] % 100,
            SHOP_T0 + i as i64
        ));
        let p = shop_partition(user) as usize;
        max_ts[p] = max_ts[p].max(SHOP_T0 + i as i64);
    }
    // A cart add is abandoned unless the user's next event (50 s later, within the 60 s) carts
    // or buys the same product; its notice comes once the partition's watermark reaches the
    // deadline.
    let mut notices = std::collections::HashSet::new();
    for i in 0..TOTAL {
        let (user, kind, product, _) = shop_event(i);
        if kind != ShopKind::Cart {
            continue;
        }
        let carted = SHOP_T0 + i as i64;
        let next = (i + SHOP_USERS < TOTAL).then(|| shop_event(i + SHOP_USERS));
        if matches!(next, Some((_, ShopKind::Cart | ShopKind::Purchase, p, _)) if p == product) {
            continue;
        }
        if carted + ABANDON_MS > max_ts[shop_partition(user) as usize] - SHOP_LATENESS_MS {
            continue;
        }
        notices.insert(format!(
                r#"{{"type":"abandoned_cart","user_id":"u-{user:06}","product_id":"p-{product:04}","carted_at":{carted},"waited_ms":{ABANDON_MS}}}"#
        ));
    }
    ShopExpected { totals, notices }
}

/// Loads the shop input: `TOTAL` events, each on its user's partition, in event-time order.
fn load_shop_input(kafka: &Kafka) {
    kafka.topic(SHOP_INPUT, PARTITIONS);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("compression.type", "lz4")
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "4000000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("loader producer");
    for i in 0..TOTAL {
        let (user, ..) = shop_event(i);
        let (k, v) = (format!("u-{user:06}"), shop_value(i));
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "source",
            value: Some("web"),
        });
        let mut record = BaseRecord::to(SHOP_INPUT)
            .key(k.as_bytes())
            .payload(v.as_bytes())
            .headers(headers)
            .timestamp(SHOP_T0 + i as i64)
            .partition(shop_partition(user));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("loading the shop input: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("flush the shop input");
    let stored: i64 = watermarks(kafka, SHOP_INPUT, PARTITIONS)
        .iter()
        .map(|(low, high)| {
            assert_eq!(*low, 0, "the mock cluster trimmed the shop input");
            high
        })
        .sum();
    assert_eq!(stored, TOTAL as i64, "shop input: records lost");
    eprintln!(
        "loaded {TOTAL} shop events (~{} B each)",
        shop_value(TOTAL / 2).len()
    );
}

/// Loads the input: `TOTAL` records, round robin over the partitions, lz4-compressed in large
/// batches so that 31,250 records fit under the mock cluster's 5 MB per partition.
fn load_input(kafka: &Kafka) {
    kafka.topic(INPUT, PARTITIONS);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("compression.type", "lz4")
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "4000000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("loader producer");
    let started = Instant::now();
    for i in 0..TOTAL {
        let (k, v) = (key(i), user(i, false));
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "source",
            value: Some("signup-form"),
        });
        let mut record = BaseRecord::to(INPUT)
            .key(k.as_bytes())
            .payload(v.as_bytes())
            .headers(headers)
            .partition((i % PARTITIONS as usize) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("loading the input: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("flush the input");
    let per = TOTAL / PARTITIONS as usize;
    for (p, (low, high)) in watermarks(kafka, INPUT, PARTITIONS).into_iter().enumerate() {
        assert!(
            low == 0 && high == per as i64,
            "input partition {p} holds offsets {low}..{high}, not 0..{per}: the mock cluster \
             trimmed it (5 MB per partition) or records were lost"
        );
    }
    let bytes: usize = (0..TOTAL).step_by(1000).map(|i| user(i, false).len()).sum();
    eprintln!(
        "loaded {TOTAL} records (~{} B each) on {PARTITIONS} partitions in {:.1} s",
        bytes / (TOTAL / 1000),
        started.elapsed().as_secs_f64()
    );
}

fn watermarks(kafka: &Kafka, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("watermark consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}[{p}]: {e}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The contenders.

#[derive(Clone)]
enum Kind {
    /// `sluice run` with this plugin; `memory_mb` overrides the pipeline's memory cap.
    Sluice {
        plugin: PathBuf,
        memory_mb: Option<u32>,
    },
    /// `sluice run` with the fanout test plugin forwarding every record `copies` times on
    /// average: as many Kafka records per event as the metrics pipeline writes, with no state.
    Fanout {
        plugin: PathBuf,
        copies: f64,
    },
    RustLoop,
    PythonLoop,
    /// `sluice run` with the seed scenario's `shop-users` pipeline (rust-shop-metrics).
    ShopMetrics {
        plugin: PathBuf,
    },
}

#[derive(Clone)]
struct Contender {
    label: &'static str,
    name: &'static str,
    kind: Kind,
    masked: bool,
    /// Reads the shop events instead of the users.
    shop: bool,
    /// Which round of `SLUICE_E2E_ROUNDS` (each round has its own groups and topics).
    round: usize,
}

impl Contender {
    /// The name of this round's groups, topics and process.
    fn id(&self) -> String {
        match self.round {
            0 => self.name.to_string(),
            r => format!("{}-r{r}", self.name),
        }
    }
    fn group(&self) -> String {
        match self.kind {
            Kind::Sluice { .. } | Kind::Fanout { .. } | Kind::ShopMetrics { .. } => {
                format!("sluice-{}", self.id())
            }
            _ => format!("loop-{}", self.id()),
        }
    }
    fn output(&self) -> String {
        format!("out-{}", self.id())
    }
    fn input(&self) -> &'static str {
        if self.shop { SHOP_INPUT } else { INPUT }
    }
    /// Partitions of each output topic: the fanout contender writes to as many partitions as
    /// the metrics pipeline (three outputs and the changelog), which also keeps its 2.2 million
    /// records under the mock's 5 MB per partition.
    fn out_partitions(&self) -> i32 {
        match self.kind {
            Kind::Fanout { .. } => 3 * OUT_PARTITIONS + PARTITIONS,
            _ => OUT_PARTITIONS,
        }
    }
    /// The output topics: the metrics pipeline has three.
    fn outputs(&self) -> Vec<String> {
        match self.kind {
            Kind::ShopMetrics { .. } => ["totals", "by-product", "notices"]
                .iter()
                .map(|o| format!("{}-{o}", self.output()))
                .collect(),
            _ => vec![self.output()],
        }
    }
}

/// A running contender: `sluice run` (stopped with SIGTERM) or a loop (killed: everything it
/// consumed is committed by then, and a loop has no shutdown to wait for).
enum Running {
    Sluice(HostProcess),
    Loop(Child),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Sluice(h) => h.pid(),
            Running::Loop(c) => c.id(),
        }
    }
    fn exited(&mut self) -> Option<String> {
        match self {
            Running::Sluice(h) => h.exited().map(|s| s.to_string()),
            Running::Loop(c) => c.try_wait().unwrap().map(|s| s.to_string()),
        }
    }
    fn stop(self) {
        match self {
            Running::Sluice(h) => {
                h.terminate();
            }
            Running::Loop(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

const SLUICE_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[pipeline]]
name = "NAME"
inputs = ["INPUT"]
dead_letter_topic = "dlq-NAME"
plugins = [{ path = "PLUGIN"PLUGIN_CONFIG }]
commit_interval_ms = 100
LIMITS
[pipeline.outputs.main]
kafka_topic = "OUTPUT"
"#;

/// examples/dev.toml's `shop-users` pipeline, with the bench's batch and commit settings.
const SHOP_CONFIG: &str = r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[[pipeline]]
name = "NAME"
inputs = ["INPUT"]
dead_letter_topic = "dlq-NAME"
plugins = [{ path = "PLUGIN", config = { metrics = "users", abandon_after_minutes = "1" } }]
commit_interval_ms = 100
state = { allowed_lateness_ms = LATENESS, changelog_topic = "NAME-state" }
[pipeline.outputs.user_totals]
kafka_topic = "OUTPUT-totals"
[pipeline.outputs.by_product]
kafka_topic = "OUTPUT-by-product"
[pipeline.outputs.notifications]
kafka_topic = "OUTPUT-notices"
"#;

/// `SLUICE_E2E_KAFKA`: TOML lines added to every Sluice contender's `[kafka]` table, to try
/// client settings (`producer = { "linger.ms" = "20" }`) without editing the bench.
fn with_kafka_extra(config: &str) -> String {
    match std::env::var("SLUICE_E2E_KAFKA") {
        Ok(extra) if !extra.trim().is_empty() => config.replacen(
            "bootstrap_servers = \"{bootstrap}\"\n",
            &format!("bootstrap_servers = \"{{bootstrap}}\"\n{extra}\n"),
            1,
        ),
        _ => config.to_string(),
    }
}

fn start(c: &Contender, kafka: &Kafka, dir: &Path) -> Running {
    match &c.kind {
        Kind::ShopMetrics { plugin } => {
            // The host creates the changelog (compacted, with the input's partitions).
            let text = SHOP_CONFIG
                .replace("NAME", &c.id())
                .replace("INPUT", c.input())
                .replace("OUTPUT", &c.output())
                .replace("PLUGIN", &plugin.display().to_string())
                .replace("LATENESS", &SHOP_LATENESS_MS.to_string());
            let config = common::write_config(dir, &with_kafka_extra(&text), &kafka.bootstrap());
            Running::Sluice(HostProcess::start(&config, &c.id()))
        }
        Kind::Sluice { .. } | Kind::Fanout { .. } => {
            let (plugin, memory_mb, plugin_config) = match &c.kind {
                Kind::Sluice { plugin, memory_mb } => (plugin, *memory_mb, String::new()),
                Kind::Fanout { plugin, copies } => (
                    plugin,
                    None,
                    format!(", config = {{ copies = \"{copies}\" }}"),
                ),
                _ => unreachable!(),
            };
            let text = SLUICE_CONFIG
                .replace("PLUGIN_CONFIG", &plugin_config)
                .replace("NAME", &c.id())
                .replace("INPUT", c.input())
                .replace("OUTPUT", &c.output())
                .replace("PLUGIN", &plugin.display().to_string())
                .replace(
                    "LIMITS",
                    &memory_mb
                        .map(|m| format!("limits = {{ memory_mb = {m} }}"))
                        .unwrap_or_default(),
                );
            let config = common::write_config(dir, &with_kafka_extra(&text), &kafka.bootstrap());
            Running::Sluice(HostProcess::start(&config, &c.id()))
        }
        Kind::RustLoop => {
            let child = Command::new(std::env::current_exe().unwrap())
                .env(
                    "SLUICE_E2E_RUST_LOOP",
                    [kafka.bootstrap(), INPUT.into(), c.output(), c.group()].join("|"),
                )
                .stdout(Stdio::null())
                .spawn()
                .expect("starting the Rust loop");
            Running::Loop(child)
        }
        Kind::PythonLoop => {
            let script = languages::repo().join("bench/e2e_loop.py");
            let child = Command::new(python())
                .arg(script)
                .args([kafka.bootstrap(), INPUT.into(), c.output(), c.group()])
                .stdout(Stdio::null())
                .spawn()
                .expect("starting the Python loop");
            Running::Loop(child)
        }
    }
}

/// The venv's Python with confluent-kafka, made on first use.
fn python() -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let venv = home.join(".cache/sluice/bench-venv");
    let python = venv.join("bin/python");
    let has_it = |python: &Path| {
        Command::new(python)
            .args(["-c", "import confluent_kafka"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_it(&python) {
        eprintln!("installing confluent-kafka into {}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "confluent-kafka==2.16.1"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && has_it(&python),
            "could not install confluent-kafka into {} (python3 with venv and pip, and PyPI, \
             are needed)",
            venv.display()
        );
    }
    python
}

/// CPU seconds (user + system) used so far by process `pid`, all its threads.
fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) in a `/proc/.../stat` file.
fn cpu_seconds_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Fields after the command name in parentheses, starting with field 3 (state).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// CPU seconds used so far by this process's mock-cluster threads (librdkafka names them
/// `rdk:mock`): whether the mock, not the contender, is what limits a run.
fn mock_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("rdk:mock") {
            let tid: u32 = task.file_name().to_string_lossy().parse().unwrap();
            total += cpu_seconds_of(&format!("/proc/self/task/{tid}/stat"));
        }
    }
    total
}

struct Figures {
    records_per_s: f64,
    /// The mock cluster's share of one core over the measured window.
    mock_busy: f64,
    cpu_per_million: f64,
    cpu_total: f64,
    wall_total: f64,
}

fn run(c: &Contender, kafka: &Kafka, shop: Option<&ShopExpected>) -> Figures {
    for out in c.outputs() {
        kafka.topic(&out, c.out_partitions());
    }
    kafka.topic(&format!("dlq-{}", c.id()), 1);
    let dir = tempfile::tempdir().unwrap();
    let group = c.group();
    let offsets: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", &group)
        .create()
        .expect("committed-offsets consumer");
    let committed = || -> usize {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(c.input(), p);
        }
        let tpl = offsets
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        tpl.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o.max(0) as usize,
                _ => 0,
            })
            .sum()
    };
    let started = Instant::now();
    let mut child = start(c, kafka, dir.path());
    let pid = child.pid();
    let mut marks: Vec<(Instant, usize, f64, f64)> = Vec::new();
    let shares = [0.1, 0.9, 1.0];
    loop {
        let n = committed();
        let now = Instant::now();
        while marks.len() < shares.len() && n as f64 >= shares[marks.len()] * TOTAL as f64 {
            marks.push((now, n, cpu_seconds(pid), mock_cpu_seconds()));
        }
        if marks.len() == shares.len() {
            break;
        }
        if let Some(status) = child.exited() {
            panic!(
                "{}: exited ({status}) with {n} of {TOTAL} committed",
                c.label
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{}: only {n} of {TOTAL} records committed within 30 minutes",
            c.label
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall_total = started.elapsed().as_secs_f64();
    let cpu_total = marks[2].2;
    child.stop();
    match shop {
        Some(expected) if c.shop => verify_shop(c, kafka, expected),
        _ => verify(c, kafka),
    }
    let (t0, n0, cpu0, mock0) = marks[0];
    let (t1, n1, cpu1, mock1) = marks[1];
    let records = (n1 - n0) as f64;
    Figures {
        records_per_s: records / (t1 - t0).as_secs_f64(),
        mock_busy: (mock1 - mock0) / (t1 - t0).as_secs_f64(),
        cpu_per_million: (cpu1 - cpu0) / records * 1e6,
        cpu_total,
        wall_total,
    }
}

/// Reads the contender's whole output topic: every input record exactly once or more (a replay
/// is allowed by at-least-once, and reported), each with the expected value; no record trimmed
/// by the mock cluster, none dead-lettered.
fn verify(c: &Contender, kafka: &Kafka) {
    let topic = c.output();
    let marks = watermarks(kafka, &topic, c.out_partitions());
    let stored: i64 = marks.iter().map(|(l, h)| h - l).sum();
    for (p, (low, _)) in marks.iter().enumerate() {
        assert_eq!(
            *low, 0,
            "{}: output partition {p} starts at offset {low}: the mock cluster dropped records \
             (5 MB per partition)",
            c.label
        );
    }
    let dlq = watermarks(kafka, &format!("dlq-{}", c.id()), 1)[0];
    assert_eq!(dlq.1, 0, "{}: {} records dead-lettered", c.label, dlq.1);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", format!("verify-{}", c.id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("verifying consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..c.out_partitions() {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = vec![0u8; TOTAL];
    let (mut read, mut distinct) = (0i64, 0usize);
    let mut last_progress = Instant::now();
    while read < stored {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                read += 1;
                last_progress = Instant::now();
                let key = std::str::from_utf8(m.key().unwrap_or_default()).unwrap_or("");
                let i: usize = key
                    .strip_prefix("u-")
                    .and_then(|k| k.parse().ok())
                    .filter(|i| *i < TOTAL)
                    .unwrap_or_else(|| panic!("{}: output with unknown key {key:?}", c.label));
                let expected = user(i, c.masked);
                assert!(
                    m.payload() == Some(expected.as_bytes()),
                    "{}: record {key}: expected {expected}, got {}",
                    c.label,
                    String::from_utf8_lossy(m.payload().unwrap_or_default())
                );
                assert!(
                    m.headers().is_some_and(|h| {
                        use rdkafka::message::Headers;
                        h.iter()
                            .any(|h| h.key == "source" && h.value == Some(b"signup-form"))
                    }),
                    "{}: record {key} lost its header",
                    c.label
                );
                if seen[i] == 0 {
                    distinct += 1;
                }
                seen[i] = 1;
            }
            Some(Err(e)) => panic!("{}: reading {topic}: {e}", c.label),
            None => assert!(
                last_progress.elapsed() < Duration::from_secs(60),
                "{}: read {read} of {stored} stored outputs, then nothing for 60 s",
                c.label
            ),
        }
    }
    assert_eq!(
        distinct, TOTAL,
        "{}: {distinct} of {TOTAL} input records reached {topic}",
        c.label
    );
    eprintln!(
        "{}: all {TOTAL} records delivered and checked ({} repeats)",
        c.label,
        read - TOTAL as i64
    );
}

/// Reads every record stored in `topic` (no partition trimmed) into `each`; returns how many.
fn read_all(
    c: &Contender,
    kafka: &Kafka,
    topic: &str,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> i64 {
    let marks = watermarks(kafka, topic, c.out_partitions());
    let stored: i64 = marks.iter().map(|(l, h)| h - l).sum();
    for (p, (low, _)) in marks.iter().enumerate() {
        assert_eq!(
            *low, 0,
            "{}: {topic}[{p}] starts at offset {low}: the mock cluster dropped records",
            c.label
        );
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", format!("verify-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("verifying consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..c.out_partitions() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut read = 0i64;
    let mut last_progress = Instant::now();
    while read < stored {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                read += 1;
                last_progress = Instant::now();
                each(&m);
            }
            Some(Err(e)) => panic!("{}: reading {topic}: {e}", c.label),
            None => assert!(
                last_progress.elapsed() < Duration::from_secs(60),
                "{}: read {read} of {stored} records of {topic}, then nothing for 60 s",
                c.label
            ),
        }
    }
    read
}

/// The shop event an output record came from, by its timestamp (the input's event time).
fn shop_index(c: &Contender, m: &rdkafka::message::BorrowedMessage<'_>) -> usize {
    m.timestamp()
        .to_millis()
        .map(|t| t - SHOP_T0)
        .filter(|i| (0..TOTAL as i64).contains(i))
        .unwrap_or_else(|| panic!("{}: output with timestamp {:?}", c.label, m.timestamp()))
        as usize
}

fn utf8(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// Checks a contender on the shop events: the passthrough's output is the input; the metrics
/// pipeline's three outputs are every event re-keyed by product, every event's user totals, and
/// exactly the expected abandoned-cart notices. Every event at least once (at-least-once may
/// repeat), none dead-lettered.
fn verify_shop(c: &Contender, kafka: &Kafka, expected: &ShopExpected) {
    use rdkafka::message::Headers;
    let dlq = watermarks(kafka, &format!("dlq-{}", c.id()), 1)[0];
    assert_eq!(dlq.1, 0, "{}: {} records dead-lettered", c.label, dlq.1);
    let has_source = |m: &rdkafka::message::BorrowedMessage<'_>| {
        m.headers().is_some_and(|h| {
            h.iter()
                .any(|h| h.key == "source" && h.value == Some(b"web"))
        })
    };
    let mut report = Vec::new();
    let mut events = |topic: &str, by_product: bool| {
        let mut seen = vec![false; TOTAL];
        let read = read_all(c, kafka, topic, |m| {
            let i = shop_index(c, m);
            let (user, _, product, _) = shop_event(i);
            let key = if by_product {
                format!("p-{product:04}")
            } else {
                format!("u-{user:06}")
            };
            assert_eq!(utf8(m.key()), key, "{}: {topic}: event {i}'s key", c.label);
            assert_eq!(
                utf8(m.payload()),
                shop_value(i),
                "{}: {topic}: event {i}",
                c.label
            );
            assert!(
                has_source(m),
                "{}: {topic}: event {i} lost its header",
                c.label
            );
            seen[i] = true;
        });
        let distinct = seen.iter().filter(|s| **s).count();
        assert_eq!(
            distinct, TOTAL,
            "{}: {distinct} of {TOTAL} events reached {topic}",
            c.label
        );
        if let Kind::Fanout { copies, .. } = c.kind {
            // Every event `copies` times on average (each worker spreads the fraction on its
            // own, so the sum may fall short by a copy per worker).
            assert!(
                read as f64 >= (copies - 0.01) * TOTAL as f64,
                "{}: {read} records for {TOTAL} events, expected {copies} per event",
                c.label
            );
        }
        report.push(format!("{topic}: {} repeats", read - TOTAL as i64));
    };
    let Kind::ShopMetrics { .. } = c.kind else {
        events(&c.output(), false);
        eprintln!(
            "{}: all {TOTAL} events delivered and checked ({})",
            c.label,
            report.join(", ")
        );
        return;
    };
    let [totals, by_product, notices] = &c.outputs()[..] else {
        unreachable!("three outputs")
    };
    events(by_product, true);
    let mut seen = vec![false; TOTAL];
    let read = read_all(c, kafka, totals, |m| {
        let i = shop_index(c, m);
        let (user, ..) = shop_event(i);
        assert_eq!(
            utf8(m.key()),
            format!("u-{user:06}"),
            "{}: totals key of event {i}",
            c.label
        );
        assert_eq!(
            utf8(m.payload()),
            expected.totals[i],
            "{}: the user's totals after event {i}",
            c.label
        );
        seen[i] = true;
    });
    let distinct = seen.iter().filter(|s| **s).count();
    assert_eq!(
        distinct, TOTAL,
        "{}: totals for {distinct} of {TOTAL} events",
        c.label
    );
    report.push(format!("{totals}: {} repeats", read - TOTAL as i64));
    let mut found = std::collections::HashSet::new();
    let read = read_all(c, kafka, notices, |m| {
        let value = utf8(m.payload());
        assert!(
            expected.notices.contains(&value),
            "{}: unexpected notice {value}",
            c.label
        );
        found.insert(value);
    });
    assert_eq!(
        found.len(),
        expected.notices.len(),
        "{}: {} of {} abandoned-cart notices",
        c.label,
        found.len(),
        expected.notices.len()
    );
    report.push(format!(
        "{notices}: {} notices, {} repeats",
        found.len(),
        read - found.len() as i64
    ));
    // What the state cost in Kafka writes (the mock may have trimmed the topic: its end
    // offsets still count every record written).
    let changelog: i64 = watermarks(kafka, &format!("{}-state", c.id()), PARTITIONS)
        .iter()
        .map(|(_, high)| high)
        .sum();
    report.push(format!(
        "changelog: {changelog} records ({:.2} per event)",
        changelog as f64 / TOTAL as f64
    ));
    eprintln!("{}: all outputs checked ({})", c.label, report.join(", "));
}

// ---------------------------------------------------------------------------------------------
// The plain Rust loop (this binary, started with SLUICE_E2E_RUST_LOOP=bootstrap|in|out|group).

fn rust_loop(args: &str) {
    let [bootstrap, input, output, group] = args.split('|').collect::<Vec<_>>()[..] else {
        panic!("SLUICE_E2E_RUST_LOOP must be bootstrap|input|output|group");
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("loop consumer");
    // The producer settings Sluice uses for at-least-once (host/src/sinks/kafka/mod.rs).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("loop producer");
    consumer.subscribe(&[input]).expect("subscribe");
    loop {
        let mut n = 0;
        let mut wait = Duration::from_millis(100);
        while n < LOOP_BATCH {
            let Some(m) = consumer.poll(wait) else { break };
            let m = m.expect("consuming");
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Some(h) = m.headers() {
                record = record.headers(h.detach());
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("producing: {e}"),
                }
            }
            producer.poll(Duration::ZERO);
            n += 1;
            wait = Duration::ZERO;
        }
        if n == 0 {
            continue;
        }
        // A flush: wait for every delivery report. Not `producer.flush()`: rdkafka's flush waits
        // in 100 ms steps while no one serves the delivery reports, which would cap this loop
        // at ten batches a second.
        let deadline = Instant::now() + Duration::from_secs(60);
        while producer.in_flight_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "records unacknowledged after 60 s"
            );
            producer.poll(Duration::from_millis(1));
        }
        consumer
            .commit_consumer_state(CommitMode::Async)
            .expect("commit");
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    if let Ok(args) = std::env::var("SLUICE_E2E_RUST_LOOP") {
        rust_loop(&args);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("SLUICE_LOG").is_none() {
        // SAFETY: single-threaded here; read by the `sluice run` children.
        unsafe { std::env::set_var("SLUICE_LOG", "warn") };
    }
    let only: Option<Vec<String>> = std::env::var("SLUICE_E2E_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let sluice = |plugin: PathBuf, memory_mb| Kind::Sluice { plugin, memory_mb };
    let mut contenders = Vec::new();
    let fanout = |copies| Kind::Fanout {
        plugin: common::plugin("fanout"),
        copies,
    };
    let all: [(&str, &str, bool, &dyn Fn() -> Kind); 10] = [
        ("Sluice, passthrough (Rust)", "passthrough", false, &|| {
            sluice(common::plugin("passthrough"), None)
        }),
        ("plain rdkafka loop, Rust", "rust-loop", false, &|| {
            Kind::RustLoop
        }),
        (
            "confluent-kafka loop + masking, Python",
            "python-loop",
            true,
            &|| {
                python();
                Kind::PythonLoop
            },
        ),
        ("Sluice, mask-pii (Rust)", "mask-rust", true, &|| {
            sluice(languages::mask_pii(Lang::Rust), None)
        }),
        // componentize-py 0.25.1 leaks about one input batch per call (host/tests/languages.rs):
        // room for 500k records without the instance being rebuilt midway.
        ("Sluice, mask-pii (Python)", "mask-python", true, &|| {
            sluice(languages::mask_pii(Lang::Python), Some(1024))
        }),
        ("Sluice, mask-pii (JavaScript)", "mask-js", true, &|| {
            sluice(languages::mask_pii(Lang::Js), None)
        }),
        (
            "Sluice, passthrough (Rust), shop events",
            "shop-passthrough",
            false,
            &|| sluice(common::plugin("passthrough"), None),
        ),
        (
            "Sluice, fanout 4.4 (stateless, Rust), shop events",
            "shop-fanout",
            false,
            &|| fanout(FANOUT_ALL),
        ),
        (
            "Sluice, fanout 2.3 (stateless, Rust), shop events",
            "shop-outputs",
            false,
            &|| fanout(FANOUT_OUTPUTS),
        ),
        (
            "Sluice, shop metrics (stateful, Rust)",
            "shop-metrics",
            false,
            &|| Kind::ShopMetrics {
                plugin: common::plugin("shop_metrics"),
            },
        ),
    ];
    // Build or install everything first, so no contender's run includes a build.
    for (label, name, masked, kind) in all {
        if wanted(name) {
            contenders.push(Contender {
                label,
                name,
                kind: kind(),
                masked,
                shop: name.starts_with("shop-"),
                round: 0,
            });
        }
    }
    let kafka = Kafka::new(1);
    if contenders.iter().any(|c| !c.shop) {
        load_input(&kafka);
    }
    let shop = contenders.iter().any(|c| c.shop).then(|| {
        load_shop_input(&kafka);
        shop_expected()
    });
    // Rounds alternate the contenders, so a ratio is taken between runs minutes apart at most
    // and a passing disturbance on this shared machine shows as one odd round, not a trend.
    let rounds: usize = std::env::var("SLUICE_E2E_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("SLUICE_E2E_ROUNDS: a number of rounds"))
        .unwrap_or(1)
        .max(1);
    let mut results: HashMap<&str, Vec<Figures>> = HashMap::new();
    let mut rows = Vec::new();
    for round in 0..rounds {
        for c in &contenders {
            let c = Contender { round, ..c.clone() };
            let f = run(&c, &kafka, shop.as_ref());
            eprintln!(
                "{} (round {}): {:.0} records/s, {:.2} CPU-s per million records",
                c.label,
                round + 1,
                f.records_per_s,
                f.cpu_per_million
            );
            rows.push(format!(
                "| {} | {} | {:.0} | {:.2} | {:.1} s | {:.1} s | {:.0}% |",
                c.label,
                round + 1,
                f.records_per_s,
                f.cpu_per_million,
                f.cpu_total,
                f.wall_total,
                f.mock_busy * 100.0
            ));
            results.entry(c.name).or_default().push(f);
        }
    }
    println!(
        "\n{TOTAL} records of ~300 B (users) or ~90 B (shop events) on {PARTITIONS} partitions, one \
         mock cluster; records/s and CPU between 10% and 90% committed; totals from process start \
         to 100% committed; mock busy: the mock cluster's threads' CPU over the measured window, \
         in % of one core (near 100%: the mock, not the contender, sets the pace)\n"
    );
    println!(
        "| contender | round | records/s | CPU-s per million records | CPU total | wall total | mock busy |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        println!("{r}");
    }
    // Per round, then the median over the rounds (and the range).
    let ratio = |a: &str, b: &str, what: &str| {
        let (Some(a), Some(b)) = (results.get(a), results.get(b)) else {
            return;
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let (lo, hi) = (v[0], v[v.len() - 1]);
            let mid = v.len() / 2;
            let m = if v.len().is_multiple_of(2) {
                (v[mid - 1] + v[mid]) / 2.0
            } else {
                v[mid]
            };
            (m, lo, hi)
        };
        let speed = median(
            a.iter()
                .zip(b)
                .map(|(a, b)| a.records_per_s / b.records_per_s)
                .collect(),
        );
        let cpu = median(
            a.iter()
                .zip(b)
                .map(|(a, b)| a.cpu_per_million / b.cpu_per_million)
                .collect(),
        );
        if a.len() == 1 {
            println!(
                "{what}: {:.2}× the records/s at {:.2}× the CPU per record",
                speed.0, cpu.0
            );
        } else {
            println!(
                "{what}: {:.2}× the records/s (median of {} rounds, {:.2}–{:.2}) at {:.2}× the CPU \
                 per record ({:.2}–{:.2})",
                speed.0,
                a.len(),
                speed.1,
                speed.2,
                cpu.0,
                cpu.1,
                cpu.2
            );
        }
    };
    println!();
    ratio(
        "passthrough",
        "rust-loop",
        "Sluice passthrough / plain Rust loop",
    );
    ratio(
        "mask-rust",
        "python-loop",
        "Sluice mask-pii (Rust) / Python loop",
    );
    ratio(
        "mask-python",
        "python-loop",
        "Sluice mask-pii (Python) / Python loop",
    );
    ratio(
        "mask-js",
        "python-loop",
        "Sluice mask-pii (JavaScript) / Python loop",
    );
    ratio(
        "shop-metrics",
        "shop-passthrough",
        "Sluice shop metrics (stateful) / passthrough, same shop events",
    );
    ratio(
        "shop-fanout",
        "shop-passthrough",
        "Sluice fanout 4.4 (the metrics pipeline's Kafka writes, no state) / passthrough, same shop events",
    );
    ratio(
        "shop-outputs",
        "shop-passthrough",
        "Sluice fanout 2.3 (the metrics pipeline's outputs alone) / passthrough, same shop events",
    );
    ratio(
        "shop-metrics",
        "shop-fanout",
        "Sluice shop metrics (stateful) / fanout 4.4, same shop events",
    );
    ratio(
        "shop-metrics",
        "passthrough",
        "Sluice shop metrics (stateful) / passthrough of the users",
    );
}
