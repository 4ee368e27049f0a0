#!/usr/bin/env bash
# The main job: build the host and the hello mini-program, then run hello's
# launch and one event in the sandbox and print the resulting views.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
cargo build --release --locked -p superapp-host
superapp=target/release/superapp
component=$("$superapp" plugin build plugins/hello | tail -n 1)
"$superapp" plugin check "$component" --manifest plugins/hello/plugin.toml
"$superapp" plugin run "$component" --manifest plugins/hello/plugin.toml \
  --event save-name --payload '{"name":"Ada"}'
