# Builds are cached outside the clone so that a fresh clone (or CI) reuses them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sluice/target

PLUGIN_CRATES := passthrough mask-pii route-events shop-metrics
PLUGIN_DIR := build/plugins
SLUICE := $(CARGO_TARGET_DIR)/release/sluice

.PHONY: all setup plugins plugins-languages build dev check test bench bench-languages bench-e2e lint

all: build

setup:
	@./scripts/setup.sh

plugins: setup
	cargo build --target wasm32-wasip2 --profile plugin $(addprefix -p ,$(PLUGIN_CRATES))
	@mkdir -p $(PLUGIN_DIR)
	@for c in $(subst -,_,$(PLUGIN_CRATES)); do cp $(CARGO_TARGET_DIR)/wasm32-wasip2/plugin/$$c.wasm $(PLUGIN_DIR)/; done

## mask-pii in Python, JavaScript, Go, C and C++ into build/plugins (each SDK's build.sh installs
## its toolchain on first use, under ~/.cache/sluice/toolchains).
plugins-languages:
	@mkdir -p $(PLUGIN_DIR)
	plugins/sdk-python/build.sh examples/plugins/python-mask-pii $(PLUGIN_DIR)/python_mask_pii.wasm
	plugins/sdk-js/build.sh examples/plugins/js-mask-pii $(PLUGIN_DIR)/js_mask_pii.wasm
	plugins/sdk-go/build.sh examples/plugins/go-mask-pii $(PLUGIN_DIR)/go_mask_pii.wasm
	plugins/sdk-c/build.sh examples/plugins/c-mask-pii $(PLUGIN_DIR)/c_mask_pii.wasm
	plugins/sdk-cpp/build.sh examples/plugins/cpp-mask-pii $(PLUGIN_DIR)/cpp_mask_pii.wasm

build: plugins
	cargo build --release -p sluice

## The local demo: `make dev` runs until Ctrl-C; `make dev DURATION=20` stops by itself;
## `make dev WATCH=1` rebuilds and hot-swaps an example plugin when you edit its source.
dev: build
	$(SLUICE) dev $(if $(DURATION),--duration $(DURATION)) $(if $(WATCH),--watch)

## The fast tier for your own loop: formatting, lints and the unit tests (no Kafka, no plugin
## builds); `make test` runs everything.
check: setup
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo test --release -p sluice --lib

## Every test, in release mode (one build of wasmtime serves the tests and the binary).
test: plugins
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo test --release --workspace

bench: plugins
	cargo bench -p sluice --bench boundary
	cargo bench -p sluice --bench postgres

## ns/record, size, compile and load time of every language's mask-pii and identity.
bench-languages: plugins
	cargo bench -p sluice --bench languages

## End to end on one mock cluster, 500k records: Sluice (passthrough; mask-pii in Rust, Python,
## JavaScript) against a plain rdkafka loop in Rust and a confluent-kafka loop in Python. The bench
## builds the language plugins and installs confluent-kafka (a venv under ~/.cache/sluice) when
## missing; `SLUICE_E2E_ONLY=passthrough,rust-loop make bench-e2e` runs a subset.
bench-e2e: plugins
	cargo bench -p sluice --bench e2e
