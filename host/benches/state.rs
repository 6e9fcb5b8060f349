//! Keyed state (issue 15): a per-key count plugin at batch 1000 (100 keys, so every `get` after
//! the first batch is a cache hit) with its counts in the host's state — get + put per record, the
//! batch's changes applied to the store — beside the same plugin counting in its own memory; and
//! restoring a store from a changelog of 100,000 records on the mock cluster.
//!
//! `cargo bench -p sluice --bench state`; ns/record = time / 1000 for `count/*`, records/s =
//! 100,000 / time for `restore`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice::testing::chain::Chain;
use sluice::testing::config::Limits;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice::testing::state::{Stores, changelog_key, restore_in_memory};
use sluice_abi::InputBatch;

const BATCH: usize = 1000;
const KEYS: usize = 100;
const RESTORE_RECORDS: usize = 100_000;

fn batch() -> InputBatch {
    let mut b = InputBatch::default();
    let t = b.topic_index("bench");
    let value = [b'x'; 100];
    for i in 0..BATCH {
        let key = format!("user-{:04}", i % KEYS);
        b.push(
            Some(key.as_bytes()),
            Some(&value),
            [],
            Some(1_700_000_000_000),
            t,
            0,
            i as i64,
        );
    }
    b
}

fn count(c: &mut Criterion) {
    let runtime: Arc<Runtime> = Runtime::new(ComponentCache::default_dir()).unwrap();
    let mut group = c.benchmark_group("count");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut input = batch();
    for (label, storage) in [("plugin-memory", "memory"), ("host-state", "state")] {
        let spec = PluginSpec {
            name: "key_counter".into(),
            path: common::plugin("key_counter"),
            config: vec![("storage".into(), storage.into())],
            limits: Limits::default(),
            scope: String::new(),
            tenant: String::new(),
        };
        let plugin = runtime.load(&spec).unwrap();
        let mut chain = Chain::new(vec![plugin]);
        let stores = Stores::ephemeral("bench", 0);
        let store = stores.partition(&("bench".into(), 0)).unwrap().unwrap();
        chain.set_partition(Some(store.clone()));
        group.bench_function(label, |b| {
            b.iter(|| {
                let out = chain.process(&mut input).unwrap();
                assert!(out.failures.is_empty());
                store.apply_pending().unwrap();
            })
        });
    }
    group.finish();
}

fn restore(c: &mut Criterion) {
    let kafka = common::Kafka::new(1);
    kafka.topic("bench-state", 1);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let value = [b'v'; 16];
    for i in 0..RESTORE_RECORDS {
        let key = changelog_key("in", "counter", format!("user-{i:07}").as_bytes());
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to("bench-state")
            .partition(0)
            .key(key.as_slice())
            .payload(&value[..]);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let mut group = c.benchmark_group("restore");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RESTORE_RECORDS as u64));
    group.bench_function("100k-changelog-records", |b| {
        b.iter(|| {
            let (read, store) =
                restore_in_memory(&kafka.bootstrap(), "bench-state", "in", 0).unwrap();
            assert_eq!(read, RESTORE_RECORDS as u64);
            assert!(store.bytes() > 0);
        })
    });
    group.finish();
}

criterion_group!(benches, count, restore);
criterion_main!(benches);
