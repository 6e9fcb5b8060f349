#!/usr/bin/env bash
# Builds a C++ plugin (every .cpp file of a directory, with this SDK and the C SDK under it) into
# a Sluice component.
#   plugins/sdk-cpp/build.sh PLUGIN_DIR OUT.wasm
# Debian clang++-19 with libc++ for wasm32-wasi (C++23, no exceptions), then the C SDK's
# component steps. Installs the toolchain when missing.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
SDK="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$1" && pwd)"
shopt -s nullglob
sources=("$SRC"/*.cpp)
[ ${#sources[@]} -gt 0 ] || { echo "no .cpp files in $SRC" >&2; exit 1; }
SLUICE_LANG=cpp CC=clang++-19 CFLAGS="-std=c++23 -fno-exceptions -fno-rtti -I$SDK" \
  LDFLAGS="-fno-exceptions" LANG_SOURCES="${sources[*]}" \
  exec "$SDK/../sdk-c/build.sh" "$SRC" "$2"
