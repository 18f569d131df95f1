#!/usr/bin/env bash
# python_bench.sh: predicting from Python (fewmul.PackedModel.predict over
# libfewmul.so) against `fewmul infer`, on the same packed file and the same
# 10,000 test images. Each of --runs rounds runs both, interleaved, and the
# medians are compared: the prediction time alone (infer's "seconds", the sum
# of its fm_deploy_predict calls of --batch images; Python the same calls in
# the same batches, and also the whole set in one call) and the wall time of
# the whole process (start, loading the model and the data, predicting).
# The Python layer adds a few conversions per call, so the target is a ratio
# within 1.10. See docs/bench.md.
set -u -o pipefail

usage() {
  cat <<'EOF2'
usage: bench/python_bench.sh [--build DIR] [--data SPEC] [--model FILE] [--runs 5]
                             [--batch 256] [--threads T] [--python PY]
  --build DIR   CMake build folder holding ./fewmul and libfewmul.so (default: build)
  --data SPEC   fashion, mnist:DIR or idx:DIR (default: mnist:<repo>/../shared/data/mnist if
                present, else fashion)
  --model FILE  packed model (default: paper-mlp BC+QB trained one epoch here, written with --out)
  --runs R      interleaved rounds (default 5)
  --batch B     images per predict call, as fewmul infer --batch (default 256)
  --threads T   worker threads of both (default: all cores)
  --python PY   a python3 with cffi and numpy (default: python3, else /usr/bin/python3)
EOF2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build" DATA="" MODEL="" RUNS=5 BATCH=256 THREADS=0 PY=""
need() { [ $# -ge 2 ] || { echo "python_bench.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --data) need "$@"; DATA=$2; shift 2 ;;
    --model) need "$@"; MODEL=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --batch) need "$@"; BATCH=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --python) need "$@"; PY=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "python_bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
FEWMUL="$BUILD/fewmul"
LIB="$BUILD/libfewmul.so"
[ -x "$FEWMUL" ] && [ -e "$LIB" ] || { echo "python_bench.sh: build $BUILD first (fewmul, libfewmul.so)" >&2; exit 1; }
if [ -z "$DATA" ]; then
  DATA=fashion
  [ -r "$ROOT/../shared/data/mnist/t10k-images-idx3-ubyte.gz" ] && DATA="mnist:$ROOT/../shared/data/mnist"
fi
if [ -z "$PY" ]; then
  for p in python3 /usr/bin/python3; do
    "$p" -c 'import cffi, numpy' 2>/dev/null && { PY=$p; break; }
  done
  [ -n "$PY" ] || { echo "python_bench.sh: no python3 with cffi and numpy" >&2; exit 1; }
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$MODEL" ]; then
  MODEL="$TMP/bench.fmp"
  "$FEWMUL" train --data "$DATA" --weights bc --qb --epochs 1 --out "$MODEL" --quiet >/dev/null ||
    { echo "python_bench.sh: training the model failed" >&2; exit 1; }
fi
threads_flag=()
[ "$THREADS" -gt 0 ] && threads_flag=(--threads "$THREADS")

cat >"$TMP/predict.py" <<'PY'
import json, os, sys, time
import fewmul
model_path, spec, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = fewmul.PackedModel.load(model_path)
# the test set alone, as fewmul infer reads it (the train set is not needed)
folder = "/usr/share/datasets/fashion-mnist" if spec == "fashion" else spec.split(":", 1)[1]
names = os.listdir(folder)
def find(stem):
    return os.path.join(folder, next(n for n in sorted(names)
                                     if n.replace(".", "-", 1).startswith(stem)))
x, y = fewmul.read_idx(find("t10k-images-idx3"), find("t10k-labels-idx1"))
seconds, wrong = 0.0, 0
for first in range(0, len(x), batch):
    t = time.perf_counter()
    c = model.predict(x[first:first + batch], threads=threads)
    seconds += time.perf_counter() - t
    wrong += int((c != y[first:first + batch]).sum())
t = time.perf_counter()
whole = model.predict(x, threads=threads)
one_call = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "one_call_seconds": one_call, "images": len(x),
                  "error_pct": 100.0 * wrong / len(x),
                  "same_as_batched": bool((whole != y).sum() == wrong)}))
PY

now() { date +%s.%N; }
: >"$TMP/rows"
for r in $(seq 1 "$RUNS"); do
  t0=$(now)
  c=$("$FEWMUL" infer --model "$MODEL" --data "$DATA" --batch "$BATCH" "${threads_flag[@]}" --json | tail -1) ||
    { echo "python_bench.sh: fewmul infer failed" >&2; exit 1; }
  t1=$(now)
  p=$(FEWMUL_LIBRARY="$LIB" PYTHONPATH="$ROOT/python" "$PY" "$TMP/predict.py" "$MODEL" "$DATA" "$BATCH" "$THREADS") ||
    { echo "python_bench.sh: the Python run failed" >&2; exit 1; }
  t2=$(now)
  "$PY" - "$c" "$p" "$t0" "$t1" "$t2" >>"$TMP/rows" <<'PY'
import json, sys
c, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
t0, t1, t2 = map(float, sys.argv[3:6])
assert abs(c["error_pct"] - p["error_pct"]) < 1e-9 and p["same_as_batched"], (c, p)
print(c["seconds"], p["seconds"], p["one_call_seconds"], t1 - t0, t2 - t1, c["error_pct"], c["images"])
PY
done
"$PY" - "$TMP/rows" "$MODEL" "$DATA" "$BATCH" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = [statistics.median(col) for col in zip(*rows)]
ci, pi, p1, cw, pw, err, n = med
print("python_bench: %d images of %s, model %s, batch %s, %d interleaved runs (medians)"
      % (n, sys.argv[3], sys.argv[2], sys.argv[4], len(rows)))
print("  fewmul infer     predict %.4f s (%.0f img/s)   process %.3f s" % (ci, n / ci, cw))
print("  Python batched   predict %.4f s (%.0f img/s)   process %.3f s" % (pi, n / pi, pw))
print("  Python one call  predict %.4f s (%.0f img/s)" % (p1, n / p1))
print("  ratio Python/infer: predict %.3f (batched), %.3f (one call); process %.3f"
      % (pi / ci, p1 / ci, pw / cw))
print("  error %.2f%% both (the same classes)" % err)
PY
