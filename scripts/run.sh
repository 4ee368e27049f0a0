#!/usr/bin/env bash
# The main job: build the host, then serve the demo at 127.0.0.1:8080 on
# sled: the bundled mini-programs are built, published and approved with
# development keys, demo users get money and official documents (once),
# and the URL and logins are printed. Open the URL in a browser; stop with
# Ctrl-C. Data lives in ./superapp-data.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
cargo build --release --locked -p superapp
exec target/release/superapp serve --demo --plugins plugins \
  --data-dir "${SUPERAPP_DATA_DIR:-./superapp-data}" \
  --listen "${SUPERAPP_LISTEN:-127.0.0.1:8080}"
