#!/usr/bin/env bash
# infer_bench.sh: what deployment gains per weight mode. For each mode it trains paper-mlp,
# writes the packed file (fewmul train --out), measures the deployed network's test error
# (fewmul infer) beside the training-side error, the file's size against the fp32 file, and
# times every kernel variant against the fp32 OpenBLAS yardstick in one invocation
# (fewmul bench infer: median batch-1 latency, median batch-256 throughput). See docs/bench.md.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/infer_bench.sh [--build DIR] [--data SPEC] [--epochs 20] [--runs 400]
                            [--modes "fp32 bc+qb tc+qb synapse+qb bc-det+bin"] [--arch paper-mlp]
                            [--keep DIR] [--out FILE]
  --build DIR   CMake build folder holding ./fewmul (default: build)
  --data SPEC   fewmul data spec (default: mnist:<repo>/../shared/data/mnist if present, else fashion)
  --epochs E    training epochs per mode (default 20)
  --runs R      batch-1 runs per kernel variant in fewmul bench infer (default 400)
  --modes LIST  each WEIGHTS[+qb][+bin]: WEIGHTS a --weights value, +qb quantized back-prop,
                +bin binary activations (--acts binary); fp32 must be in the list for file ratios
  --arch A      architecture (default paper-mlp)
  --keep DIR    keep the packed models and JSON reports in DIR (default: a temporary folder)
  --out FILE    also write all results as JSON to FILE
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
DATA=""
EPOCHS=20
RUNS=400
MODES="fp32 bc+qb tc+qb synapse+qb bc-det+bin"
ARCH=paper-mlp
KEEP=""
OUT=""

need() { [ $# -ge 2 ] || { echo "infer_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --epochs) need "$@"; EPOCHS=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --modes) need "$@"; MODES=$2; shift 2 ;;
    --arch) need "$@"; ARCH=$2; shift 2 ;;
    --keep) need "$@"; KEEP=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "infer_bench.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

FEWMUL="$BUILD/fewmul"
[ -x "$FEWMUL" ] || { echo "infer_bench.sh: $FEWMUL not found; build first (cmake -B build && cmake --build build)" >&2; exit 1; }
if [ -z "$DATA" ]; then
  if [ -d "$ROOT/../shared/data/mnist" ]; then DATA="mnist:$ROOT/../shared/data/mnist"; else DATA=fashion; fi
fi
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && DIR=$KEEP; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

for mode in $MODES; do
  weights=${mode%%+*}
  args=(--weights "$weights")
  case "+$mode+" in *+qb+*) args+=(--qb) ;; esac
  case "+$mode+" in *+bin+*) args+=(--acts binary) ;; esac
  echo "== $mode: training $ARCH for $EPOCHS epochs (${args[*]})" >&2
  "$FEWMUL" train --arch "$ARCH" --data "$DATA" --epochs "$EPOCHS" "${args[@]}" \
      --out "$DIR/$mode.fmp" --json > "$DIR/$mode.train.json" || { echo "infer_bench.sh: training $mode failed" >&2; exit 1; }
  "$FEWMUL" infer --model "$DIR/$mode.fmp" --data "$DATA" --json > "$DIR/$mode.infer.json" || exit 1
  "$FEWMUL" info "$DIR/$mode.fmp" --json > "$DIR/$mode.info.json" || exit 1
  echo "== $mode: timing every kernel variant ($RUNS batch-1 runs each)" >&2
  "$FEWMUL" bench infer --model "$DIR/$mode.fmp" --runs "$RUNS" --json > "$DIR/$mode.bench.json" || exit 1
done

python3 - "$DIR" "$OUT" $MODES <<'EOF'
import json, sys
folder, out, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(mode, what):
    with open(f"{folder}/{mode}.{what}.json") as f:
        return json.loads(f.read().strip().splitlines()[-1])
rows = []
for mode in modes:
    train, infer, info, bench = (load(mode, w) for w in ("train", "infer", "info", "bench"))
    rows.append({"mode": mode, "train": train, "infer": infer, "info": info, "bench": bench})
fp32_bytes = next((r["info"]["file_bytes"] for r in rows if r["mode"] == "fp32"), None)
print(f"{'mode':<12} {'file KB':>8} {'vs fp32':>8} {'train err%':>10} {'deployed err%':>13}  "
      "variant  batch-1 us  (x fp32)  batch-256 img/s  (x fp32)  mismatches")
for r in rows:
    size = r["info"]["file_bytes"]
    ratio = f"{fp32_bytes / size:.1f}x" if fp32_bytes else "-"
    first = True
    for v in r["bench"]["variants"]:
        head = (f"{r['mode']:<12} {size / 1024:8.1f} {ratio:>8} {r['train']['test_error_pct']:10.2f} "
                f"{r['infer']['error_pct']:13.2f}") if first else " " * 55
        print(f"{head}  {v['name']:<7} {v['latency_us']:10.1f}  ({v['latency_speedup_vs_fp32']:5.2f})"
              f"  {v['images_per_s']:15.0f}  ({v['throughput_speedup_vs_fp32']:5.2f})  {v['mismatches']:>10}")
        first = False
if out:
    with open(out, "w") as f:
        json.dump({"fp32_file_bytes": fp32_bytes, "modes": rows}, f, indent=1)
EOF
