#!/usr/bin/env bash
# mpi_bench.sh: data-parallel training throughput of `fewmul train` on MPI. In one invocation,
# interleaved round by round, it runs the same training (paper-mlp bc+qb by default) as one
# process with all the threads, one process with one thread, and N ranks of one thread each
# (mpirun), for each gradient exchange (none, int8, pow2), and reports the median images/s,
# each as a ratio to the one-process run of the same round, and the bytes each rank sends to
# the others per training step, from the run's energy ledger (its network level). See
# docs/bench.md and docs/distributed.md.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/mpi_bench.sh [--build DIR] [--data SPEC] [--ranks 2] [--repeats 3] [--images 10000]
                          [--arch paper-mlp] [--mode "--weights bc --qb"] [--out FILE]
  --build DIR   CMake build folder holding ./fewmul built with MPI (default: build)
  --data SPEC   fewmul data spec (default: mnist:<repo>/../shared/data/mnist if present, else fashion)
  --ranks N     ranks of the data-parallel runs (default 2)
  --repeats R   rounds; each round runs every contender once, interleaved (default 3)
  --images N    training images per run, one epoch without evaluation (default 10000)
  --arch A      architecture (default paper-mlp)
  --mode OPTS   weight options (default "--weights bc --qb")
  --out FILE    also write the results as JSON to FILE
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
DATA=""
RANKS=2
REPEATS=3
IMAGES=10000
ARCH=paper-mlp
MODE="--weights bc --qb"
OUT=""
need() { [ $# -ge 2 ] || { echo "mpi_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --ranks) need "$@"; RANKS=$2; shift 2 ;;
    --repeats) need "$@"; REPEATS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --arch) need "$@"; ARCH=$2; shift 2 ;;
    --mode) need "$@"; MODE=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "mpi_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in RANKS REPEATS IMAGES; do
  case "${!v}" in ''|*[!0-9]*) echo "mpi_bench.sh: --${v,,} needs a positive integer" >&2; exit 2 ;; esac
done
[ "$RANKS" -ge 2 ] && [ "$REPEATS" -ge 1 ] || { echo "mpi_bench.sh: need --ranks >= 2, --repeats >= 1" >&2; exit 2; }
FEWMUL="$BUILD/fewmul"
[ -x "$FEWMUL" ] || { echo "mpi_bench.sh: $FEWMUL not found; build first" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "mpi_bench.sh: mpirun not found (Debian: openmpi-bin)" >&2; exit 2; }
if [ -z "$DATA" ]; then
  if [ -d "$ROOT/../shared/data/mnist" ]; then DATA="mnist:$(cd "$ROOT/../shared/data/mnist" && pwd)"; else DATA=fashion; fi
fi
CORES=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2206
mode=($MODE)
common=(train --data "$DATA" --arch "$ARCH" "${mode[@]}" --epochs 1 --train-limit "$IMAGES" --no-eval
        --batch 200 --quiet --json --ledger)
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$RANKS")

# contender NAME COMMAND...: one run, its --json result kept as $tmp/NAME.ROUND
one_run() {
  local name=$1 round=$2
  shift 2
  if ! "$@" >"$tmp/$name.$round" 2>"$tmp/$name.$round.err"; then
    echo "mpi_bench.sh: $name failed:" >&2
    head -n 5 "$tmp/$name.$round.err" >&2
    exit 1
  fi
}

names="one_process_${CORES}t one_process_1t ranks_none ranks_int8 ranks_pow2"
for r in $(seq "$REPEATS"); do
  echo "round $r/$REPEATS" >&2
  one_run "one_process_${CORES}t" "$r" "$FEWMUL" "${common[@]}" --threads "$CORES"
  one_run one_process_1t "$r" "$FEWMUL" "${common[@]}" --threads 1
  for c in none int8 pow2; do
    one_run "ranks_$c" "$r" "${mpi[@]}" "$FEWMUL" "${common[@]}" --threads 1 --compress "$c"
  done
done

python3 - "$tmp" "$REPEATS" "$RANKS" "$CORES" "$IMAGES" "$ARCH" "$MODE" "$OUT" $names <<'EOF'
import json, statistics, sys
tmp, repeats, ranks, cores, images, arch, mode, out = sys.argv[1:9]
names = sys.argv[9:]
repeats, ranks, cores, images = int(repeats), int(ranks), int(cores), int(images)
steps = (images + 199) // 200
base = names[0]
rows = []
for name in names:
    runs = [json.loads(open("%s/%s.%d" % (tmp, name, r)).read()) for r in range(1, repeats + 1)]
    ref = [json.loads(open("%s/%s.%d" % (tmp, base, r)).read()) for r in range(1, repeats + 1)]
    ips = [x["train_images_per_s"] for x in runs]
    ratio = [x["train_images_per_s"] / y["train_images_per_s"] for x, y in zip(runs, ref)]
    led = runs[0]["ledger"]
    total = led["total"]
    sent = total["written_bytes"].get("network", 0)
    # the training steps alone: the final batch-norm recomputation (eval) runs on every rank
    train = [led["phases"][p] for p in ("forward", "backward", "update") if p in led["phases"]]
    grad = sum(l["phases"]["update"]["written_bytes"].get("network", 0)
               for l in runs[0]["ledger"]["layers"] if "update" in l["phases"])
    nranks = runs[0].get("ranks", 1)
    rows.append({"contender": name, "ranks": nranks, "threads_per_rank": runs[0]["threads"],
                 "images_per_s_median": statistics.median(ips), "images_per_s": ips,
                 "ratio_to_%s_median" % base: statistics.median(ratio),
                 "bytes_sent_per_step_per_rank": sent / steps / nranks if nranks > 1 else 0,
                 "bytes_sent_per_step_all_ranks": sent / steps if nranks > 1 else 0,
                 "network_j_per_step": total.get("network_cost", 0) * 1e-12 / steps,
                 "train_compute_j_per_step": sum(p.get("compute_j", 0) for p in train) / steps,
                 "train_communication_j_per_step":
                     sum(p.get("communication_j", 0) for p in train) / steps,
                 "test_error_pct": runs[0]["test_error_pct"]})
print("fewmul train %s %s, %d images (%d steps of 200), %d rounds interleaved, %d cores"
      % (arch, mode, images, steps, repeats, cores))
print("%-16s %5s %7s %10s %7s %15s %13s %13s %13s" % (
    "contender", "ranks", "threads", "images/s", "ratio", "sent/step/rank", "network/step",
    "compute/step", "comm./step"))
for r in rows:
    print("%-16s %5d %7d %10.0f %7.3f %15s %13s %10.3g mJ %10.3g mJ" % (
        r["contender"], r["ranks"], r["threads_per_rank"], r["images_per_s_median"],
        r["ratio_to_%s_median" % base],
        "%.0f B" % r["bytes_sent_per_step_per_rank"] if r["ranks"] > 1 else "-",
        "%.3g uJ" % (r["network_j_per_step"] * 1e6) if r["ranks"] > 1 else "-",
        r["train_compute_j_per_step"] * 1e3, r["train_communication_j_per_step"] * 1e3))
print("(ratio: median over rounds of images/s against %s in the same round; energies: the\n"
      " ledger's training steps, all ranks, horowitz45)" % base)
if out:
    json.dump({"arch": arch, "mode": mode, "images": images, "steps": steps, "repeats": repeats,
               "cores": cores, "rows": rows}, open(out, "w"), indent=1)
EOF
