#!/usr/bin/env bash
# mulfree_bench.sh: training throughput of paper-mlp (or another network: --arch, e.g. paper-cnn)
# with `--exec mulfree` (the method's arithmetic executed: table lookups, adds and exponent adds)
# against the default path (OpenBLAS float GEMMs) for the same weight modes, in one invocation,
# interleaved, reported as medians and the ratio mulfree/default. Optionally each kernel variant
# of the mulfree path. A convolutional network without --data trains on random CIFAR-10-format
# records written here (speed does not depend on the values), with --preproc unit. See
# docs/bench.md.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/mulfree_bench.sh [--build DIR] [--arch ARCH] [--data SPEC] [--threads 2]
                              [--repeats 5] [--images 10000] [--batch 200]
                              [--modes "bc+qb tc+qb"] [--kernels "auto"] [--out FILE]
  --build DIR     CMake build folder holding ./fewmul (default: build)
  --arch ARCH     the network, as fewmul train takes it (default paper-mlp)
  --data SPEC     fewmul data spec (default: dense networks mnist:<repo>/../shared/data/mnist if
                  present, else fashion; convolutional ones random 32x32x3 CIFAR-10 records)
  --threads T     threads for both paths (default 2)
  --repeats R     rounds; each runs every contender once, interleaved (default 5)
  --images N      training images per run: N/B steps of batch B (default 10000)
  --batch B       minibatch size (default 200)
  --modes LIST    weight modes with +qb (mulfree needs it): bc+qb, bc-det+qb, tc+qb, tc-det+qb,
                  synapse+qb (default "bc+qb tc+qb")
  --kernels LIST  mulfree kernel variants to run, each auto (FEWMUL_KERNELS unset: the best the
                  CPU has), ref, avx2 or avx512 (default "auto")
  --out FILE      also write the results as JSON to FILE
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
DATA=""
THREADS=2
REPEATS=5
IMAGES=10000
MODES="bc+qb tc+qb"
KERNELS="auto"
OUT=""
BATCH=200
ARCH=paper-mlp

need() { [ $# -ge 2 ] || { echo "mulfree_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --arch) need "$@"; ARCH=$2; shift 2 ;;
    --batch) need "$@"; BATCH=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --repeats) need "$@"; REPEATS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --modes) need "$@"; MODES=$2; shift 2 ;;
    --kernels) need "$@"; KERNELS=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "mulfree_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in THREADS REPEATS IMAGES BATCH; do
  case "${!v}" in ''|*[!0-9]*) echo "mulfree_bench.sh: --${v,,} needs a positive integer" >&2; exit 2 ;; esac
done
if [ "$THREADS" -lt 1 ] || [ "$REPEATS" -lt 1 ] || [ "$BATCH" -lt 1 ] || [ "$IMAGES" -lt "$BATCH" ]; then
  echo "mulfree_bench.sh: need --threads >= 1, --repeats >= 1, --batch >= 1, --images >= --batch" >&2; exit 2
fi
for m in $MODES; do
  case "$m" in
    bc+qb|bc-det+qb|tc+qb|tc-det+qb|synapse+qb) ;;
    *) echo "mulfree_bench.sh: unknown mode '$m' (mulfree needs a quantized mode with +qb)" >&2; exit 2 ;;
  esac
done
for k in $KERNELS; do
  case "$k" in auto|ref|avx2|avx512) ;; *) echo "mulfree_bench.sh: unknown kernels '$k'" >&2; exit 2 ;; esac
done
FEWMUL="$BUILD/fewmul"
[ -x "$FEWMUL" ] || { echo "mulfree_bench.sh: $FEWMUL not found (cmake -B $BUILD && cmake --build $BUILD)" >&2; exit 1; }
PY=$(command -v python3 || echo /usr/bin/python3)
RAW=$(mktemp) ERR=$(mktemp) DATA_DIR=""
trap 'rm -f "$RAW" "$ERR"; [ -z "$DATA_DIR" ] || rm -rf "$DATA_DIR"' EXIT
CONV=0
case "$ARCH" in paper-cnn|bc-cnn|conv:*) CONV=1 ;; esac
# the training split: dense networks leave MNIST's 10000 validation images out; the random
# CIFAR-10 records train on the first N of data_batch_1 (the other files hold 100 each)
SPLIT=(--valid 10000)
if [ -z "$DATA" ] && [ $CONV = 1 ]; then
  DATA_DIR=$(mktemp -d)
  "$PY" "$ROOT/bench/random_cifar.py" "$DATA_DIR" "$IMAGES" 1234 ||
    { echo "mulfree_bench.sh: cannot write the data" >&2; exit 1; }
  DATA="cifar10:$DATA_DIR"
  SPLIT=(--valid 0 --preproc unit)
elif [ -z "$DATA" ]; then
  if [ -d "$ROOT/../shared/data/mnist" ]; then DATA="mnist:$(cd "$ROOT/../shared/data/mnist" && pwd)"; else DATA="fashion"; fi
fi

# run MODE CONTENDER ROUND: one training epoch of N images; appends "mode contender round img/s kernels".
run() {
  local mode=$1 who=$2 round=$3 w=${1%+qb} exec=default env=()
  if [ "$who" != default ]; then
    exec=mulfree
    [ "$who" = "mulfree-auto" ] && env=(env -u FEWMUL_KERNELS) || env=(env "FEWMUL_KERNELS=${who#mulfree-}")
  fi
  local out rc line
  out=$("${env[@]}" "$FEWMUL" train --data "$DATA" --arch "$ARCH" --weights "$w" --qb --exec "$exec" \
        --epochs 1 --train-limit "$IMAGES" "${SPLIT[@]}" --no-eval --threads "$THREADS" --batch "$BATCH" \
        --json --quiet 2>"$ERR")
  rc=$?
  line=$(printf '%s\n' "$out" | "$PY" -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
try:
    r = json.loads(lines[-1]); print(float(r["train_images_per_s"]), r.get("kernels") or "blas")
except Exception:
    pass')
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    echo "mulfree_bench.sh: $mode $who (round $round) failed (exit $rc)" >&2; tail -n 5 "$ERR" >&2; return
  fi
  printf '%s %s %s %s\n' "$mode" "$who" "$round" "$line" >>"$RAW"
  printf '  round %d  %-10s %-16s %10.1f img/s\n' "$round" "$mode" "$who" "${line%% *}" >&2
}

CONTENDERS="default"
for k in $KERNELS; do CONTENDERS="$CONTENDERS mulfree-$k"; done
echo "mulfree_bench.sh: $ARCH, data $DATA, threads $THREADS, batch $BATCH, $IMAGES images, $REPEATS rounds," \
  "modes: $MODES; contenders: $CONTENDERS; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
for ((r = 1; r <= REPEATS; r++)); do
  for m in $MODES; do
    for who in $CONTENDERS; do run "$m" "$who" "$r"; done
  done
done

CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
GIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
"$PY" - "$RAW" "$MODES" "$CONTENDERS" "$OUT" "$DATA" "$THREADS" "$BATCH" "$IMAGES" "$REPEATS" \
  "$CPU" "$GIT" "${OPENBLAS_CORETYPE:-}" "$ARCH" <<'EOF'
import json, statistics, sys, time
raw, modes, contenders, out, data, threads, batch, images, repeats, cpu, git, coretype, arch = sys.argv[1:]
runs, kernels = {}, {}
for line in open(raw):
    mode, who, rnd, val, kern = line.split()
    runs.setdefault((mode, who), []).append(float(val))
    kernels[(mode, who)] = kern
rows = []
print("%s training, images/s (median of %s interleaved rounds), threads %s, batch %s, %s"
      % (arch, repeats, threads, batch, data))
print("%-10s %-16s %-8s %12s %16s" % ("mode", "path", "kernels", "img/s", "vs default"))
for m in modes.split():
    base = runs.get((m, "default"))
    base_med = statistics.median(base) if base else None
    for who in contenders.split():
        v = runs.get((m, who))
        med = statistics.median(v) if v else None
        ratio = med / base_med if med and base_med else None
        rows.append({"mode": m, "path": who, "kernels": kernels.get((m, who)), "images_per_s": med,
                     "over_default": ratio, "runs": v or []})
        print("%-10s %-16s %-8s %12s %16s" % (m, who, kernels.get((m, who), "-"),
              "-" if med is None else "%.0f" % med, "-" if ratio is None else "%.3f" % ratio))
if out:
    with open(out, "w") as f:
        json.dump({"benchmark": "mulfree_bench", "arch": arch, "date": time.strftime("%Y-%m-%d"), "cpu": cpu, "git": git,
                   "openblas_coretype": coretype, "data": data, "threads": int(threads),
                   "batch": int(batch), "images": int(images), "repeats": int(repeats), "rows": rows}, f, indent=1)
EOF
