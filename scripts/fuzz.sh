#!/usr/bin/env bash
# Runs every never-panic property test (`mod props` next to each parser a stranger can feed)
# in rounds for about SECONDS seconds (default 60), each round with a fresh random seed and
# KICI_PROPTEST_CASES cases per property (default 20000). A failure stops at once with the
# minimal failing input. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac
cases="${KICI_PROPTEST_CASES:-20000}"
# Build once, outside the clock.
cargo test --profile fuzz --lib --no-run -q >/dev/null
end=$((SECONDS + seconds))
round=0
while ((SECONDS < end)); do
    round=$((round + 1))
    echo "fuzz.sh: round $round ($cases cases per property, $((end - SECONDS)) s left)"
    out="$(mktemp)"
    if ! KICI_PROPTEST_CASES="$cases" cargo test --profile fuzz --lib -q -- props:: never_panics_ >"$out" 2>&1; then
        cat "$out"; rm -f "$out"
        echo "fuzz.sh: a property failed (round $round)" >&2
        exit 1
    fi
    grep -E '^test result' "$out" || true
    rm -f "$out"
done
echo "fuzz.sh: $round round(s), every property held"
