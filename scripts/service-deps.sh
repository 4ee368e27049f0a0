#!/usr/bin/env bash
# Make sure the tests of the multi-node store can run: Debian's PostgreSQL
# server binaries (initdb, postgres, createdb, pg_isready; package
# postgresql), installed with apt when missing. The tests start their own
# servers on temporary directories and loopback ports; the package's own
# cluster service is not used.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi

echo "installing Debian's postgresql for the store tests" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq postgresql >/dev/null
