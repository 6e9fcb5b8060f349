//! The cost of the component boundary per record: a batch of 100-byte records through an
//! identity plugin and a drop-everything plugin, at batch sizes 1, 100 and 1000, beside the same
//! identity transform run natively in-process (the SDK's batch loop with no boundary).
//!
//! `cargo bench -p sluice --bench boundary`; criterion reports time per batch and elements/s;
//! ns/record = time / batch size.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::testing::config::Limits;
use sluice::testing::runtime::{ComponentCache, PluginSpec, Runtime};
use sluice_abi::{Header, InputBatch};
use sluice_plugin::{Config, Emitter, Record, Transform};

fn batch(n: usize) -> InputBatch {
    let mut b = InputBatch::default();
    let t = b.topic_index("bench");
    let value = [b'x'; 100];
    for i in 0..n {
        let key = format!("key-{i:04}");
        b.push(
            Some(key.as_bytes()),
            Some(&value),
            [Header {
                name: "trace",
                value: Some(b"abc"),
            }],
            Some(1_700_000_000_000),
            t,
            0,
            i as i64,
        );
    }
    b
}

struct NativeIdentity;

impl Transform for NativeIdentity {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(NativeIdentity)
    }
    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        out.forward(record);
        Ok(())
    }
}

fn boundary(c: &mut Criterion) {
    let runtime: Arc<Runtime> = Runtime::new(ComponentCache::default_dir()).unwrap();
    let mut group = c.benchmark_group("boundary");
    for n in [1usize, 100, 1000] {
        let mut input = batch(n);
        group.throughput(Throughput::Elements(n as u64));
        for (label, name) in [("identity", "passthrough"), ("drop", "drop_all")] {
            let spec = PluginSpec {
                name: name.into(),
                path: common::plugin(name),
                config: vec![],
                limits: Limits::default(),
                scope: String::new(),
                tenant: String::new(),
            };
            let plugin = runtime.load(&spec).unwrap();
            let mut instance = plugin.instantiate().unwrap();
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| black_box(instance.process(&mut input).unwrap()))
            });
        }
        let mut native = NativeIdentity;
        group.bench_with_input(BenchmarkId::new("native-identity", n), &n, |b, _| {
            b.iter(|| black_box(sluice_plugin::run_batch(&mut native, &input)))
        });
    }
    group.finish();
}

/// What the sandbox limits cost: identity at batch 1000 with the deadline (epoch interruption) and
/// memory cap on, with nothing enforced, and with fuel metering as well.
fn limits(c: &mut Criterion) {
    let enforced = Runtime::new(ComponentCache::default_dir()).unwrap();
    let unlimited = Runtime::without_limits_for_benchmarks(ComponentCache::default_dir()).unwrap();
    let mut group = c.benchmark_group("limits");
    let n = 1000;
    let mut input = batch(n);
    group.throughput(Throughput::Elements(n as u64));
    let cases = [
        ("none", &unlimited, None),
        ("deadline+memory", &enforced, None),
        ("deadline+memory+fuel", &enforced, Some(u64::MAX / 4)),
    ];
    for (label, runtime, fuel) in cases {
        let spec = PluginSpec {
            name: "passthrough".into(),
            path: common::plugin("passthrough"),
            config: vec![],
            limits: Limits {
                fuel,
                ..Limits::default()
            },
            scope: String::new(),
            tenant: String::new(),
        };
        let mut instance = runtime.load(&spec).unwrap().instantiate().unwrap();
        group.bench_function(BenchmarkId::new(label, n), |b| {
            b.iter(|| black_box(instance.process(&mut input).unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = boundary, limits
}
criterion_main!(benches);
