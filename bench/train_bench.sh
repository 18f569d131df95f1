#!/usr/bin/env bash
# train_bench.sh: training throughput of fewmul's paper-mlp per weight mode, against a PyTorch peer
# of the same network and mode (bench/peer_torch.py) and an OpenBLAS loop of the same GEMMs
# (bench/gemm_loop.c), all measured in this one invocation, interleaved, and reported as medians
# and ratios. See docs/bench.md.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: bench/train_bench.sh [--build DIR] [--data SPEC] [--threads 2] [--repeats 3]
                            [--images 10000] [--modes "fp32 bc bc+qb tc+qb bc-det tc-det fp32+qb"]
                            [--exec default] [--warmup 5] [--out FILE] [--python PY]
  --build DIR   CMake build folder holding ./fewmul and bench/gemm_loop (default: build)
  --data SPEC   fewmul data spec (default: mnist:<repo>/../shared/data/mnist if present, else fashion)
  --threads T   threads for every contender (default 2)
  --repeats R   rounds; each round runs every contender once per mode, interleaved (default 3)
  --images N    training images per fewmul run (= N/200 timed steps for the peers) (default 10000)
  --modes LIST  weight modes, each fp32|bc|bc-det|tc|tc-det with optional +qb
  --exec LIST   fewmul's execution paths, each default|mulfree (default "default"); mulfree
                runs the modes it takes (a quantized one with +qb) and skips the others
  --warmup W    untimed steps the torch peer and the gemm loop run before timing (default 5)
  --out FILE    also write the results as JSON to FILE (default: stdout table only)
  --python PY   interpreter for the torch peer (default: the first of python3, /usr/bin/python3
                that can import torch)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
DATA=""
THREADS=2
REPEATS=3
IMAGES=10000
MODES="fp32 bc bc+qb tc+qb bc-det tc-det fp32+qb"
EXECS="default"
WARMUP=5
OUT=""
PY_TORCH=""
BATCH=200

need() { [ $# -ge 2 ] || { echo "train_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --repeats) need "$@"; REPEATS=$2; shift 2 ;;
    --images) need "$@"; IMAGES=$2; shift 2 ;;
    --modes) need "$@"; MODES=$2; shift 2 ;;
    --exec) need "$@"; EXECS=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --python) need "$@"; PY_TORCH=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "train_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

for v in THREADS REPEATS IMAGES WARMUP; do
  case "${!v}" in ''|*[!0-9]*) echo "train_bench.sh: --${v,,} needs a non-negative integer" >&2; exit 2 ;; esac
done
if [ "$THREADS" -lt 1 ] || [ "$REPEATS" -lt 1 ] || [ "$IMAGES" -lt "$BATCH" ]; then
  echo "train_bench.sh: need --threads >= 1, --repeats >= 1, --images >= $BATCH" >&2; exit 2
fi
STEPS=$((IMAGES / BATCH))
for m in $MODES; do
  case "$m" in
    fp32|bc|bc-det|tc|tc-det|fp32+qb|bc+qb|bc-det+qb|tc+qb|tc-det+qb) ;;
    *) echo "train_bench.sh: unknown mode '$m'" >&2; exit 2 ;;
  esac
done
if [ -z "$DATA" ]; then
  if [ -d "$ROOT/../shared/data/mnist" ]; then
    DATA="mnist:$(cd "$ROOT/../shared/data/mnist" && pwd)"
  else
    DATA="fashion"
  fi
fi

# Any python3 parses JSON; the torch peer needs one that sees torch (Debian's python3-torch lives
# in /usr/lib/python3/dist-packages, which a pyenv python3 on PATH does not see).
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
  echo "train_bench.sh: 'import torch' fails (install python3-torch); the torch column is skipped" >&2
fi
FEWMUL="$BUILD/fewmul"
HAVE_FEWMUL=1
if [ ! -x "$FEWMUL" ]; then
  echo "train_bench.sh: $FEWMUL not found (build it: cmake -B $BUILD && cmake --build $BUILD); its column is skipped" >&2
  HAVE_FEWMUL=0
fi
GEMM="$BUILD/bench/gemm_loop"
HAVE_GEMM=1
if [ ! -x "$GEMM" ]; then
  echo "train_bench.sh: $GEMM not found (needs OpenBLAS at configure time); its column is skipped" >&2
  HAVE_GEMM=0
fi

if [ $HAVE_FEWMUL = 0 ] && [ $HAVE_TORCH = 0 ] && [ $HAVE_GEMM = 0 ]; then
  echo "train_bench.sh: nothing to run" >&2; exit 1
fi

RAW=$(mktemp) ERR=$(mktemp)
trap 'rm -f "$RAW" "$ERR"' EXIT

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

# record WHO MODE ROUND FIELD CMD...: runs CMD, appends "who mode round value" to $RAW.
record() {
  local who=$1 mode=$2 round=$3 field=$4 out val
  shift 4
  out=$("$@" 2>"$ERR")
  local rc=$?
  val=$(printf '%s\n' "$out" | last_json_field "$field")
  if [ $rc -ne 0 ] || [ -z "$val" ]; then
    echo "train_bench.sh: $who $mode (round $round) failed (exit $rc): $*" >&2
    tail -n 5 "$ERR" >&2
    return
  fi
  printf '%s %s %s %s\n' "$who" "$mode" "$round" "$val" >>"$RAW"
  printf '  round %d  %-10s %-14s %10.1f img/s\n' "$round" "$mode" "$who" "$val" >&2
}

echo "train_bench.sh: data $DATA, threads $THREADS, batch $BATCH, $IMAGES images ($STEPS steps)," \
  "$REPEATS rounds, modes: $MODES" >&2
for ((r = 1; r <= REPEATS; r++)); do
  if [ $HAVE_GEMM = 1 ]; then
    record gemm all "$r" images_per_s "$GEMM" --batch "$BATCH" --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP"
  fi
  for m in $MODES; do
    w=${m%+qb}
    qb=()
    [ "$w" != "$m" ] && qb=(--qb)
    if [ $HAVE_FEWMUL = 1 ]; then
      for x in $EXECS; do
        who=fewmul
        if [ "$x" = mulfree ]; then
          case "$m" in fp32*) continue ;; *+qb) ;; *) continue ;; esac # a quantized mode with +qb
          who=fewmul-mulfree
        fi
        record "$who" "$m" "$r" train_images_per_s "$FEWMUL" train --data "$DATA" --arch paper-mlp --weights "$w" \
          "${qb[@]}" --epochs 1 --train-limit "$IMAGES" --valid 10000 --no-eval --threads "$THREADS" \
          --batch "$BATCH" --json --quiet --exec "$x"
      done
    fi
    if [ $HAVE_TORCH = 1 ]; then
      record torch "$m" "$r" images_per_s "$PY_TORCH" "$ROOT/bench/peer_torch.py" --mode "$w" "${qb[@]}" --threads "$THREADS" \
        --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --data "$DATA" --images "$IMAGES"
    fi
  done
done

TORCH_VERSION=""
[ $HAVE_TORCH = 1 ] && TORCH_VERSION=$("$PY_TORCH" -c 'import torch; print(torch.__version__)' 2>/dev/null)
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
GIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)

# Medians, ratios, table on stdout, JSON to --out.
"$PY_JSON" - "$RAW" "$MODES" "$OUT" "$DATA" "$THREADS" "$BATCH" "$IMAGES" "$REPEATS" "$WARMUP" \
  "$HAVE_FEWMUL" "$HAVE_TORCH" "$HAVE_GEMM" "$TORCH_VERSION" "$CPU" "$GIT" "${OPENBLAS_CORETYPE:-}" <<'EOF'
import json, statistics, sys, time
(raw, modes, out, data, threads, batch, images, repeats, warmup,
 have_f, have_t, have_g, torch_v, cpu, git, coretype) = sys.argv[1:]
runs = {}
for line in open(raw):
    who, mode, rnd, val = line.split()
    runs.setdefault((who, mode), []).append(float(val))
def med(who, mode):
    v = runs.get((who, mode))
    return statistics.median(v) if v else None
def ratio(a, b):
    return a / b if a is not None and b else None
gemm = med("gemm", "all")
rows = []
for m in modes.split():
    f, t, x = med("fewmul", m), med("torch", m), med("fewmul-mulfree", m)
    rows.append({"mode": m, "fewmul_images_per_s": f, "torch_images_per_s": t,
                 "fewmul_over_torch": ratio(f, t), "gemm_loop_images_per_s": gemm,
                 "fewmul_over_gemm_loop": ratio(f, gemm),
                 "fewmul_mulfree_images_per_s": x, "fewmul_mulfree_over_torch": ratio(x, t),
                 "runs": {"fewmul": runs.get(("fewmul", m), []), "torch": runs.get(("torch", m), []),
                          "fewmul_mulfree": runs.get(("fewmul-mulfree", m), [])}})
def cell(x, fmt, w):
    return ("-" if x is None else format(x, fmt)).rjust(w)
print("paper-mlp training, images/s (median of %s interleaved rounds), threads %s, batch %s, %s"
      % (repeats, threads, batch, data))
print("%-10s %12s %12s %13s %12s %14s" % ("mode", "fewmul", "torch", "fewmul/torch", "gemm-loop",
                                          "fewmul/gemm"))
for r in rows:
    print("%-10s %s %s %s %s %s" % (r["mode"], cell(r["fewmul_images_per_s"], ".0f", 12),
          cell(r["torch_images_per_s"], ".0f", 12), cell(r["fewmul_over_torch"], ".3f", 13),
          cell(r["gemm_loop_images_per_s"], ".0f", 12), cell(r["fewmul_over_gemm_loop"], ".3f", 14)))
for r in rows:
    if r["fewmul_mulfree_images_per_s"] is not None:
        print("%-10s --exec mulfree: %s img/s, %s of torch" % (r["mode"],
              cell(r["fewmul_mulfree_images_per_s"], ".0f", 0), cell(r["fewmul_mulfree_over_torch"], ".3f", 0)))
notes = []
if have_f != "1": notes.append("fewmul not run (binary missing)")
if have_t != "1": notes.append("torch peer not run (import torch failed)")
if have_g != "1": notes.append("gemm loop not run (binary missing)")
for n in notes: print("note:", n)
if out:
    doc = {"benchmark": "train_bench", "arch": "paper-mlp", "data": data, "threads": int(threads),
           "batch": int(batch), "images": int(images), "repeats": int(repeats),
           "peer_warmup_steps": int(warmup), "gemm_loop_runs": runs.get(("gemm", "all"), []),
           "modes": rows, "notes": notes,
           "env": {"cpu": cpu, "torch": torch_v or None, "git": git,
                   "OPENBLAS_CORETYPE": coretype or None,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
EOF
