//! Hot-reload validation is per plugin file and concurrent: a tenant whose new version spins in
//! `init` (for as long as its own deadline allows) delays no other tenant's reload, whether the
//! change comes from the file watcher or from a recheck (SIGHUP).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Kafka, Load, plugin, wait_until, write_config};
use sluice::testing::reload::LiveChain;
use sluice::testing::runtime::content_version;

/// Tenant A's init deadline: its new version spins in `init` for this long.
const SLOW_INIT_MS: u64 = 8000;

fn label_of(path: &Path) -> String {
    format!("live@{}", content_version(&std::fs::read(path).unwrap()))
}

/// Two tenants' pipelines, each with its plugin file (`slow/live.wasm`, `quick/live.wasm`, both
/// passthrough at first). Tenant A's config makes the hostile-reload plugin spin in `init`.
fn setup(kafka: &Kafka, dir: &Path, watch: bool) -> (PathBuf, PathBuf, PathBuf) {
    for t in ["a.in", "a.out", "b.in", "b.out"] {
        kafka.topic(t, 2);
    }
    let mut files = Vec::new();
    for sub in ["slow", "quick"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let file = dir.join(sub).join("live.wasm");
        std::fs::copy(plugin("passthrough"), &file).unwrap();
        files.push(file);
    }
    let text = format!(
        r#"
        [kafka]
        bootstrap_servers = "{{bootstrap}}"
        [runtime]
        reload_debounce_ms = 100
        watch_plugins = {watch}
        [[tenant]]
        name = "a"
        topic_prefixes = ["a."]
        [[tenant]]
        name = "b"
        topic_prefixes = ["b."]
        [[pipeline]]
        name = "slow"
        tenant = "a"
        inputs = ["a.in"]
        plugins = [{{ path = "{}", config = {{ reload_mode = "init-spin" }} }}]
        limits = {{ timeout_ms = {SLOW_INIT_MS} }}
        [pipeline.outputs.main]
        kafka_topic = "a.out"
        [[pipeline]]
        name = "quick"
        tenant = "b"
        inputs = ["b.in"]
        plugins = [{{ path = "{}" }}]
        batch = {{ max_records = 50, linger_ms = 10 }}
        [pipeline.outputs.main]
        kafka_topic = "b.out"
        "#,
        files[0].display(),
        files[1].display()
    );
    let config = write_config(dir, &text, &kafka.bootstrap());
    (config, files.remove(0), files.remove(0))
}

/// A host in a thread of its own, with a recheck (SIGHUP) sender.
struct Host {
    stop: tokio::sync::watch::Sender<bool>,
    recheck: tokio::sync::mpsc::UnboundedSender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    chains: Vec<Arc<LiveChain>>,
}

impl Host {
    fn start(config: &Path) -> Host {
        use sluice::testing::runtime::{ComponentCache, Runtime};
        let config = sluice::testing::config::Config::load(config).expect("valid test config");
        let runtime = Runtime::new(ComponentCache::default_dir()).unwrap();
        let host =
            sluice::testing::pipeline::Host::prepare(config, &runtime).expect("plugins load");
        let chains = host.chains();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (recheck, recheck_rx) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(host.run(stop_rx, recheck_rx))
        });
        Host {
            stop,
            recheck,
            thread,
            chains,
        }
    }

    fn stop(self) {
        let _ = self.stop.send(true);
        self.thread
            .join()
            .expect("host thread")
            .expect("clean stop");
    }
}

/// Changes tenant A's file to the version spinning in `init`, then (once its validation runs)
/// tenant B's to another good version, with `trigger` making the host look at them; B's version
/// must serve records while A's is still being validated.
fn b_goes_live_while_a_spins(watch: bool, trigger: impl Fn(&Host)) {
    let kafka = Kafka::new(1);
    let dir = tempfile::tempdir().unwrap();
    let (config, slow_file, quick_file) = setup(&kafka, dir.path(), watch);
    let host = Host::start(&config);
    let (slow, quick) = (host.chains[0].clone(), host.chains[1].clone());
    let load = Load::start(&kafka.bootstrap(), "b.in", 2, 10, Duration::from_millis(10));
    let label_a = label_of(&plugin("passthrough"));
    let label_b = label_of(&plugin("poison"));
    wait_until("B serves its first version", || {
        quick.current().label.as_ref() == label_a
    });

    std::fs::write(&slow_file, std::fs::read(plugin("hostile_reload")).unwrap()).unwrap();
    if !watch {
        trigger(&host);
    }
    // A's validation is under way (debounce 100 ms, settle 50 ms) and spins in init.
    std::thread::sleep(Duration::from_millis(600));
    let changed = Instant::now();
    std::fs::write(&quick_file, std::fs::read(plugin("poison")).unwrap()).unwrap();
    trigger(&host);

    let seen = kafka.read_until(&["b.out"], Duration::from_secs(60), |r| {
        r.iter()
            .any(|r| r.header("sluice.version") == Some(label_b.as_str()))
    });
    let took = changed.elapsed();
    assert!(
        seen.iter()
            .any(|r| r.header("sluice.version") == Some(label_b.as_str())),
        "B's new version never served a record"
    );
    // The point: B did not wait for A's validation, which ends only at A's init deadline.
    assert_eq!(
        slow.stats.failures.load(Ordering::Relaxed),
        0,
        "B's version went live only after A's validation ended (took {took:?})"
    );
    assert!(
        took < Duration::from_millis(SLOW_INIT_MS),
        "B went live {took:?} after its change, not before A's init deadline"
    );
    assert_eq!(quick.stats.swaps.load(Ordering::Relaxed), 1);

    // A's version is refused at its own deadline; A keeps its running version.
    wait_until("A's spinning init refused", || {
        slow.stats.failures.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(slow.current().label.as_ref(), label_a);
    assert_eq!(slow.stats.swaps.load(Ordering::Relaxed), 0);
    load.stop();
    host.stop();
}

#[test]
fn a_slow_init_in_one_tenants_reload_delays_no_other_tenants_file_change() {
    b_goes_live_while_a_spins(true, |_| {});
}

#[test]
fn a_slow_init_in_one_tenants_reload_delays_no_other_tenants_recheck() {
    // Without a watcher every change is picked up by a recheck (SIGHUP): one for A's change, one
    // for B's while A's validation still spins.
    b_goes_live_while_a_spins(false, |host| host.recheck.send(()).unwrap());
}
