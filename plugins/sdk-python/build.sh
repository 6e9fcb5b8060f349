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
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# The WIT without its doc comments: componentize-py copies them into docstrings of the generated
# bindings unescaped, and a comment's `\u00xx` is then a Python syntax error.
mkdir "$TMP/wit"
for f in "$ROOT"/wit/*.wit; do sed -E 's#^([[:space:]]*)///.*$#\1//#' "$f" >"$TMP/wit/$(basename "$f")"; done
# A plugin whose sources use `sluice.StatefulTransform` implements the `stateful-transform`
# world (keyed state and timers); any other the `transform` world.
WORLD="${SLUICE_WORLD:-transform}"
if [ -z "${SLUICE_WORLD:-}" ] && grep -rqs --include='*.py' 'StatefulTransform' "$SRC"; then WORLD=stateful-transform; fi
cd "$SRC"
export PYTHONDONTWRITEBYTECODE=1
componentize-py -d "$TMP/wit" -w "$WORLD" componentize app -p "$SRC" -p "$SDK" -o "$OUT.tmp" >/dev/null
mv "$OUT.tmp" "$OUT"
