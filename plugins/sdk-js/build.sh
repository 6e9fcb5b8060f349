#!/usr/bin/env bash
# Builds a JavaScript or TypeScript plugin into a Sluice component.
#   plugins/sdk-js/build.sh PLUGIN_DIR|ENTRY.js|ENTRY.ts OUT.wasm
# A directory's entry module is its app.ts, or else its app.js.
# Bundles the entry module with the SDK (`import ... from "sluice"`, "sluice/json", "sluice/text")
# and any npm packages it uses (esbuild), then makes the component with componentize-js, with
# every WASI feature the host does not need disabled (the default build imports wasi:http, which
# the host does not link). Installs both tools (into ~/.cache/sluice/toolchains) when missing.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR|ENTRY.js|ENTRY.ts OUT.wasm" >&2; exit 2; }
SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SDK/../.." && pwd)"
ENTRY="$(realpath "$1")"
if [ -d "$ENTRY" ]; then
  if [ -f "$ENTRY/app.ts" ]; then ENTRY="$ENTRY/app.ts"; else ENTRY="$ENTRY/app.js"; fi
fi
[ -f "$ENTRY" ] || { echo "no entry module $ENTRY (a directory needs an app.ts or app.js)" >&2; exit 1; }
OUT="$(realpath -m "$2")"
"$ROOT/scripts/toolchains.sh" js
eval "$("$ROOT/scripts/toolchains.sh" env)"
mkdir -p "$(dirname "$OUT")"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
esbuild "$ENTRY" --bundle --format=esm --platform=neutral --log-level=warning \
  --alias:sluice="$SDK" --external:'sluice:plugin/*' --outfile="$TMP/plugin.js"
# A plugin that imports the host's state or timers (through "sluice/state") implements the
# `stateful-transform` world; any other the `transform` world.
WORLD=transform
if grep -q '"sluice:plugin/\(state\|timers\)@' "$TMP/plugin.js"; then WORLD=stateful-transform; fi
componentize-js "$TMP/plugin.js" --wit "$ROOT/wit" --world-name "$WORLD" \
  --disable stdio random clocks http fetch-event -o "$TMP/plugin.wasm" >/dev/null
mv "$TMP/plugin.wasm" "$OUT"
