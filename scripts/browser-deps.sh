#!/usr/bin/env bash
# Make sure the browser tests can run: Debian's headless-capable Chromium
# and its WebDriver (chromium, chromium-driver), installed with apt when
# missing, and axe-core (the accessibility checker) from the npm registry,
# pinned by version and SHA-256, into target/axe-core/.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  $sudo apt-get install -y -qq "$@" >/dev/null
}

AXE_VERSION=4.14.1
AXE_SHA256=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
if [ ! -f target/axe-core/axe.min.js ]; then
  echo "fetching axe-core $AXE_VERSION from the npm registry" >&2
  command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
  mkdir -p target/axe-core
  tarball=$(mktemp)
  curl -sSfL -o "$tarball" "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz"
  echo "$AXE_SHA256  $tarball" | sha256sum -c --quiet -
  tar xzf "$tarball" -O package/axe.min.js > target/axe-core/axe.min.js.part
  mv target/axe-core/axe.min.js.part target/axe-core/axe.min.js
  rm -f "$tarball"
fi

if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  exit 0
fi

echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
apt_install chromium chromium-driver
