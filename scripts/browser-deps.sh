#!/usr/bin/env bash
# Make sure the browser tests can run: Debian's headless-capable Chromium
# and its WebDriver (chromium, chromium-driver), installed with apt when
# missing.
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  exit 0
fi

echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium chromium-driver >/dev/null
