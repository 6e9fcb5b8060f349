//! `sluice dev`: the whole system on a laptop with no Kafka.
//!
//! An in-process librdkafka mock cluster (the real Kafka protocol over TCP), a generator of two
//! sample streams — user sign-ups on `users.signups` and e-commerce activity on `shop.events`, a
//! few percent of them invalid — the example pipelines, and a live view of what they produce.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::pipeline::{Host, HostStats, PipelineStatus};
use crate::runtime::Runtime;

/// Topic the sign-up generator writes.
pub const SIGNUPS_TOPIC: &str = "users.signups";
/// Topic the e-commerce generator writes.
pub const EVENTS_TOPIC: &str = "shop.events";
/// Partitions of every topic the demo creates.
const PARTITIONS: i32 = 4;

/// Options of `sluice dev`.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Events per second, per generated stream.
    pub rate: u32,
    /// Sample output lines printed per second.
    pub samples_per_second: u32,
    /// Rebuild example plugins when their sources change (they are then hot-swapped).
    pub watch_sources: bool,
}

/// Runs the demo until `stop` turns true or `duration` passes.
pub async fn run(
    mut config: Config,
    runtime: Arc<Runtime>,
    options: DevOptions,
    stop: watch::Receiver<bool>,
    recheck: mpsc::UnboundedReceiver<()>,
) -> Result<()> {
    let cluster = MockCluster::new(1).context("starting the embedded Kafka mock cluster")?;
    let mut topics: Vec<String> = vec![SIGNUPS_TOPIC.into(), EVENTS_TOPIC.into()];
    for p in &config.pipelines {
        topics.extend(p.inputs.iter().cloned());
        topics.extend(p.outputs.values().filter_map(|o| o.kafka_topic().cloned()));
        topics.extend(p.dead_letter_topic.iter().cloned());
    }
    topics.sort();
    topics.dedup();
    for t in &topics {
        cluster
            .create_topic(t, PARTITIONS, 1)
            .with_context(|| format!("creating topic {t} on the mock cluster"))?;
    }
    config.kafka.bootstrap_servers = cluster.bootstrap_servers();
    println!(
        "sluice dev: mock Kafka cluster at {} with topics {}",
        config.kafka.bootstrap_servers,
        topics.join(", ")
    );

    let watched: Vec<String> = topics
        .iter()
        .filter(|t| *t != SIGNUPS_TOPIC && *t != EVENTS_TOPIC)
        .cloned()
        .collect();
    let bootstrap = config.kafka.bootstrap_servers.clone();
    let rebuilds = if options.watch_sources {
        Some(source_watch_targets(&config)?)
    } else {
        None
    };
    let host = tokio::task::spawn_blocking(move || Host::prepare(config, &runtime)).await??;
    let stats = host.stats();

    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let mut outer = stop;
        let stop_tx = stop_tx.clone();
        let duration = options.duration;
        tokio::spawn(async move {
            let deadline = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = outer.wait_for(|s| *s) => {}
                _ = deadline => {}
            }
            let _ = stop_tx.send(true);
        });
    }
    let generator = {
        let bootstrap = bootstrap.clone();
        let stop = stop_rx.clone();
        let rate = options.rate;
        tokio::task::spawn_blocking(move || generate(&bootstrap, rate, stop))
    };
    if let Some(targets) = rebuilds {
        tokio::spawn(rebuild_on_change(targets, stop_rx.clone()));
    }
    let viewer = tokio::spawn(view(
        bootstrap,
        watched,
        stats,
        host.status(),
        options.samples_per_second,
        stop_rx.clone(),
    ));
    let admin = crate::admin::AdminServer::start(&host, stop_rx.clone()).await?;
    let result = host.run(stop_rx, recheck).await;
    let result = result.and(admin.finish().await);
    let _ = stop_tx.send(true);
    let generated = generator.await??;
    viewer.await??;
    println!("sluice dev: generated {generated} events; stopped");
    drop(cluster);
    result
}

/// Produces both sample streams at `rate` events per second each until `stop`.
pub fn generate(bootstrap: &str, rate: u32, stop: watch::Receiver<bool>) -> Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("creating the sample generator's producer")?;
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut sent = 0u64;
    while !*stop.borrow() {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let user = rng.random_range(0..5000u32);
        let key = format!("u-{user:06}");
        let signup = sample_signup(&mut rng, user);
        let event = sample_event(&mut rng, user);
        for (topic, value) in [(SIGNUPS_TOPIC, signup), (EVENTS_TOPIC, event)] {
            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
            while let Err((_, back)) = producer.send(record) {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(sent * 2)
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Frances", "Dennis",
    "Zoë", "José",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds",
    "Allen", "Ritchie", "Müller", "García",
];
const CITIES: &[(&str, &str)] = &[
    ("Springfield", "US"),
    ("Lyon", "FR"),
    ("Leeds", "GB"),
    ("Porto", "PT"),
    ("Kraków", "PL"),
    ("Osaka", "JP"),
];

/// A sign-up shaped like a random-user API's result; about 3% are invalid.
pub fn sample_signup(rng: &mut impl Rng, user: u32) -> String {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let (city, country) = CITIES[rng.random_range(0..CITIES.len())];
    let email = format!(
        "{}.{}@example.com",
        first.to_lowercase(),
        last.to_lowercase()
    );
    let phone = format!(
        "(555) {:03}-{:04}",
        rng.random_range(0..1000),
        rng.random_range(0..10000)
    );
    let value = serde_json::json!({
        "id": format!("u-{user:06}"),
        "name": {"title": if rng.random_bool(0.5) { "Ms" } else { "Mr" }, "first": first, "last": last},
        "email": email,
        "phone": phone,
        "location": {
            "street": {"number": rng.random_range(1..400), "name": "Main Street"},
            "city": city, "country": country, "postcode": format!("{:05}", rng.random_range(0..99999)),
        },
        "registered": {"date": format!("2025-{:02}-{:02}T10:00:00Z", rng.random_range(1..13), rng.random_range(1..29)), "age": 1},
    });
    match rng.random_range(0..100) {
        0 => value.to_string().replace('@', " at "),
        1 => value.to_string().replace("\"id\"", "\"uid\""),
        2 => "{\"id\": \"u-broken\", \"email\":".to_string(),
        _ => value.to_string(),
    }
}

/// A product view, cart addition or purchase; about 3% are malformed.
pub fn sample_event(rng: &mut impl Rng, user: u32) -> String {
    let kind = match rng.random_range(0..10) {
        0..=5 => "view",
        6..=8 => "cart",
        _ => "purchase",
    };
    let price = (rng.random_range(100..20000) as f64) / 100.0;
    let value = serde_json::json!({
        "type": kind,
        "user_id": format!("u-{user:06}"),
        "product_id": format!("p-{:04}", rng.random_range(0..500)),
        "price": price,
    });
    match rng.random_range(0..100) {
        0 => value.to_string().replace(kind, "refund"),
        1 => serde_json::json!({"type": "purchase", "user_id": format!("u-{user:06}"), "product_id": "p-0001", "price": -1}).to_string(),
        2 => "{\"type\": \"view\", ".to_string(),
        _ => value.to_string(),
    }
}

/// Prints a few output records per second and, every two seconds, a line of records/s and per
/// pipeline its counts, consumer lag and dead letters.
async fn view(
    bootstrap: String,
    topics: Vec<String>,
    stats: HostStats,
    status: Vec<Arc<PipelineStatus>>,
    samples_per_second: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sluice-dev-viewer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the live viewer's consumer")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let mut per_topic: BTreeMap<String, u64> = BTreeMap::new();
    let mut window = Instant::now();
    let mut printed = (0, 0); // outputs, dead letters printed in this second
    // Each topic's share of the second's samples, so that a busy topic does not hide the others.
    let per_topic_share = samples_per_second
        .div_ceil(topics.len().max(1) as u32)
        .max(1);
    let mut printed_by_topic: BTreeMap<String, u32> = BTreeMap::new();
    let mut report = tokio::time::interval(Duration::from_secs(2));
    let mut last_in = 0u64;
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = report.tick() => {
                let total_in: u64 = stats.iter().map(|(_, s)| s.records_in.load(Ordering::Relaxed)).sum();
                let rate = (total_in - last_in) as f64 / last_report.elapsed().as_secs_f64();
                last_in = total_in;
                last_report = Instant::now();
                let per_pipeline: Vec<String> = stats.iter().zip(&status).map(|((name, s), st)| format!(
                    "{name}: in {} out {} lag {} dlq {}",
                    s.records_in.load(Ordering::Relaxed),
                    s.records_out.load(Ordering::Relaxed),
                    st.lag(),
                    s.dead_lettered.load(Ordering::Relaxed),
                )).collect();
                println!("── {rate:.0} records/s · {} · seen {:?}", per_pipeline.join(" · "), per_topic);
            }
            message = consumer.recv() => {
                let Ok(m) = message else { continue };
                *per_topic.entry(m.topic().to_string()).or_default() += 1;
                if window.elapsed() >= Duration::from_secs(1) {
                    window = Instant::now();
                    printed = (0, 0);
                    printed_by_topic.clear();
                }
                let reason = m.headers().and_then(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .find(|h| h.key == crate::sinks::dead_letter::HEADER_MESSAGE)
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                });
                // Dead letters have their own budget so that they show even when the outputs
                // fill the sample budget.
                let value = || m.payload().map(String::from_utf8_lossy).unwrap_or_default();
                match reason {
                    Some(reason) if printed.1 < samples_per_second.div_ceil(2) => {
                        printed.1 += 1;
                        println!("{:>16} │ {}  ⟵ {reason}", m.topic(), value());
                    }
                    None if printed.0 < samples_per_second
                        && printed_by_topic.get(m.topic()).is_none_or(|n| *n < per_topic_share) =>
                    {
                        printed.0 += 1;
                        *printed_by_topic.entry(m.topic().to_string()).or_default() += 1;
                        println!("{:>16} │ {}", m.topic(), value());
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// A plugin crate whose sources `sluice dev --watch` follows, and the file it builds into.
#[derive(Clone, Debug)]
pub struct RebuildTarget {
    /// The Cargo workspace holding the crate.
    pub workspace: PathBuf,
    /// The crate (package) name.
    pub package: String,
    /// The crate's `src` directory.
    pub sources: PathBuf,
    /// The component file the pipeline loads (and hot-swaps when it changes).
    pub artifact: PathBuf,
}

/// Finds the crate of every plugin of `config` whose file is `<crate_name>.wasm` and whose crate
/// lives in `<workspace>/plugins/<crate-name>/` or `<workspace>/examples/plugins/rust-<crate-name>/`
/// (the workspace being the config directory's parent, as for `examples/dev.toml`).
pub fn source_watch_targets(config: &Config) -> Result<Vec<RebuildTarget>> {
    let base = config
        .base_dir
        .canonicalize()
        .unwrap_or_else(|_| config.base_dir.clone());
    let workspace = base
        .parent()
        .filter(|w| w.join("plugins").is_dir() || w.join("examples/plugins").is_dir())
        .with_context(|| format!("--watch needs the plugin sources next to the config: no plugins/ directory beside {}", base.display()))?
        .to_path_buf();
    let mut targets = Vec::new();
    for pipeline in &config.pipelines {
        for plugin in &pipeline.plugins {
            let artifact = config.plugin_path(plugin);
            let stem = artifact
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let package = stem.replace('_', "-");
            let dir = [
                workspace.join("plugins").join(&package),
                workspace.join(format!("examples/plugins/rust-{package}")),
            ]
            .into_iter()
            .find(|dir| dir.join("Cargo.toml").is_file());
            if let Some(dir) = dir
                && !targets.iter().any(|t: &RebuildTarget| t.package == package)
            {
                targets.push(RebuildTarget {
                    workspace: workspace.clone(),
                    package,
                    sources: dir.join("src"),
                    artifact,
                });
            }
        }
    }
    anyhow::ensure!(
        !targets.is_empty(),
        "--watch found no plugin crate under {0}/plugins or {0}/examples/plugins for the configured plugins",
        workspace.display()
    );
    Ok(targets)
}

/// Rebuilds a plugin when its sources change and puts the new component in place atomically,
/// which the plugin file watcher then hot-swaps. A failed build is shown; the old version keeps
/// running.
pub async fn rebuild_on_change(
    targets: Vec<RebuildTarget>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    use notify::Watcher as _;
    let (tx, mut events) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    for t in &targets {
        watcher.watch(&t.sources, notify::RecursiveMode::Recursive)?;
        println!(
            "sluice dev: watching {} (rebuilds {})",
            t.sources.display(),
            t.artifact.display()
        );
    }
    let mut pending: Option<(usize, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            Some(path) = events.recv() => {
                if let Some(i) = targets.iter().position(|t| path.starts_with(&t.sources)) {
                    pending = Some((i, Instant::now()));
                }
            }
            _ = tick.tick() => {
                let Some((i, at)) = pending else { continue };
                if at.elapsed() < Duration::from_millis(300) {
                    continue;
                }
                pending = None;
                let target = targets[i].clone();
                tokio::task::spawn_blocking(move || rebuild(&target)).await?;
            }
        }
    }
}

fn rebuild(t: &RebuildTarget) {
    println!("sluice dev: {} changed, rebuilding…", t.package);
    let started = Instant::now();
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&t.workspace)
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "plugin",
                "--color",
                "never",
                "-p",
                &t.package,
            ])
            .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            println!("sluice dev: cannot run cargo ({e}); the running version stays");
            return;
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "sluice dev: build of {} failed; the running version stays:\n{}",
            t.package,
            stderr.trim_end()
        );
        return;
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| t.workspace.join("target"));
    let built = target_dir
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", t.package.replace('-', "_")));
    // Copy beside the artifact, then rename: the plugin watcher never sees a partial file.
    let tmp = t.artifact.with_extension("wasm.tmp");
    let result = std::fs::copy(&built, &tmp).and_then(|_| std::fs::rename(&tmp, &t.artifact));
    match result {
        Ok(()) => println!(
            "sluice dev: rebuilt {} in {:.1} s; hot-swapping",
            t.package,
            started.elapsed().as_secs_f64()
        ),
        Err(e) => println!(
            "sluice dev: cannot install {} ({e}); the running version stays",
            built.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_finds_the_example_plugin_crates_of_the_demo_config() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let config = Config::load(&repo.join("examples/dev.toml")).unwrap();
        let targets = source_watch_targets(&config).unwrap();
        let mut found: Vec<(String, PathBuf)> = targets
            .into_iter()
            .map(|t| {
                let sources = t.sources.strip_prefix(&t.workspace).unwrap().to_path_buf();
                (t.package, sources)
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                (
                    "mask-pii".into(),
                    "examples/plugins/rust-mask-pii/src".into()
                ),
                (
                    "passthrough".into(),
                    "examples/plugins/rust-passthrough/src".into()
                ),
                (
                    "route-events".into(),
                    "examples/plugins/rust-route-events/src".into()
                ),
                (
                    "shop-metrics".into(),
                    "examples/plugins/rust-shop-metrics/src".into()
                ),
            ]
        );
    }
}
