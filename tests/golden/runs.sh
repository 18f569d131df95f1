#!/usr/bin/env bash
# runs.sh — the golden set: a fixed list of short training runs whose every
# output (state file, packed file, checkpoint, --json result with its ledger,
# --log) must not change when the code changes shape. Each run's outputs are
# normalised (tests/golden/normalize.py: wall-clock fields zeroed) and hashed.
#
# Usage: tests/golden/runs.sh FEWMUL DATA OUTDIR [LIST]
#   FEWMUL  the fewmul binary;  DATA  a --data spec (MNIST-sized images);
#   OUTDIR  where every run's files and the summary SHA256SUMS go;
#   LIST    "full" (default: every run, MPI where mpirun is) or "ci" (the
#           few runs tests/golden/check.sh compares with tests/golden/ci.sha256).
set -euo pipefail
bin=$(realpath "$1") data=$2 out=$3 list=${4:-full}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
common=(--data "$data" --train-limit 600 --valid 300 --epochs 2 --batch 100 --seed 7
        --ledger --quiet --json)
mlp=(--arch mlp:48,32)
conv=(--arch conv:6k3,pool2,fc16)

run() { # NAME PACKED(0/1) ARGS...
  local name=$1 packed=$2
  shift 2
  local d="$out/$name" extra=()
  mkdir -p "$d"
  # names relative to the run's folder: the result names its files
  [ "$packed" = 1 ] && extra=(--out model.fmp)
  (cd "$d" && "${launcher[@]}" "$bin" train "${common[@]}" "$@" "${extra[@]}" --state state.fm \
    --checkpoint run.fmc --log log.jsonl >stdout 2>stderr) || {
    echo "golden run $name failed:" >&2
    cat "$d/stderr" >&2
    return 1
  }
  python3 "$here/normalize.py" json "$d/stdout" "$d/result.json"
  python3 "$here/normalize.py" jsonl "$d/log.jsonl" "$d/log.norm.jsonl"
  python3 "$here/normalize.py" checkpoint "$d/run.fmc" "$d/run.norm.fmc"
  (cd "$out" && sha256sum "$name/state.fm" "$name/run.norm.fmc" "$name/result.json" \
     "$name/log.norm.jsonl" $([ "$packed" = 1 ] && echo "$name/model.fmp")) >>"$out/SHA256SUMS"
}

: >"$out/SHA256SUMS"
launcher=()
t1=(--threads 1) t2=(--threads 2)
if [ "$list" = ci ]; then
  run mlp-bc-qb 1 "${mlp[@]}" --weights bc --qb "${t1[@]}"
  run mlp-bc-qb-shortcut 1 "${mlp[@]}" --weights bc --qb --qb-bn-shortcut "${t1[@]}"
  run mlp-tc-mulfree 1 "${mlp[@]}" --weights tc --qb --exec mulfree "${t2[@]}"
  run conv-bc-qb 0 "${conv[@]}" --weights bc --qb "${t1[@]}"
  # CIFAR-10's and SVHN's preprocessing, computed once per run (docs/data.md)
  run conv-bc-qb-gcn-zca 0 "${conv[@]}" --weights bc --qb --preproc gcn-zca "${t2[@]}"
  run conv-bc-qb-gcn-lcn 0 "${conv[@]}" --weights bc --qb --preproc gcn-lcn "${t2[@]}"
  exit 0
fi
run mlp-fp32 1 "${mlp[@]}" --weights fp32 "${t1[@]}"
run mlp-bc 1 "${mlp[@]}" --weights bc "${t1[@]}"
run mlp-bc-qb 1 "${mlp[@]}" --weights bc --qb "${t1[@]}"
run mlp-bc-qb-shortcut 1 "${mlp[@]}" --weights bc --qb --qb-bn-shortcut "${t1[@]}"
run mlp-bc-det 1 "${mlp[@]}" --weights bc-det "${t1[@]}"
run mlp-tc-qb 1 "${mlp[@]}" --weights tc --qb "${t1[@]}"
run mlp-tc-det-qb 1 "${mlp[@]}" --weights tc-det --qb=-6:2 "${t1[@]}"
run mlp-synapse-qb 1 "${mlp[@]}" --weights synapse --qb "${t1[@]}"
run mlp-bc-qb-t2 1 "${mlp[@]}" --weights bc --qb "${t2[@]}"
run mlp-bc-mulfree 1 "${mlp[@]}" --weights bc --qb --exec mulfree "${t1[@]}"
run mlp-tc-mulfree-t2 1 "${mlp[@]}" --weights tc --qb --exec mulfree "${t2[@]}"
run mlp-synapse16-mulfree 1 "${mlp[@]}" --weights synapse:16 --qb --exec mulfree "${t1[@]}"
run mlp-fp32-adam-xent 1 "${mlp[@]}" --weights fp32 --opt adam --loss xent --dropout 0.2 \
  --bn-stats running "${t2[@]}"
run mlp-tc-momentum-shortcut 1 "${mlp[@]}" --weights tc --qb --qb-bn-shortcut --momentum 0.9 \
  --test-weights quantized "${t1[@]}"
run mlp-bc-binary-acts 1 "${mlp[@]}" --weights bc --acts binary --qb "${t1[@]}"
run conv-fp32 0 "${conv[@]}" --weights fp32 "${t1[@]}"
run conv-bc-qb 0 "${conv[@]}" --weights bc --qb "${t1[@]}"
run conv-tc-qb-t2 0 "${conv[@]}" --weights tc --qb --qb-conv none "${t2[@]}"
run conv-synapse-adam 0 "${conv[@]}" --weights synapse --qb --opt adam --bn-stats running "${t1[@]}"
run conv-bc-qb-gcn-zca 0 "${conv[@]}" --weights bc --qb --preproc gcn-zca "${t2[@]}"
run conv-bc-qb-gcn-lcn 0 "${conv[@]}" --weights bc --qb --preproc gcn-lcn "${t2[@]}"
if command -v mpirun >/dev/null && "$bin" --version | grep -q . ; then
  launcher=(mpirun --allow-run-as-root --oversubscribe -np 2)
  run mpi-bc-qb 1 "${mlp[@]}" --weights bc --qb "${t1[@]}" || echo "(no MPI run)" >&2
  launcher=()
fi
# the energy command: one training step and one inference pass, priced
for w in fp32 bc tc synapse; do
  "$bin" energy --arch mlp:48,32 --weights "$w" --qb --json >"$out/energy-$w.json"
  "$bin" energy --input 28x28x1 --arch conv:6k3,pool2,fc16 --weights "$w" --json \
    >"$out/energy-conv-$w.json"
done
"$bin" energy --arch mlp:48,32 --weights tc --qb --exec mulfree --json >"$out/energy-tc-mulfree.json"
(cd "$out" && sha256sum energy-*.json) >>"$out/SHA256SUMS"
