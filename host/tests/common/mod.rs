//! Shared test support: plugins built for wasm32-wasip2, a librdkafka mock cluster with helpers to
//! produce and read records, and config files written for it.

#![allow(dead_code)]

pub mod postgres;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Every plugin crate the tests use.
const PLUGINS: &[&str] = &[
    "passthrough",
    "mask-pii",
    "route-events",
    "poison",
    "drop-all",
    "fanout",
    "wrong-world",
    "hostile",
    "hostile-runtime",
    "hostile-reload",
    "hostile-json",
    "key-counter",
    "shop-metrics",
    "rust-counter",
];

/// The path of a plugin component (crate name with `_`), building every test plugin on first
/// use. A build failure fails the test loudly.
pub fn plugin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(&workspace)
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "plugin"]);
        for p in PLUGINS {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("running cargo to build the test plugins");
        assert!(
            status.success(),
            "building the test plugins failed; is the wasm32-wasip2 target installed? (run scripts/setup.sh)"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("wasm32-wasip2").join("plugin")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A record to produce: key, value, headers.
pub type TestRecord = (Option<String>, Option<Vec<u8>>, Vec<(String, String)>);

/// A record as read back from a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<String>)>,
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn value_str(&self) -> &str {
        std::str::from_utf8(self.value.as_deref().unwrap_or_default()).unwrap()
    }
}

/// An in-process mock Kafka cluster (the real protocol over TCP on loopback).
pub struct Kafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl Kafka {
    pub fn new(brokers: i32) -> Kafka {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "1")
            .create()
            .expect("test producer");
        Kafka { cluster, producer }
    }

    /// A one-broker cluster with these `(topic, partitions)`.
    pub fn with_topics(topics: &[(&str, i32)]) -> Kafka {
        let kafka = Kafka::new(1);
        for (t, p) in topics {
            kafka.topic(t, *p);
        }
        kafka
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn topic(&self, name: &str, partitions: i32) {
        self.cluster
            .create_topic(name, partitions, 1)
            .expect("create topic");
    }

    /// Produces `(key, value, headers)` records to `topic` (to `partition` when given) and
    /// waits for their acknowledgement.
    pub fn produce(&self, topic: &str, partition: Option<i32>, records: &[TestRecord]) {
        for (key, value, headers) in records {
            let mut h = OwnedHeaders::new();
            for (n, v) in headers {
                h = h.insert(Header {
                    key: n,
                    value: Some(v),
                });
            }
            let mut r: BaseRecord<'_, String, Vec<u8>> = BaseRecord::to(topic).headers(h);
            if let Some(k) = key {
                r = r.key(k);
            }
            if let Some(v) = value {
                r = r.payload(v);
            }
            if let Some(p) = partition {
                r = r.partition(p);
            }
            loop {
                match self.producer.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        r = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        self.producer
            .flush(Duration::from_secs(30))
            .expect("flush test records");
    }

    /// Reads `topics` from the beginning until `done` says so or `timeout` passes; returns
    /// everything read.
    pub fn read_until(
        &self,
        topics: &[&str],
        timeout: Duration,
        done: impl Fn(&[Record]) -> bool,
    ) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            // What exactly-once promises: outputs of aborted transactions are never seen.
            .set("isolation.level", "read_committed")
            .create()
            .expect("test consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            let md = consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .expect("topic metadata");
            for p in md.topics()[0].partitions() {
                tpl.add_partition_offset(t, p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while !done(&out) && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(Record {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
        out
    }

    /// Reads `topics` until `count` records have arrived, then a little longer to catch extras.
    pub fn read_count(&self, topics: &[&str], count: usize, timeout: Duration) -> Vec<Record> {
        let mut records = self.read_until(topics, timeout, |r| r.len() >= count);
        let extra = self.read_until(topics, Duration::from_millis(300), |r| {
            r.len() > records.len()
        });
        if extra.len() > records.len() {
            records = extra;
        }
        records
    }

    /// The offsets committed by `group` for `topic`'s partitions (-1 = none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            // The offsets committed so far, without waiting for a transaction in flight (a
            // read_committed client asks for stable offsets and waits for it to end).
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("committed-offsets consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect()
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request to the admin listener on 127.0.0.1:`port`, with `token` as the bearer
/// token: the status and the body, or `None` when nothing answers (a listener not up yet).
/// The host answers a refused upload (401, 403, 413) without reading its body and closes: the
/// rest of the body may not be taken, and the connection may end with a reset.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

/// [`try_http`], failing the test when nothing answers.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    try_http(port, method, path, token, body)
        .unwrap_or_else(|| panic!("no HTTP answer on 127.0.0.1:{port} to {method} {path}"))
}

/// Waits up to 60 s for `condition`, failing the test with `what` if it never holds.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a config file into `dir` with `bootstrap` substituted for `{bootstrap}` and plugin
/// paths for `{plugin:NAME}`.
pub fn write_config(dir: &Path, text: &str, bootstrap: &str) -> PathBuf {
    let mut text = text.replace("{bootstrap}", bootstrap);
    while let Some(start) = text.find("{plugin:") {
        let end = start + text[start..].find('}').unwrap();
        let name = &text[start + 8..end];
        let path = plugin(name);
        text.replace_range(start..=end, &path.display().to_string());
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Counts records by a string key.
pub fn counts<'a>(items: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

/// A producer thread writing records `v-{partition}-{seq}` with key `p{partition}` and headers
/// `p` and `seq` to every partition of a topic, round robin, until stopped. (The key keeps a
/// partition's outputs together in one output partition, where their order can be checked.)
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl Load {
    /// Starts writing `per_tick` records every `tick`.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        per_tick: usize,
        tick: Duration,
    ) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "2")
            .create()
            .expect("load producer");
        let topic = topic.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seqs = vec![0u64; partitions as usize];
            let mut next = 0usize;
            while !flag.load(Ordering::Acquire) {
                for _ in 0..per_tick {
                    let p = next % partitions as usize;
                    next += 1;
                    let seq = seqs[p];
                    seqs[p] += 1;
                    let value = format!("v-{p}-{seq}");
                    let (ps, ss) = (p.to_string(), seq.to_string());
                    let key = format!("p{p}");
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "p",
                            value: Some(&ps),
                        })
                        .insert(Header {
                            key: "seq",
                            value: Some(&ss),
                        });
                    let mut r: BaseRecord<'_, String, String> = BaseRecord::to(&topic)
                        .partition(p as i32)
                        .key(&key)
                        .payload(&value)
                        .headers(headers);
                    loop {
                        match producer.send(r) {
                            Ok(()) => break,
                            Err((_, back)) => {
                                r = back;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                }
                std::thread::sleep(tick);
            }
            producer.flush(Duration::from_secs(30)).expect("flush load");
            seqs
        });
        Load { stop, thread }
    }

    /// Stops and returns the number of records written per partition.
    pub fn stop(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().expect("load thread")
    }
}

/// A host running in a thread of its own; `stop` ends it gracefully.
pub struct RunningHost {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    /// The live chain of every pipeline.
    pub chains: Vec<std::sync::Arc<sluice::testing::reload::LiveChain>>,
    /// The counters of the first pipeline.
    pub stats: std::sync::Arc<sluice::testing::pipeline::PipelineStats>,
}

impl RunningHost {
    pub fn start(config_path: &std::path::Path) -> RunningHost {
        use sluice::testing::runtime::{ComponentCache, Runtime};
        let config = sluice::testing::config::Config::load(config_path).expect("valid test config");
        let runtime = Runtime::new(ComponentCache::default_dir()).unwrap();
        let host =
            sluice::testing::pipeline::Host::prepare(config, &runtime).expect("plugins load");
        let chains = host.chains().to_vec();
        let stats = host.stats()[0].1.clone();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let admin =
                    sluice::testing::admin::AdminServer::start(&host, stop_rx.clone()).await?;
                let ran = host
                    .run(stop_rx, tokio::sync::mpsc::unbounded_channel().1)
                    .await;
                ran.and(admin.finish().await)
            })
        });
        RunningHost {
            stop,
            thread,
            chains,
            stats,
        }
    }

    /// Stops gracefully and returns how the host ended.
    pub fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.thread.join().expect("host thread")
    }

    /// Waits for the host to end by itself.
    pub fn join(self) -> anyhow::Result<()> {
        self.thread.join().expect("host thread")
    }
}

/// Keeps the host saturated: writes records whenever fewer than `MAX_LAG` are waiting. (A
/// preloaded backlog does not work: the mock cluster keeps at most 5 MB per partition and drops
/// older records, as retention would; an unbounded producer makes the consumer chase a moving log
/// start.) Returns the number of records written when `stop` is set.
pub fn saturate(
    bootstrap: String,
    topic: &str,
    stats: std::sync::Arc<sluice::testing::pipeline::PipelineStats>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    const MAX_LAG: u64 = 40_000;
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let value = vec![b'x'; 100];
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let mut sent = 0u64;
        while !stop.load(Ordering::Acquire) {
            if sent.saturating_sub(stats.records_in.load(Ordering::Relaxed)) >= MAX_LAG {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            for _ in 0..1000 {
                let mut r: BaseRecord<'_, String, Vec<u8>> = BaseRecord::to(&topic)
                    .key(&keys[sent as usize % 1000])
                    .payload(&value);
                while let Err((_, back)) = producer.send(r) {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                sent += 1;
            }
        }
        sent
    })
}

/// `sluice run CONFIG` as a child process with `SLUICE_INSTANCE_ID` set; killed if dropped.
pub struct HostProcess {
    child: Option<std::process::Child>,
}

impl HostProcess {
    pub fn start(config: &Path, instance: &str) -> HostProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(config)
            // SLUICE_LOG from the test's environment, to debug a test: `SLUICE_LOG=debug cargo test`.
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("SLUICE_INSTANCE_ID", instance)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting sluice");
        HostProcess { child: Some(child) }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no drain, no commit, no goodbye to the group.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (SIGHUP, SIGTERM…).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGTERM, then waits up to 60 s for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, if it has ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Checks per-partition delivery of [`Load`] records read back from an output topic: every
/// input `(p, seq)` below `produced[p]` has an output, outputs of one input partition keep its
/// order (each new `seq` is the next one; a repeat may only be a replay of earlier ones), and
/// with `exactly_once` none is repeated. Inputs in `dead_lettered` (`(p, seq)`) have no output.
/// Returns how many outputs were repeats.
pub fn check_delivery(
    outputs: &[Record],
    produced: &[u64],
    dead_lettered: &[(usize, u64)],
    exactly_once: bool,
) -> usize {
    let mut by_partition: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut sorted: Vec<&Record> = outputs.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let p: usize = r.header("p").expect("header p").parse().unwrap();
        let seq: u64 = r.header("seq").expect("header seq").parse().unwrap();
        by_partition.entry(p).or_default().push(seq);
    }
    let mut repeats = 0;
    for (p, n) in produced.iter().enumerate() {
        let seqs = by_partition.remove(&p).unwrap_or_default();
        let mut next = 0u64;
        let skip = |next: &mut u64| {
            while dead_lettered.contains(&(p, *next)) {
                *next += 1;
            }
        };
        skip(&mut next);
        for seq in &seqs {
            assert!(
                !dead_lettered.contains(&(p, *seq)),
                "partition {p}: dead-lettered input {seq} has an output"
            );
            if *seq == next {
                next += 1;
                skip(&mut next);
            } else if *seq < next {
                assert!(
                    !exactly_once,
                    "partition {p}: input {seq} has a second output (exactly-once)"
                );
                repeats += 1;
            } else {
                panic!("partition {p}: input {seq} came before input {next} (order or loss)");
            }
        }
        assert_eq!(next, *n, "partition {p}: inputs {next}..{n} have no output");
    }
    assert!(by_partition.is_empty(), "outputs from unknown partitions");
    repeats
}
