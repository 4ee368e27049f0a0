#!/usr/bin/env bash
# Make sure a toolchain that can build mini-programs for wasm32 is present.
# rustup's wasm32-unknown-unknown target is used when installed; otherwise
# Debian's rustc-web packages (which build std for wasm32 from source) are
# installed with apt.
set -euo pipefail

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  exit 0
fi
if [ -x /usr/bin/cargo ] && [ -f /usr/lib/rustlib/src/rust/library/std/Cargo.toml ] && command -v rust-lld >/dev/null 2>&1; then
  exit 0
fi

echo "installing Debian's wasm32 Rust toolchain (rustc-web, cargo-web, rust-web-src, lld-22)" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >/dev/null
