#!/usr/bin/env bash
# Builds a Python plugin (a directory with app.py) into a Sluice component.
#   plugins/sdk-python/build.sh PLUGIN_DIR OUT.wasm
# Installs componentize-py (into ~/.cache/sluice/toolchains) when it is missing.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SDK/../.." && pwd)"
SRC="$(cd "$1" && pwd)"
OUT="$(realpath -m "$2")"
"$ROOT/scripts/toolchains.sh" python
eval "$("$ROOT/scripts/toolchains.sh" env)"
mkdir -p "$(dirname "$OUT")"
cd "$SRC"
export PYTHONDONTWRITEBYTECODE=1
componentize-py -d "$ROOT/wit" -w transform componentize app -p "$SRC" -p "$SDK" -o "$OUT.tmp" >/dev/null
mv "$OUT.tmp" "$OUT"
