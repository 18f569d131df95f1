#!/usr/bin/env bash
# latent_bench.sh: the training modes that move fewer bytes (issue 22) against BC+QB on
# paper-mlp, in one invocation: each mode's training speed (images/s of `fewmul train`,
# interleaved rounds, medians) and peak resident memory, beside its training step's ledger
# from `fewmul energy` (arithmetic, data movement, DRAM bytes); optionally the report page
# that compares the modes' energy by memory level. See docs/bench.md.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/latent_bench.sh [--build DIR] [--data SPEC] [--threads 2] [--repeats 5]
                             [--images 10000] [--report FILE] [--out FILE]
  --build DIR    CMake build folder holding ./fewmul (default: build)
  --data SPEC    fewmul data spec (default: mnist:<repo>/../shared/data/mnist if present, else fashion)
  --threads T    threads of every run (default 2)
  --repeats R    rounds; each round trains every mode once, in turn (default 5)
  --images N     training images per run, one epoch of batch 200 (default 10000)
  --report FILE  also write the report page (fewmul report) of one run of each mode with its
                 ledger: the energy charts stack each mode's data movement by memory level
  --out FILE     also write the results as JSON to FILE
The modes: bc --qb (the paper's method, the reference), bc --qb --latent bf16, bc --qb
--fuse, bc --qb --latent bf16 --fuse, bc-det --qb --opt bop, and bc-det --qb --opt bop
--latent bf16 (bop with threshold 1e-4).
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build" DATA="" THREADS=2 REPEATS=5 IMAGES=10000 REPORT="" OUT=""
need() { [ $# -ge 2 ] || { echo "latent_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --repeats) need "$@"; REPEATS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --report) need "$@"; REPORT=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "latent_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in THREADS REPEATS IMAGES; do
  case "${!v}" in ''|*[!0-9]*) echo "latent_bench.sh: --${v,,} needs a positive integer" >&2; exit 2 ;; esac
done
if [ "$THREADS" -lt 1 ] || [ "$REPEATS" -lt 1 ] || [ "$IMAGES" -lt 200 ]; then
  echo "latent_bench.sh: need --threads >= 1, --repeats >= 1, --images >= 200" >&2; exit 2
fi
FEWMUL="$BUILD/fewmul"
[ -x "$FEWMUL" ] || { echo "latent_bench.sh: $FEWMUL not found (build first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "latent_bench.sh: /usr/bin/time is needed for the peak memory" >&2; exit 2; }
if [ -z "$DATA" ]; then
  if [ -f "$ROOT/../shared/data/mnist/train-images-idx3-ubyte" ] || \
     [ -f "$ROOT/../shared/data/mnist/train-images-idx3-ubyte.gz" ]; then
    DATA="mnist:$ROOT/../shared/data/mnist"
  else
    DATA=fashion
  fi
fi

NAMES=("bc+qb" "bc+qb bf16" "bc+qb fuse" "bc+qb bf16 fuse" "bop" "bop bf16")
FLAGS=("--weights bc --qb" "--weights bc --qb --latent bf16" "--weights bc --qb --fuse"
       "--weights bc --qb --latent bf16 --fuse"
       "--weights bc-det --qb --opt bop --bop-threshold 1e-4"
       "--weights bc-det --qb --opt bop --bop-threshold 1e-4 --latent bf16")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "latent_bench: $DATA, $IMAGES images, $THREADS threads, $REPEATS rounds;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>}, load $(cut -d' ' -f1 /proc/loadavg)" >&2

for m in "${!NAMES[@]}"; do
  # shellcheck disable=SC2086
  "$FEWMUL" energy --arch paper-mlp --batch 200 ${FLAGS[$m]} --json >"$work/energy.$m" 2>"$work/err" ||
    { echo "latent_bench.sh: energy ${FLAGS[$m]}: $(head -1 "$work/err")" >&2; exit 1; }
done
for ((r = 1; r <= REPEATS; r++)); do
  for m in "${!NAMES[@]}"; do
    ledger=() log=()
    if [ "$r" = 1 ] && [ -n "$REPORT" ]; then ledger=(--ledger) log=(--log "$work/log.$m.jsonl"); fi
    # shellcheck disable=SC2086
    /usr/bin/time -f "%M" -o "$work/rss.$m.$r" "$FEWMUL" train --data "$DATA" --arch paper-mlp \
      ${FLAGS[$m]} --epochs 1 --batch 200 --train-limit "$IMAGES" --no-eval --threads "$THREADS" \
      --quiet --json "${ledger[@]}" "${log[@]}" >"$work/run.$m.$r" 2>"$work/err" ||
      { echo "latent_bench.sh: train ${FLAGS[$m]}: $(head -1 "$work/err")" >&2; exit 1; }
  done
done
if [ -n "$REPORT" ]; then
  labels=()
  for m in "${!NAMES[@]}"; do labels+=(--label "${NAMES[$m]}"); done
  "$FEWMUL" report "$work"/log.{0,1,2,3,4,5}.jsonl "${labels[@]}" -o "$REPORT" \
    --title "paper-mlp: training modes that move fewer bytes" >/dev/null ||
    { echo "latent_bench.sh: report failed" >&2; exit 1; }
fi

python3 - "$work" "$REPEATS" "$OUT" "${NAMES[@]}" <<'PY'
import json, statistics, sys
work, repeats, out, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
rows = []
for m, name in enumerate(names):
    e = json.load(open("%s/energy.%d" % (work, m)))["train_step"]["total"]
    speeds = [json.loads(open("%s/run.%d.%d" % (work, m, r)).read().splitlines()[-1])["train_images_per_s"]
              for r in range(1, repeats + 1)]
    rss = [int(open("%s/rss.%d.%d" % (work, m, r)).read().split()[-1]) for r in range(1, repeats + 1)]
    rows.append({"mode": name, "compute_mj": e["compute_j"] * 1e3, "comm_mj": e["communication_j"] * 1e3,
                 "dram_read": e["read_bytes"]["dram"], "dram_written": e["written_bytes"]["dram"],
                 "images_per_s": statistics.median(speeds), "images_per_s_all": speeds,
                 "peak_rss_mb": statistics.median(rss) / 1024})
ref = rows[0]
print("| mode | arithmetic mJ | data movement mJ | less than bc+qb | DRAM MB read + written |"
      " images/s (median) | speed vs bc+qb | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    r["comm_less"] = ref["comm_mj"] / r["comm_mj"]
    r["speed_ratio"] = r["images_per_s"] / ref["images_per_s"]
    print("| %s | %.3f | %.3f | %.2fx | %.1f + %.1f | %.0f | %.2f | %.0f |" % (
        r["mode"], r["compute_mj"], r["comm_mj"], r["comm_less"], r["dram_read"] / 1e6,
        r["dram_written"] / 1e6, r["images_per_s"], r["speed_ratio"], r["peak_rss_mb"]))
if out:
    json.dump(rows, open(out, "w"), indent=1)
PY
