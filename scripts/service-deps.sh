#!/usr/bin/env bash
# Make sure the tests of several host processes can run: Debian's
# PostgreSQL server binaries (initdb, postgres, createdb, pg_isready;
# package postgresql) and its NATS server (package nats-server), installed
# with apt when missing. The tests start their own servers on temporary
# directories and loopback ports; the packages' own services are not used.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! command -v nats-server >/dev/null 2>&1; then
  missing+=(nats-server)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "installing Debian's ${missing[*]} for the multi-node tests" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Packages start their own services where an init system runs; the tests
# never use them.
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
