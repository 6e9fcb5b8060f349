#!/usr/bin/env bash
# Builds a C plugin (every .c file of a directory, with this SDK) into a Sluice component.
#   plugins/sdk-c/build.sh PLUGIN_DIR OUT.wasm
# clang for wasm32-wasi (reactor), then `wasm-tools component embed` of wit/ and
# `component new` with the WASI preview1 adapter. Installs the tools (Debian clang-19, lld-19,
# wasi-libc; wasm-tools and the adapter into ~/.cache/sluice/toolchains) when missing.
# CC / CFLAGS / LANG_SOURCES (extra sources, e.g. for C++) may be set by the caller.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SDK/../.." && pwd)"
SRC="$(cd "$1" && pwd)"
OUT="$(realpath -m "$2")"
"$ROOT/scripts/toolchains.sh" "${SLUICE_LANG:-c}"
eval "$("$ROOT/scripts/toolchains.sh" env)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
CC="${CC:-clang-19}"
shopt -s nullglob
sources=("$SRC"/*.c ${LANG_SOURCES:-})
sdk_c() { # SOURCE: compile one file of the SDK
  clang-19 --target=wasm32-wasi -O2 -Wall -Werror -I"$SDK" -c "$1" -o "$TMP/sdk-$(basename "$1").o"
  objects+=("$TMP/sdk-$(basename "$1").o")
}
objects=()
plugin_objects=()
for s in "${sources[@]}"; do
  o="$TMP/$(basename "$s").o"
  $CC --target=wasm32-wasi -O2 -Wall -Werror -I"$SDK" ${CFLAGS:-} -c "$s" -o "$o"
  plugin_objects+=("$o")
done
for s in "$SDK"/sluice.c "$SDK"/sluice_json.c "$SDK"/sluice_text.c "$SDK"/sluice_hostjson.c; do
  sdk_c "$s"
done
# A plugin that defines sluice_on_timer is stateful: it gets the state and timer calls and the
# `on-timer` export (sluice_state.c), and implements the `stateful-transform` world. Any other
# implements `transform` and imports nothing of state.
WORLD=transform
if grep -qa 'sluice_on_timer' "${plugin_objects[@]}"; then
  WORLD=stateful-transform
  sdk_c "$SDK"/sluice_state.c
elif grep -qaE 'sluice_(state|timer|watermark|scan)_?' "${plugin_objects[@]}"; then
  echo "$SRC uses keyed state or timers (sluice_state.h) but defines no sluice_on_timer:" \
    "a stateful plugin must define it (see plugins/sdk-c/README.md)" >&2
  exit 1
fi
objects+=("${plugin_objects[@]}")
$CC --target=wasm32-wasi -mexec-model=reactor -O2 ${LDFLAGS:-} "${objects[@]}" -o "$TMP/core.wasm"
wasm-tools component embed "$ROOT/wit" --world "$WORLD" "$TMP/core.wasm" -o "$TMP/embedded.wasm"
wasm-tools component new "$TMP/embedded.wasm" --adapt "wasi_snapshot_preview1=$SLUICE_ADAPTER" -o "$TMP/plugin.wasm"
mkdir -p "$(dirname "$OUT")"
mv "$TMP/plugin.wasm" "$OUT"
