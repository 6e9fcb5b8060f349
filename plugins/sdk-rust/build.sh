#!/usr/bin/env bash
# Builds a Rust plugin (a cdylib crate that depends on sluice-plugin) into a Sluice component.
#   plugins/sdk-rust/build.sh CRATE_DIR OUT.wasm
# `cargo build --target wasm32-wasip2 --profile plugin` for the crate in CRATE_DIR, then copies
# its .wasm to OUT. Works for a crate of this workspace (its `plugin` profile) and for a standalone
# crate such as `sluice new --lang rust` makes (no `plugin` profile: it inherits the crate's
# `release` profile). Adds the wasm32-wasip2 target with rustup when it is missing. Honours
# CARGO_TARGET_DIR.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 CRATE_DIR OUT.wasm" >&2; exit 2; }
SRC="$(cd "$1" && pwd)"
OUT="$(realpath -m "$2")"
[ -f "$SRC/Cargo.toml" ] || { echo "no Cargo.toml in $SRC" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
# `profile.plugin.inherits` in --config says what the workspace's own [profile.plugin] says
# already, and defines the profile for a crate that has none.
# The JSON messages name the artifacts; the crate's cdylib is the one .wasm among them.
wasm="$(cd "$SRC" && cargo build --target wasm32-wasip2 --profile plugin \
  --config 'profile.plugin.inherits="release"' \
  --manifest-path "$SRC/Cargo.toml" --message-format=json-render-diagnostics \
  | grep -o '"[^"]*\.wasm"' | tail -n 1 | tr -d '"')"
[ -n "$wasm" ] && [ -f "$wasm" ] || { echo "cargo built no .wasm for $SRC (is it a cdylib crate?)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
cp "$wasm" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
