#!/usr/bin/env bash
# Fuzz the parsers and checkers that read untrusted input (fuzz/fuzz_targets:
# manifest, package, view, presentation) for a bounded time each, starting
# from the stored corpus in fuzz/corpus/TARGET. Inputs that once crashed a
# target live in fuzz/regressions/TARGET and are replayed first. Any crash
# fails the run and leaves the input in fuzz/artifacts/TARGET.
#
#   SUPERAPP_FUZZ_SECONDS  time per target (default 30)
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# (which ships the sanitizer runtimes) accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SUPERAPP_FUZZ_SECONDS:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --version 0.13.1 --locked
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in manifest package view presentation; do
    if [ -d "fuzz/regressions/$target" ]; then
        cargo fuzz run "$target" "fuzz/regressions/$target" -- -runs=0
    fi
    mkdir -p "$scratch/$target"
    # New inputs go to the scratch directory; the stored corpus is only read.
    log="$scratch/$target.log"
    if ! cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
    echo "fuzz $target: $(grep -E '^Done' "$log" | tail -n 1)"
done
