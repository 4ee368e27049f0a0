#!/usr/bin/env bash
# Record a data directory as an earlier release wrote it, for the upgrade
# test (tests/server/upgrade.rs, which opens every recording with the host
# of today). COMMIT is built in a temporary worktree; its `serve --demo` is
# driven through the API by the test's recorder (payments, chat, a password
# change, …), stopped, and the data directory is written with what each user
# read before the stop to tests/fixtures/upgrade/<commit date>-<commit>.tar.
# Record one whenever the store's format or a record's encoding changes.
#
#   scripts/upgrade-fixture.sh COMMIT
#
# UPGRADE_FIXTURE_TARGET names a cargo target folder to keep the earlier
# release's build between runs (a fresh one, removed after, by default).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
commit=$(git rev-parse --short=7 "${1:?usage: scripts/upgrade-fixture.sh COMMIT}^{commit}")
date=$(git show -s --format=%cs "$commit")
out="$root/tests/fixtures/upgrade/$date-$commit.tar"

scripts/wasm-toolchain.sh
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/tree" "$commit"
cargo build --release --locked -p superapp \
  --manifest-path "$work/tree/Cargo.toml" --target-dir "${UPGRADE_FIXTURE_TARGET:=$work/target}"

mkdir -p "$(dirname "$out")"
SUPERAPP_FIXTURE_BINARY="$UPGRADE_FIXTURE_TARGET/release/superapp" \
SUPERAPP_FIXTURE_PLUGINS="$work/tree/plugins" \
SUPERAPP_FIXTURE_RELEASE="$date-$commit" \
SUPERAPP_FIXTURE_OUT="$out" \
  cargo test --locked -p superapp --test server -- \
  --ignored --exact upgrade::record_a_data_directory_of_this_release
echo "recorded $out"
