#!/usr/bin/env bash
# Same-run comparison of a benchmark against an earlier commit, for changes on the hot path.
#
#   scripts/bench-compare.sh REV WHAT [ARGS...]
#
# Builds REV (any commit, tag or branch) from `git archive` into its own directory and target
# directory (kept under the target directory, so a second comparison against the same commit
# does not rebuild it), then runs `scripts/bench.sh WHAT ARGS...` of REV's tree and of this tree
# alternately, BENCH_ROUNDS times (default 5; the order flips every round, so a machine that
# slowly gets busier does not favour one side). Each side runs its own bench.sh against its own
# binary, so commits with different migrations compare fairly. The report takes every output
# line of the bench that holds figures, the median of each figure over the rounds, and prints
# this tree's line, REV's medians and the ratio (this / REV) of each figure:
#
#   this:  webhook -> job.dispatch ...: p50 3.89 ms  p99 7.01 ms ...
#   3765f68a1b: webhook -> job.dispatch ...: p50 4.11 ms  p99 7.72 ms ...
#          this/3765f68a1b, figure by figure: 0.95 0.91 ...
#
# Everything else in the environment (BENCH_REPEAT, BENCH_LEVELS, ...) reaches both sides. The
# outputs of every round are kept in the directory named at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh

[ $# -ge 2 ] || { echo "usage: scripts/bench-compare.sh REV WHAT [ARGS...]  (BENCH_ROUNDS, default 5)" >&2; exit 2; }
rev=$1
shift
rounds=${BENCH_ROUNDS:-5}
case "$rounds" in '' | *[!0-9]*) die "BENCH_ROUNDS must be a whole number, got '$rounds'" ;; esac
{ [ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ]; } || die "BENCH_ROUNDS must be 1..20"
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || die "'$rev' is not a commit of this repository"
short=${commit:0:10}

target=$(cargo_target_dir)
base_tree="$target/compare/$short/tree"
base_target="$target/compare/$short/target"
if [ ! -f "$base_tree/scripts/bench.sh" ]; then
  log "+ git archive $short into $base_tree"
  rm -rf "$base_tree"
  mkdir -p "$base_tree"
  git archive "$commit" | tar -x -C "$base_tree"
fi
[ -f "$base_tree/scripts/bench.sh" ] || die "$short has no scripts/bench.sh to compare with"

out=$(mktemp -d /tmp/kici-bench-compare.XXXXXX)
run_side() {
  local side=$1 round=$2
  shift 2
  if [ "$side" = base ]; then
    (cd "$base_tree" && CARGO_TARGET_DIR="$base_target" scripts/bench.sh "$@") >"$out/base.$round" 2>"$out/base.$round.err"
  else
    scripts/bench.sh "$@" >"$out/this.$round" 2>"$out/this.$round.err"
  fi || { tail -n 20 "$out/$side.$round.err" >&2; die "the $side side of round $round failed (log: $out/$side.$round.err)"; }
}
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="base this"; else order="this base"; fi
  for side in $order; do
    log "round $round/$rounds: $side ($([ "$side" = base ] && echo "$short" || echo "this tree"))"
    run_side "$side" "$round" "$@"
  done
done

python3 - "$out" "$rounds" "$short" <<'PY'
import re, statistics, sys
out, rounds, short = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# A figure: not part of a word (the 50 of "p50" is a name, not a figure).
NUM = re.compile(r"(?<![A-Za-z_\d.])-?\d+(?:[.,]\d+)*")

def lines(side):
    """Per round, the lines that hold figures, keyed by their shape (figures replaced by #)."""
    per_round = []
    for r in range(1, rounds + 1):
        got = {}
        for line in open(f"{out}/{side}.{r}"):
            line = line.rstrip("\n")
            figures = NUM.findall(line)
            if figures:
                got.setdefault(NUM.sub("#", line), []).append([float(f.replace(",", "")) for f in figures])
        per_round.append(got)
    return per_round

def medians(per_round, shape, i):
    """The median of each figure of the i-th line of this shape, over the rounds that have it."""
    rows = [r[shape][i] for r in per_round if shape in r and len(r[shape]) > i]
    return [statistics.median(col) for col in zip(*rows)] if rows else None

this, base = lines("this"), lines("base")

def fmt(x):
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.0f}" if x == int(x) else f"{x:.2f}"

def fill(shape, figures):
    parts = shape.split("#")
    return "".join(p + (fmt(figures[k]) if k < len(figures) else "") for k, p in enumerate(parts))

print(f"{rounds} rounds, medians; this tree against {short} (outputs in {out})")
for shape in this[0]:
    for i in range(len(this[0][shape])):
        now, then = medians(this, shape, i), medians(base, shape, i)
        print(f"this:  {fill(shape, now).strip()}")
        if then is None:
            print(f"{short}: (no such line)")
            continue
        print(f"{short}: {fill(shape, then).strip()}")
        ratios = " ".join(f"{a / b:.2f}" if b else "-" for a, b in zip(now, then))
        print(f"       this/{short}, figure by figure: {ratios}")
PY
