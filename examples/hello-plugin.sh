#!/usr/bin/env bash
# A mini-program from nothing to a running component, in five commands.
#
#   bash examples/hello-plugin.sh
#
# It works in a temporary folder and uses the superapp binary built from
# this checkout (and the wasm32 toolchain, installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/wasm-toolchain.sh
cargo build -q -p superapp
superapp="$PWD/target/debug/superapp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Scaffold a plugin crate: Cargo.toml, plugin.toml (the manifest: who
#    the app is, which capabilities it uses and why) and src/lib.rs.
"$superapp" plugin new greeter --dir "$work/greeter" --publisher "Example Org"

# 2. Build it into a WebAssembly component; the last line is its path.
component=$("$superapp" plugin build --quiet "$work/greeter" | tail -n 1)

# 3. Check it as the host will: every import must be declared in the
#    manifest, with a reason users read.
"$superapp" plugin check "$component" --manifest "$work/greeter/plugin.toml"

# 4. Run it: `launch`, then one user action, in a fresh sandboxed instance
#    each, with in-memory capabilities. The output is the view the app drew.
"$superapp" plugin run "$component" --manifest "$work/greeter/plugin.toml" --event press

# 5. Pack it into one reproducible package, ready to sign and publish.
"$superapp" keys generate --out "$work/publisher.pem"
"$superapp" plugin pack "$work/greeter" --component "$component" --out "$work/greeter.pkg" --quiet
"$superapp" plugin sign "$work/greeter.pkg" --key "$work/publisher.pem"
echo "next: superapp plugin publish greeter.pkg --server URL --key publisher.pem (see README: Publish an app)"
