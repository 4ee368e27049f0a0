#!/usr/bin/env bash
# The whole test suite: unit tests, SDK doc tests, the black-box tests,
# which build every bundled mini-program from source (cached in
# plugins/target), and the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
scripts/browser-deps.sh
cargo test --workspace --locked
