#!/usr/bin/env bash
# cnn_bench.sh: training throughput of fewmul's paper-cnn (the authors' CIFAR-10/SVHN net) per
# weight mode, against a PyTorch peer of the same network and mode (bench/peer_torch_cnn.py),
# both measured in this one invocation, interleaved, and reported as medians and ratios, with
# the per-epoch time on 45,000 CIFAR-sized images that each implies, the paper's 300 epochs,
# and each run's peak resident memory. fewmul runs on each of its execution paths (--exec:
# the float products, and the multiplication-free ones of --exec mulfree). See docs/bench.md,
# "Convolutional training (paper-cnn)".
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/cnn_bench.sh [--build DIR] [--threads 2] [--repeats 3] [--images 1000]
                          [--modes "fp32 bc+qb tc+qb"] [--exec "default mulfree"] [--warmup 2] [--zca MODE]
                          [--peer-opts "..."] [--out FILE] [--python PY] [--keep-data DIR]
  --build DIR      CMake build folder holding ./fewmul (default: build)
  --threads T      threads for both contenders (default 2)
  --repeats R      rounds; each round runs both contenders once per mode, interleaved (default 3)
  --images N       training images per fewmul run, a multiple of 100 (= N/100 timed steps for
                   the peer) (default 1000)
  --modes LIST     weight modes, each fp32|bc|tc with optional +qb (default "fp32 bc+qb tc+qb")
  --exec LIST      fewmul's execution paths, each default|mulfree (default "default mulfree");
                   mulfree runs the modes it takes (bc or tc with +qb) and skips the others
  --warmup W       untimed steps the torch peer runs before timing (default 2)
  --zca MODE       also time fewmul in MODE with its cifar10 default preprocessing (GCN + ZCA)
                   once, in round 1, reported apart; "none" skips it (default bc+qb)
  --peer-opts S    extra options for the peer, e.g. "--malloc system" or "--layout nchw"
  --out FILE       also write the results as JSON to FILE (default: stdout table only)
  --python PY      interpreter for the torch peer (default: the first of python3,
                   /usr/bin/python3 that can import torch)
  --keep-data DIR  write the generated CIFAR-10 folder to DIR and keep it (default: a temp dir)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
THREADS=2
REPEATS=3
IMAGES=1000
MODES="fp32 bc+qb tc+qb"
EXECS="default mulfree"
WARMUP=2
ZCA="bc+qb"
PEER_OPTS=""
OUT=""
PY_TORCH=""
KEEP=""
BATCH=100
EPOCH_IMAGES=45000

need() { [ $# -ge 2 ] || { echo "cnn_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --repeats) need "$@"; REPEATS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --modes) need "$@"; MODES=$2; shift 2 ;;
    --exec) need "$@"; EXECS=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --zca) need "$@"; ZCA=$2; shift 2 ;;
    --peer-opts) need "$@"; PEER_OPTS=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --python) need "$@"; PY_TORCH=$2; shift 2 ;;
    --keep-data) need "$@"; KEEP=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cnn_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

for v in THREADS REPEATS IMAGES WARMUP; do
  case "${!v}" in ''|*[!0-9]*) echo "cnn_bench.sh: --${v,,} needs a non-negative integer" >&2; exit 2 ;; esac
done
if [ "$THREADS" -lt 1 ] || [ "$REPEATS" -lt 1 ] || [ "$IMAGES" -lt "$BATCH" ] || [ $((IMAGES % BATCH)) -ne 0 ]; then
  echo "cnn_bench.sh: need --threads >= 1, --repeats >= 1, --images a multiple of $BATCH" >&2; exit 2
fi
STEPS=$((IMAGES / BATCH))
[ "$ZCA" = "none" ] && ZCA=""
for m in $MODES $ZCA; do
  case "$m" in
    fp32|bc|tc|fp32+qb|bc+qb|tc+qb) ;;
    *) echo "cnn_bench.sh: unknown mode '$m'" >&2; exit 2 ;;
  esac
done
for x in $EXECS; do
  case "$x" in
    default|mulfree) ;;
    *) echo "cnn_bench.sh: unknown execution path '$x' (expected default or mulfree)" >&2; exit 2 ;;
  esac
done
read -r -a PEER_EXTRA <<<"$PEER_OPTS"
# Peak resident memory of each run, where GNU time is installed (Debian's package time).
TIME_RSS=()
[ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1 && TIME_RSS=(/usr/bin/time -f %M -o)

# Any python3 parses JSON and writes the data; the torch peer needs one that sees torch
# (Debian's python3-torch lives in /usr/lib/python3/dist-packages).
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
  echo "cnn_bench.sh: 'import torch' fails (install python3-torch); the torch column is skipped" >&2
fi
FEWMUL="$BUILD/fewmul"
HAVE_FEWMUL=1
if [ ! -x "$FEWMUL" ]; then
  echo "cnn_bench.sh: $FEWMUL not found (build it: cmake -B $BUILD && cmake --build $BUILD); its column is skipped" >&2
  HAVE_FEWMUL=0
fi
if [ $HAVE_FEWMUL = 0 ] && [ $HAVE_TORCH = 0 ]; then
  echo "cnn_bench.sh: nothing to run" >&2; exit 1
fi

RAW=$(mktemp) ERR=$(mktemp) RSS=$(mktemp)
if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP" && DATA_DIR=$(cd "$KEEP" && pwd) || exit 1
  trap 'rm -f "$RAW" "$ERR" "$RSS"' EXIT
else
  DATA_DIR=$(mktemp -d)
  trap 'rm -f "$RAW" "$ERR" "$RSS"; rm -rf "$DATA_DIR"' EXIT
fi

# The CIFAR-10 binary version with random pixels (bench/random_cifar.py): data_batch_1.bin
# holds the N training images both contenders use (--valid 0 and --no-eval ignore the rest).
"$PY_JSON" "$ROOT/bench/random_cifar.py" "$DATA_DIR" "$IMAGES" 1234 ||
  { echo "cnn_bench.sh: cannot write the data" >&2; exit 1; }
DATA="cifar10:$DATA_DIR"

# last_json_field FIELD: reads a program's stdout, prints FIELD of its last JSON line (or nothing).
last_json_field() {
  "$PY_JSON" -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
try:
    print(float(json.loads(lines[-1])[sys.argv[1]]))
except Exception:
    pass' "$1"
}

# record WHO MODE ROUND FIELD CMD...: runs CMD, appends "who mode round value rss_kb" to $RAW
# (rss_kb: the run's peak resident memory, - where GNU time is missing).
record() {
  local who=$1 mode=$2 round=$3 field=$4 out val rss=-
  shift 4
  if [ ${#TIME_RSS[@]} -gt 0 ]; then
    out=$("${TIME_RSS[@]}" "$RSS" "$@" 2>"$ERR")
  else
    out=$("$@" 2>"$ERR")
  fi
  local rc=$?
  val=$(printf '%s\n' "$out" | last_json_field "$field")
  if [ $rc -ne 0 ] || [ -z "$val" ]; then
    echo "cnn_bench.sh: $who $mode (round $round) failed (exit $rc): $*" >&2
    tail -n 5 "$ERR" >&2
    return
  fi
  [ ${#TIME_RSS[@]} -gt 0 ] && rss=$(tail -n 1 "$RSS")
  printf '%s %s %s %s %s\n' "$who" "$mode" "$round" "$val" "$rss" >>"$RAW"
  printf '  round %d  %-10s %-15s %8.2f img/s\n' "$round" "$mode" "$who" "$val" >&2
}

# run_fewmul WHO MODE ROUND PREPROC [EXEC]
run_fewmul() {
  local w=${2%+qb} qb=()
  [ "$w" != "$2" ] && qb=(--qb)
  record "$1" "$2" "$3" train_images_per_s env OMP_WAIT_POLICY=PASSIVE "$FEWMUL" train --data "$DATA" \
    --arch paper-cnn --weights "$w" "${qb[@]}" --batch "$BATCH" --epochs 1 --valid 0 --no-eval \
    --preproc "$4" --train-limit "$IMAGES" --threads "$THREADS" --quiet --json --exec "${5:-default}"
}

echo "cnn_bench.sh: paper-cnn, random CIFAR-10-format data ($IMAGES images), threads $THREADS," \
  "batch $BATCH, $STEPS steps per run, $REPEATS rounds, modes: $MODES, fewmul: $EXECS${ZCA:+; gcn-zca once: $ZCA}" >&2
for ((r = 1; r <= REPEATS; r++)); do
  for m in $MODES; do
    if [ $HAVE_FEWMUL = 1 ]; then
      for x in $EXECS; do
        case "$x:$m" in
          default:*) run_fewmul fewmul "$m" "$r" unit ;;
          mulfree:bc+qb|mulfree:tc+qb) run_fewmul fewmul-mulfree "$m" "$r" unit mulfree ;;
        esac
      done
    fi
    if [ $HAVE_TORCH = 1 ]; then
      w=${m%+qb}
      qb=()
      [ "$w" != "$m" ] && qb=(--qb)
      record torch "$m" "$r" images_per_s "$PY_TORCH" "$ROOT/bench/peer_torch_cnn.py" --mode "$w" "${qb[@]}" \
        --threads "$THREADS" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --data "$DATA" \
        --images "$IMAGES" "${PEER_EXTRA[@]}"
    fi
  done
  if [ "$r" = 1 ] && [ -n "$ZCA" ] && [ $HAVE_FEWMUL = 1 ]; then
    run_fewmul fewmul-zca "$ZCA" "$r" gcn-zca
  fi
done

# The peer's backend: torch version, oneDNN (mkldnn) availability, ATen's and oneDNN's ISA.
TORCH_INFO="{}"
if [ $HAVE_TORCH = 1 ]; then
  TORCH_INFO=$(DNNL_VERBOSE=1 OMP_NUM_THREADS=1 "$PY_TORCH" -c '
import json, torch, torch.nn.functional as F
F.conv2d(torch.rand(16, 8, 8, 8), torch.rand(8, 8, 3, 3))
cfg = torch.__config__.show()
pick = lambda key: next((l.split(":", 1)[1].strip() for l in cfg.splitlines() if key in l), None)
print(json.dumps({"version": torch.__version__, "mkldnn_available": torch.backends.mkldnn.is_available(),
                  "mkldnn_enabled": torch.backends.mkldnn.enabled,
                  "onednn": next((l.strip(" -") for l in cfg.splitlines() if "MKL-DNN" in l), None),
                  "aten_cpu_capability": pick("CPU capability usage"),
                  "blas": "BLAS_INFO=" + cfg.split("BLAS_INFO=", 1)[1].split(",", 1)[0] if "BLAS_INFO=" in cfg else None}))' \
    2>/dev/null | "$PY_JSON" -c '
import json, sys
lines = sys.stdin.read().splitlines()
info = json.loads([l for l in lines if l.startswith("{")][-1])
isa = [l.split("isa:", 1)[1].strip() for l in lines if "info,cpu,isa:" in l.replace(" ", "")]
impl = sorted({l.split(",")[4] for l in lines if ",exec,cpu,convolution," in l and len(l.split(",")) > 4})
info["onednn_isa"] = isa[0] if isa else None
info["onednn_conv_impl"] = impl
print(json.dumps(info))' 2>/dev/null || echo "{}")
fi
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
GIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -1)
[ -n "$DIRTY" ] && GIT="$GIT+dirty"

# Medians, ratios, per-epoch times, peak memory, table on stdout, JSON to --out.
"$PY_JSON" - "$RAW" "$MODES" "$OUT" "$THREADS" "$BATCH" "$IMAGES" "$REPEATS" "$WARMUP" \
  "$HAVE_FEWMUL" "$HAVE_TORCH" "$CPU" "$GIT" "${OPENBLAS_CORETYPE:-}" "$TORCH_INFO" "$ZCA" \
  "$EPOCH_IMAGES" "$PEER_OPTS" "${OMP_WAIT_POLICY:-}" "$EXECS" <<'EOF'
import json, statistics, sys, time
(raw, modes, out, threads, batch, images, repeats, warmup, have_f, have_t, cpu, git, coretype,
 torch_info, zca, epoch_images, peer_opts, omp_wait, execs) = sys.argv[1:]
epoch_images = int(epoch_images)
PAPER_EPOCHS = 300
torch_info = json.loads(torch_info or "{}")
runs, rss, by_round = {}, {}, {}
for line in open(raw):
    who, mode, rnd, val, kb = line.split()
    runs.setdefault((who, mode), []).append(float(val))
    if kb != "-":
        rss.setdefault((who, mode), []).append(int(kb) / 1024.0)
    by_round[(who, mode, int(rnd))] = float(val)
def paired(who, m, peer="torch"):
    """who/peer of each round where both ran: the two ran back to back."""
    return [by_round[(who, m, r)] / by_round[(peer, m, r)] for r in range(1, int(repeats) + 1)
            if (who, m, r) in by_round and by_round.get((peer, m, r))]
def med(who, mode, table=runs):
    v = table.get((who, mode))
    return statistics.median(v) if v else None
def ratio(a, b):
    return a / b if a is not None and b else None
def epoch(v):
    return epoch_images / v if v else None
names = {"fewmul": "fewmul", "fewmul-mulfree": "fewmul mulfree", "torch": "torch"}
rows = []
for m in modes.split():
    t = med("torch", m)
    row = {"mode": m, "contenders": []}
    for who in ("fewmul", "fewmul-mulfree", "torch"):
        v = med(who, m)
        if v is None:
            continue
        pr = paired(who, m) if who != "torch" else []
        row["contenders"].append({
            "who": who, "images_per_s": v, "over_torch": ratio(v, t) if who != "torch" else None,
            "over_torch_per_round": pr, "over_torch_paired_median": statistics.median(pr) if pr else None,
            "epoch_s": epoch(v), "paper_300_epochs_h": epoch(v) * PAPER_EPOCHS / 3600.0,
            "peak_rss_mb": med(who, m, rss), "runs": runs[(who, m)], "peak_rss_mb_runs": rss.get((who, m), [])})
    pm = paired("fewmul-mulfree", m, "fewmul")
    row["mulfree_over_default"] = ratio(med("fewmul-mulfree", m), med("fewmul", m))
    row["mulfree_over_default_paired_median"] = statistics.median(pm) if pm else None
    rows.append(row)
zrow = None
if zca and ("fewmul-zca", zca) in runs:
    z = med("fewmul-zca", zca)
    zrow = {"mode": zca, "preproc": "gcn-zca", "fewmul_images_per_s": z, "runs": runs[("fewmul-zca", zca)],
            "over_unit_fewmul": ratio(z, med("fewmul", zca)), "over_torch": ratio(z, med("torch", zca)),
            "fewmul_epoch_s": epoch(z)}
def cell(x, fmt, w):
    return ("-" if x is None else format(x, fmt)).rjust(w)
def mins(s):
    return None if s is None else s / 60.0
print("paper-cnn training, images/s (median of %s interleaved rounds), threads %s, batch %s, "
      "%s images per run, --preproc unit; epoch = %d images" % (repeats, threads, batch, images, epoch_images))
print("%-7s %-15s %9s %9s %9s %10s %10s %9s" % ("mode", "contender", "img/s", "vs torch", "paired",
                                               "min/epoch", "300 ep. h", "peak MB"))
for r in rows:
    for c in r["contenders"]:
        print("%-7s %-15s %s %s %s %s %s %s" % (r["mode"], names[c["who"]], cell(c["images_per_s"], ".1f", 9),
              cell(c["over_torch"], ".3f", 9), cell(c["over_torch_paired_median"], ".3f", 9),
              cell(mins(c["epoch_s"]), ".2f", 10), cell(c["paper_300_epochs_h"], ".1f", 10),
              cell(c["peak_rss_mb"], ".0f", 9)))
    if r["mulfree_over_default"] is not None:
        print("%-7s mulfree/default %s (paired %s)" % (r["mode"], cell(r["mulfree_over_default"], ".3f", 0),
              cell(r["mulfree_over_default_paired_median"], ".3f", 0)))
print("(vs torch: ratio of the medians; paired: median over rounds of the ratio in the same round; "
      "300 ep. h: the paper's 300 epochs of training steps; peak MB: median peak resident memory)")
if zrow:
    print("fewmul %s with --preproc gcn-zca (%d run%s): %s img/s, %s of its unit run, %s of torch, "
          "%s min/epoch" % (zca, len(zrow["runs"]), "" if len(zrow["runs"]) == 1 else "s",
                            cell(zrow["fewmul_images_per_s"], ".1f", 0), cell(zrow["over_unit_fewmul"], ".3f", 0),
                            cell(zrow["over_torch"], ".3f", 0), cell(mins(zrow["fewmul_epoch_s"]), ".1f", 0)))
notes = []
if have_f != "1": notes.append("fewmul not run (binary missing)")
if have_t != "1": notes.append("torch peer not run (import torch failed)")
if not rss: notes.append("peak memory not measured (GNU time, /usr/bin/time, missing)")
for n in notes: print("note:", n)
ti = torch_info
if ti:
    print("torch %s: oneDNN %s (%s), ISA %s, conv %s; ATen %s; %s; OPENBLAS_CORETYPE=%s" % (
        ti.get("version"), "available" if ti.get("mkldnn_available") else "NOT available",
        ti.get("onednn"), ti.get("onednn_isa"), ",".join(ti.get("onednn_conv_impl") or []) or "?",
        ti.get("aten_cpu_capability"), ti.get("blas"), coretype or "(unset)"))
if out:
    doc = {"benchmark": "cnn_bench", "arch": "paper-cnn", "data": "random CIFAR-10 binary records",
           "preproc": "unit", "threads": int(threads), "batch": int(batch), "images": int(images),
           "repeats": int(repeats), "peer_warmup_steps": int(warmup), "peer_opts": peer_opts,
           "fewmul_exec": execs.split(), "epoch_images": epoch_images, "modes": rows, "gcn_zca": zrow,
           "notes": notes,
           "env": {"cpu": cpu, "git": git, "OPENBLAS_CORETYPE": coretype or None,
                   "OMP_WAIT_POLICY": omp_wait or None, "fewmul_OMP_WAIT_POLICY": "PASSIVE",
                   "torch": torch_info or None, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
EOF
