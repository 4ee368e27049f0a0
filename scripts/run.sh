#!/usr/bin/env bash
# The main job: build the host and the bundled mini-programs, put them in
# an apps directory that the host publishes to its registry and approves
# with its development keys, and serve them on sled at 127.0.0.1:8080 (stop
# with Ctrl-C). Data lives in ./superapp-data.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/wasm-toolchain.sh
cargo build --release --locked -p superapp
superapp=target/release/superapp
apps=target/apps
for plugin in hello hospital-booking city-payments document-wallet; do
  component=$("$superapp" plugin build --quiet "plugins/$plugin" | tail -n 1)
  "$superapp" plugin check "$component" --manifest "plugins/$plugin/plugin.toml" >/dev/null
  mkdir -p "$apps/$plugin"
  cp "plugins/$plugin/plugin.toml" "$apps/$plugin/plugin.toml"
  cp "$component" "$apps/$plugin/$plugin.wasm"
done
exec "$superapp" serve --data-dir "${SUPERAPP_DATA_DIR:-./superapp-data}" --apps "$apps" --dev-approve \
  --listen "${SUPERAPP_LISTEN:-127.0.0.1:8080}"
