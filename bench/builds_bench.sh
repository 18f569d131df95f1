#!/usr/bin/env bash
# builds_bench.sh — two builds of fewmul side by side in one invocation: the
# training speed of paper-mlp BC+QB on the default path and on --exec mulfree,
# and batch-1 inference of the packed model, each contender run once per
# round, rounds interleaved, medians and the new/old ratio reported. For a
# change that must not slow anything (docs/architecture.md: within 2%).
#
# usage: bench/builds_bench.sh OLD_FEWMUL NEW_FEWMUL [--data SPEC] [--repeats 5]
#                              [--images 10000] [--threads 2]
set -euo pipefail
old=$1 new=$2
shift 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA="fashion"
[ -d "$ROOT/../shared/data/mnist" ] && DATA="mnist:$ROOT/../shared/data/mnist"
REPEATS=5 IMAGES=10000 THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "builds_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
last_json() { tail -n 1 "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

# one packed model to infer with, made by the old build (both read the same file)
"$old" train --data "$DATA" --arch paper-mlp --weights bc --qb --epochs 1 --train-limit 2000 \
  --no-eval --quiet --out "$work/bc.fmp" >/dev/null

declare -A series
for round in $(seq 1 "$REPEATS"); do
  for who in old new; do
    bin=${!who}
    for exec in default mulfree; do
      "$bin" train --data "$DATA" --arch paper-mlp --weights bc --qb --exec $exec --epochs 1 \
        --train-limit "$IMAGES" --no-eval --threads "$THREADS" --quiet --json >"$work/out"
      series[$who-train-$exec]+="$(last_json "$work/out" train_images_per_s) "
    done
    "$bin" infer --model "$work/bc.fmp" --data "$DATA" --batch 1 --threads 1 --json >"$work/out"
    series[$who-infer]+="$(last_json "$work/out" images_per_s) "
  done
done
python3 - "$REPEATS" "${series[old-train-default]}" "${series[new-train-default]}" \
  "${series[old-train-mulfree]}" "${series[new-train-mulfree]}" \
  "${series[old-infer]}" "${series[new-infer]}" <<'PY'
import statistics, sys
rounds = sys.argv[1]
rows = [("train paper-mlp bc+qb, default (images/s)", 2), ("train paper-mlp bc+qb, mulfree (images/s)", 4),
        ("infer bc packed, batch 1, 1 thread (images/s)", 6)]
print(f"medians of {rounds} interleaved rounds")
print(f"{'contender':48} {'old':>10} {'new':>10} {'new/old':>8}")
for name, i in rows:
    o = [float(v) for v in sys.argv[i].split()]
    n = [float(v) for v in sys.argv[i + 1].split()]
    mo, mn = statistics.median(o), statistics.median(n)
    print(f"{name:48} {mo:10.1f} {mn:10.1f} {mn / mo:8.3f}")
PY
