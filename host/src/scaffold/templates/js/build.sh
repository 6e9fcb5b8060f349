#!/usr/bin/env bash
# Builds this plugin into a Sluice component in this directory (installs the toolchain if it is missing).
set -euo pipefail
cd "$(dirname "$0")"
"{{root}}/plugins/sdk-js/build.sh" app.js {{name}}.wasm
