#!/usr/bin/env bash
# cnn_infer_bench.sh: the deployed paper-cnn (the authors' CIFAR-10/SVHN net, 32x32x3) with binary
# weights and real activations, and fully binary (--acts binary), timed by `fewmul bench infer`
# against its fp32 yardstick (the same unpacked weights, im2col and BLAS) in one invocation, and
# against a PyTorch eval of the same network (bench/peer_torch_cnn_infer.py) in the same run,
# interleaved round by round; medians and ratios. See docs/bench.md, "Deployed paper-cnn".
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/cnn_infer_bench.sh [--build DIR] [--rounds 3] [--runs 300] [--threads 2]
                                [--images 200] [--kernels LIST] [--python PY] [--keep DIR]
                                [--out FILE]
  --build DIR     CMake build folder holding ./fewmul (default: build)
  --rounds R      rounds; each runs, per network, fewmul bench infer then the torch peer
                  (default 3)
  --runs N        batch-1 runs per variant and per peer call (default 300; fewmul's batch-256
                  runs: max(5, N/20); the peer's batch-256 calls: 5)
  --threads T     threads of the batch-256 runs, both contenders (default 2); batch 1 runs on
                  one thread in both
  --images N      training images of the short run that makes each packed file (default 200;
                  speed does not depend on the weights' values)
  --kernels LIST  fewmul variants to time (default: every variant here but ref, whose
                  convolutions take tens of ms per image, then fp32)
  --python PY     interpreter for the torch peer (default: the first of python3,
                  /usr/bin/python3 that can import torch)
  --keep DIR      keep the data, the packed files and the JSON of every run in DIR
  --out FILE      also write the results as JSON to FILE
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
ROUNDS=3
RUNS=300
THREADS=2
IMAGES=200
KERNELS=""
PY_TORCH=""
KEEP=""
OUT=""

need() { [ $# -ge 2 ] || { echo "cnn_infer_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --kernels) need "$@"; KERNELS=$2; shift 2 ;;
    --python) need "$@"; PY_TORCH=$2; shift 2 ;;
    --keep) need "$@"; KEEP=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cnn_infer_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS RUNS THREADS IMAGES; do
  case "${!v}" in ''|*[!0-9]*) echo "cnn_infer_bench.sh: --${v,,} needs a positive integer" >&2; exit 2 ;; esac
  [ "${!v}" -ge 1 ] || { echo "cnn_infer_bench.sh: --${v,,} needs a positive integer" >&2; exit 2; }
done
[ $((IMAGES % 100)) -eq 0 ] || { echo "cnn_infer_bench.sh: --images must be a multiple of 100" >&2; exit 2; }

FEWMUL="$BUILD/fewmul"
[ -x "$FEWMUL" ] || { echo "cnn_infer_bench.sh: $FEWMUL not found; build first (cmake -B build && cmake --build build)" >&2; exit 1; }
PY_JSON=$(command -v python3 || echo /usr/bin/python3)
if [ -z "$PY_TORCH" ]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then PY_TORCH=$p; break; fi
  done
fi
HAVE_TORCH=0
if [ -n "$PY_TORCH" ] && "$PY_TORCH" -c 'import torch' >/dev/null 2>&1; then
  HAVE_TORCH=1
else
  echo "cnn_infer_bench.sh: 'import torch' fails (install python3-torch); the torch column is skipped" >&2
fi
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && DIR=$(cd "$KEEP" && pwd) || exit 1; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# A CIFAR-10 binary folder of random pixels: the N training images of the short runs that
# write the packed files, and 100 test images.
mkdir -p "$DIR/cifar"
"$PY_JSON" "$ROOT/bench/random_cifar.py" "$DIR/cifar" "$IMAGES" 18 || exit 1

NETS="binary fully-binary"
for net in $NETS; do
  args=(--weights bc --qb)
  [ "$net" = fully-binary ] && args+=(--acts binary)
  echo "== $net: a short run of paper-cnn writes $net.fmp (${args[*]})" >&2
  "$FEWMUL" train --data "cifar10:$DIR/cifar" --arch paper-cnn "${args[@]}" --epochs 1 --batch 100 \
      --train-limit "$IMAGES" --valid 0 --no-eval --preproc unit --threads "$THREADS" --quiet \
      --out "$DIR/$net.fmp" >/dev/null || { echo "cnn_infer_bench.sh: training $net failed" >&2; exit 1; }
  "$FEWMUL" info "$DIR/$net.fmp" --json > "$DIR/$net.info.json" || exit 1
done
if [ -z "$KERNELS" ]; then
  KERNELS=$("$PY_JSON" -c '
import json, sys
names = json.loads(open(sys.argv[1]).read().splitlines()[-1])["kernels_available"]
print(",".join([n for n in names if n not in ("ref", "fp32")] + ["fp32"]))' "$DIR/binary.info.json") || exit 1
fi

load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo ""; }
LOADS=()
for r in $(seq 1 "$ROUNDS"); do
  for net in $NETS; do
    acts=relu; [ "$net" = fully-binary ] && acts=binary
    LOADS+=("$(load)")
    echo "== round $r/$ROUNDS, $net: fewmul bench infer --kernels $KERNELS (load $(load))" >&2
    "$FEWMUL" bench infer --model "$DIR/$net.fmp" --runs "$RUNS" --threads "$THREADS" --kernels "$KERNELS" \
        --json > "$DIR/$net.fewmul.$r.json" || { echo "cnn_infer_bench.sh: bench infer failed" >&2; exit 1; }
    if [ $HAVE_TORCH = 1 ]; then
      echo "== round $r/$ROUNDS, $net: torch peer, batch 1 on 1 thread, batch 256 on $THREADS" >&2
      "$PY_TORCH" "$ROOT/bench/peer_torch_cnn_infer.py" --acts "$acts" --batch 1 --threads 1 --runs "$RUNS" \
          > "$DIR/$net.torch1.$r.json" || { echo "cnn_infer_bench.sh: the torch peer failed" >&2; exit 1; }
      "$PY_TORCH" "$ROOT/bench/peer_torch_cnn_infer.py" --acts "$acts" --batch 256 --threads "$THREADS" \
          --runs 5 --warmup 2 > "$DIR/$net.torch256.$r.json" || { echo "cnn_infer_bench.sh: the torch peer failed" >&2; exit 1; }
    fi
  done
done
LOADS+=("$(load)")

"$PY_JSON" - "$DIR" "$ROUNDS" "$NETS" "$KERNELS" "$OUT" "$ROOT" "${LOADS[*]}" <<'EOF'
import json, os, platform, statistics, subprocess, sys
folder, rounds, nets, kernels, out, root, loads = sys.argv[1:8]
rounds, nets, kernels = int(rounds), nets.split(), kernels.split(",")
def last(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
med = lambda v: statistics.median(v) if v else None
def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
try:
    rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    rev = ""
result = {"rounds": rounds, "kernels": kernels, "cpu": cpu(), "git": rev,
          "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
          "load_1min": [float(x) for x in loads.split() if x], "nets": []}
print("paper-cnn deployed, 32x32x3; medians of %d interleaved rounds; OPENBLAS_CORETYPE=%s; 1-min load %s"
      % (rounds, result["openblas_coretype"] or "(unset)", ", ".join(loads.split())))
print("%-13s %-7s %11s %9s %13s %9s %11s %10s" % ("network", "variant", "batch-1 us", "vs fp32", "batch-256 img/s",
                                                   "vs fp32", "vs torch b1", "vs torch b256"))
for net in nets:
    info = last(os.path.join(folder, net + ".info.json"))
    runs = [last(os.path.join(folder, "%s.fewmul.%d.json" % (net, r))) for r in range(1, rounds + 1)]
    t1 = [last(os.path.join(folder, "%s.torch1.%d.json" % (net, r))) for r in range(1, rounds + 1)]
    t256 = [last(os.path.join(folder, "%s.torch256.%d.json" % (net, r))) for r in range(1, rounds + 1)]
    torch_lat = med([t["latency_us"] for t in t1 if t])
    torch_ips = med([t["images_per_s"] for t in t256 if t])
    row = {"net": net, "describe": info and info.get("describe"), "file_bytes": info and info.get("file_bytes"),
           "torch_latency_us": torch_lat, "torch_images_per_s": torch_ips,
           "torch_runs": {"batch1_us": [t and t["latency_us"] for t in t1],
                          "batch256_images_per_s": [t and t["images_per_s"] for t in t256]},
           "variants": []}
    for name in kernels:
        lat = [v["latency_us"] for r in runs if r for v in r["variants"] if v["name"] == name]
        ips = [v["images_per_s"] for r in runs if r for v in r["variants"] if v["name"] == name]
        sl = [v["latency_speedup_vs_fp32"] for r in runs if r for v in r["variants"] if v["name"] == name]
        st = [v["throughput_speedup_vs_fp32"] for r in runs if r for v in r["variants"] if v["name"] == name]
        mm = sum(v["mismatches"] for r in runs if r for v in r["variants"] if v["name"] == name)
        # the ratio to the peer, round by round (each pair ran back to back), then the median
        vt1 = [t["latency_us"] / l for t, l in zip(t1, lat) if t]
        vt256 = [i / t["images_per_s"] for t, i in zip(t256, ips) if t]
        v = {"name": name, "latency_us": med(lat), "images_per_s": med(ips),
             "latency_speedup_vs_fp32": med(sl), "throughput_speedup_vs_fp32": med(st),
             "latency_speedup_vs_torch": med(vt1), "throughput_speedup_vs_torch": med(vt256),
             "mismatches": mm, "runs": {"latency_us": lat, "images_per_s": ips}}
        row["variants"].append(v)
        cell = lambda x, f: "-" if x is None else format(x, f)
        print("%-13s %-7s %11s %8sx %15s %8sx %10sx %12sx" % (net, name, cell(v["latency_us"], ".1f"),
              cell(v["latency_speedup_vs_fp32"], ".2f"), cell(v["images_per_s"], ".0f"),
              cell(v["throughput_speedup_vs_fp32"], ".2f"), cell(v["latency_speedup_vs_torch"], ".1f"),
              cell(v["throughput_speedup_vs_torch"], ".2f")))
    print("%-13s %-7s %11s %9s %15s" % (net, "torch", "-" if torch_lat is None else "%.1f" % torch_lat, "",
                                        "-" if torch_ips is None else "%.0f" % torch_ips))
    result["nets"].append(row)
if out:
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
EOF
