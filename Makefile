# Builds are cached outside the clone so that a fresh clone (or CI) reuses them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sluice/target

PLUGIN_CRATES := passthrough mask-pii route-events
PLUGIN_DIR := build/plugins
SLUICE := $(CARGO_TARGET_DIR)/release/sluice

.PHONY: all setup plugins build dev test bench lint

all: build

setup:
	@./scripts/setup.sh

plugins: setup
	cargo build --target wasm32-wasip2 --profile plugin $(addprefix -p ,$(PLUGIN_CRATES))
	@mkdir -p $(PLUGIN_DIR)
	@for c in $(subst -,_,$(PLUGIN_CRATES)); do cp $(CARGO_TARGET_DIR)/wasm32-wasip2/plugin/$$c.wasm $(PLUGIN_DIR)/; done

build: plugins
	cargo build --release -p sluice

## The local demo: `make dev` runs until Ctrl-C; `make dev DURATION=20` stops by itself;
## `make dev WATCH=1` rebuilds and hot-swaps an example plugin when you edit its source.
dev: build
	$(SLUICE) dev $(if $(DURATION),--duration $(DURATION)) $(if $(WATCH),--watch)

## Every test, in release mode (one build of wasmtime serves the tests and the binary).
test: plugins
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo test --release --workspace

bench: plugins
	cargo bench -p sluice --bench boundary
	cargo bench -p sluice --bench postgres
