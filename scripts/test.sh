#!/usr/bin/env bash
# The whole test suite: unit tests, SDK doc tests, and the black-box tests,
# which build every bundled mini-program from source (cached in plugins/target).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
cargo test --workspace --locked
