#!/usr/bin/env bash
# The whole test suite: unit tests, SDK doc tests, the store's contract
# tests against every engine (PostgreSQL started by the tests), the black-box tests,
# which build every bundled mini-program from source (cached in
# plugins/target), the browser tests in headless Chromium, the API fuzzed
# from its OpenAPI document (schemathesis), and a bounded run of every
# cargo-fuzz target over its stored corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
scripts/browser-deps.sh
scripts/service-deps.sh
cargo test --workspace --locked
scripts/api-fuzz.sh
scripts/fuzz.sh
