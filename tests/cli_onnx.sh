#!/usr/bin/env bash
# cli_onnx.sh — checks `fewmul export --onnx` (issue 23): its usage errors
# and refusals (recorded for docs/errors.md), that a failed export (a folder
# at the file's name, no permission, a full disk) leaves the last file as it
# was; then, on networks trained briefly on MNIST (or Fashion-MNIST where
# MNIST is absent: a binary mlp:256,256, the fully binary paper-mlp, a small
# fully binary CNN with pools and padding, a ternary mlp and a synapse mlp),
# that onnxruntime (the npm package onnxruntime-node: FEWMUL_ORT_NODE names
# its folder, else BUILD/onnx-node/node_modules/onnxruntime-node, as
# scripts/onnx-runtime BUILD installs it) predicts every test image as
# `fewmul infer --show` does (the near-ties are printed; an image where they
# differ passes only where tests/onnx/check.py --ties finds, in float64, a
# sign's input or the top two scores within float32 rounding of the sums: the
# graph's sums are onnxruntime's, in another order than fewmul's), and that
# onnx.checker (Debian's python3-onnx) accepts the plain and the QONNX
# graphs, whose predictions a numpy interpreter of their operators (QONNX's
# quantizers as specified) checks on 500 images. Missing node, onnxruntime or
# python3-onnx are skips, never passes.
# Usage: cli_onnx.sh PATH_TO_fewmul [SHARED_DATA_DIR]
set -u

NAME=cli_onnx.sh
source "$(dirname "$0")/cli_common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

# ---- refusals (a tiny model on synthetic data: every machine runs these) ----

usage_error "export with both --c and --onnx" '--c and --onnx are two exports' \
    export --model "$tmp/tiny.fmp" --c "$tmp/c" --onnx "$tmp/m.onnx"
usage_error "export --onnx-dialect that does not exist" "--onnx-dialect.*finn" \
    export --model "$tmp/tiny.fmp" --onnx "$tmp/m.onnx" --onnx-dialect finn
usage_error "export --onnx-dialect without --onnx" '--onnx-dialect goes with --onnx' \
    export --model "$tmp/tiny.fmp" --c "$tmp/c" --onnx-dialect qonnx
usage_error "export --name with --onnx" '--name names the C files' \
    export --model "$tmp/tiny.fmp" --onnx "$tmp/m.onnx" --name net
usage_error "export --onnx without a file" "option '--onnx' needs a value" export --model "$tmp/tiny.fmp" --onnx

if ! tiny_models; then
    finish
    exit
fi
# --version says whether this build writes ONNX; one without protobuf-c
# refuses --onnx (exit 1) and skips the rest
run version --version
if grep -qx 'ONNX export: none (built without protobuf-c)' "$tmp/version"; then
    runtime_error "export --onnx in a fewmul built without protobuf-c" 'built without ONNX support' \
        export --model "$tmp/tiny.fmp" --onnx "$tmp/m.onnx"
    skip "export --onnx" "this fewmul was built without protobuf-c"
    finish
    exit
elif grep -qx 'ONNX export: protobuf-c' "$tmp/version"; then
    ok "--version names the ONNX export's library"
else
    not_ok "--version names the ONNX export's library" "$(tail -n 1 "$tmp/version")"
fi

not_found "export --onnx of a missing model" 'none\.fmp.*No such file' \
    export --model "$tmp/none.fmp" --onnx "$tmp/m.onnx"
bad_input "export --onnx of a training-state file" 'tiny\.fm: a training-state file' \
    export --model "$tmp/tiny.fm" --onnx "$tmp/m.onnx"
bad_input "export --onnx of a damaged packed model" 'damaged\.fmp: .*checksum' \
    export --model "$tmp/damaged.fmp" --onnx "$tmp/m.onnx"
mkdir "$tmp/folder.onnx"
io_error "export --onnx naming a folder" "folder\.onnx' is a directory, not a regular file" \
    export --model "$tmp/tiny.fmp" --onnx "$tmp/folder.onnx"
io_error "export --onnx into a folder that does not exist" 'missing/m\.onnx: cannot create a temporary file beside it: No such file' \
    export --model "$tmp/tiny.fmp" --onnx "$tmp/missing/m.onnx"

# A failed export leaves the last one's file as it was.
mkdir "$tmp/dest"
run first export --model "$tmp/tiny.fmp" --onnx "$tmp/dest/m.onnx" --json
if [ "$rc" -eq 0 ] && [ -s "$tmp/dest/m.onnx" ]; then
    ok "export --onnx FILE writes FILE"
else
    not_ok "export --onnx FILE writes FILE" "exit $rc: $(first_err_line first)"
fi
check "export --onnx --json: the file, its size, nodes and weights" '
import json, os, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
want = ["model", "describe", "onnx", "dialect", "file_bytes", "nodes", "weights"]
if sorted(r) != sorted(want):
    sys.exit("keys %s" % sorted(r))
if r["dialect"] != "plain" or r["file_bytes"] != os.path.getsize(r["onnx"]) or r["weights"] != 64 * 8 + 8 * 10:
    sys.exit(str(r))
' "$tmp/first"
cp -p "$tmp/dest/m.onnx" "$tmp/keep.onnx"
kept() { cmp -s "$tmp/keep.onnx" "$tmp/dest/m.onnx" && ! ls "$tmp/dest" | grep -q '\.tmp\.'; }
failed_writes_keep "export --onnx" 1024 "$tmp/dest" 'm\.onnx: write failed: File too large' \
    'm\.onnx: cannot create a temporary file beside it: Permission denied' \
    export --model "$tmp/other.fmp" --onnx "$tmp/dest/m.onnx"

# scripts/errors-table wants the refusals above, not the minutes below
if [ -n "${ERRORS_TABLE:-}" ]; then
    finish
    exit
fi

# ---- the networks ---------------------------------------------------------------

# a python with onnx and numpy (Debian's python3-onnx is the system python's)
PY_ONNX=""
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import onnx, numpy' 2>/dev/null; then PY_ONNX=$py; break; fi
done
ORT=${FEWMUL_ORT_NODE:-$(cd "$(dirname "$FEWMUL")" && pwd)/onnx-node/node_modules/onnxruntime-node}
ORT_OK=""
if ! command -v node >/dev/null; then
    ORT_WHY="node not found"
elif [ ! -d "$ORT" ]; then
    ORT_WHY="no onnxruntime-node at $ORT (scripts/onnx-runtime BUILD installs it; or set FEWMUL_ORT_NODE)"
elif ! node -e "require(process.argv[1])" "$ORT" 2>"$tmp/ort.err"; then
    ORT_WHY="onnxruntime-node does not load: $(head -c 200 "$tmp/ort.err")"
else
    ORT_OK=1
fi

if ! pick_train_data; then
    skip "exported networks" "neither MNIST in '$SHARED' nor Fashion-MNIST in $FASHION_DIR"
    finish
    exit
fi
echo "# training on $TRAIN_NAME ($TRAIN_SPEC)"
IMAGES=10000
python3 - "$TRAIN_DIR" "$IMAGES" "$tmp/images.raw" <<'PY'
import gzip, os, sys
folder, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
path = os.path.join(folder, "t10k-images-idx3-ubyte")
data = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
dim = int.from_bytes(data[8:12], "big") * int.from_bytes(data[12:16], "big")
open(out, "wb").write(data[16:16 + n * dim])
PY

onnx_arch() {
    case $1 in
    mlp) echo "--arch mlp:256,256 --weights bc-det" ;;
    paper) echo "--arch paper-mlp --weights bc-det --acts binary" ;;
    conv) echo "--arch conv:16k3,pool2,32k3same,pool2,fc64 --weights bc-det --acts binary" ;;
    gap) echo "--arch conv:8k3s2same,16k3,gap --weights tc-det" ;;
    ternary) echo "--arch mlp:256,256 --weights tc-det --acts binary" ;;
    synapse) echo "--arch mlp:128 --weights synapse:16" ;;
    esac
}

for m in mlp paper conv gap ternary synapse; do
    # shellcheck disable=SC2046
    run "train_$m" train --data "$TRAIN_SPEC" $(onnx_arch "$m") --epochs 1 --train-limit 2000 \
        --valid 500 --batch 100 --quiet --out "$tmp/$m.fmp"
    if [ "$rc" -ne 0 ]; then
        not_ok "train $m" "exit $rc: $(first_err_line "train_$m")"
        continue
    fi
    run "infer_$m" infer --model "$tmp/$m.fmp" --data "$TRAIN_SPEC" --show "$IMAGES" --json
    [ "$rc" -eq 0 ] || { not_ok "infer $m" "exit $rc: $(first_err_line "infer_$m")"; continue; }
    for dialect in plain qonnx; do
        run "export_${m}_$dialect" export --model "$tmp/$m.fmp" --onnx "$tmp/${m}_$dialect.onnx" \
            --onnx-dialect "$dialect"
        [ "$rc" -eq 0 ] || { not_ok "$m: export --onnx-dialect $dialect" "exit $rc: $(first_err_line "export_${m}_$dialect")"; continue; }
        if [ -z "$PY_ONNX" ]; then
            skip "$m: onnx.checker accepts the $dialect graph" "no python3 with onnx and numpy (Debian: python3-onnx)"
        elif why=$("$PY_ONNX" "$HERE/onnx/check.py" "$tmp/${m}_$dialect.onnx" "$dialect" "$tmp/images.raw" \
                "$tmp/infer_$m" 500 2>&1); then
            ok "$m: onnx.checker accepts the $dialect graph; $why"
        else
            not_ok "$m: onnx.checker accepts the $dialect graph" "$(echo "$why" | tail -n 3)"
        fi
    done
    if [ -z "$ORT_OK" ]; then
        skip "$m: onnxruntime predicts as fewmul infer" "$ORT_WHY"
        continue
    fi
    node "$HERE/onnx/predict.js" "$ORT" "$tmp/${m}_plain.onnx" "$tmp/images.raw" "$IMAGES" 28 28 1 \
        >"$tmp/ort_$m.txt" 2>"$tmp/ort_$m.err"
    # the images where the two disagree, if any: $tmp/differ_$m (I,J,...)
    name="$m: onnxruntime predicts $IMAGES images as fewmul infer does"
    if ! why=$(python3 -c '
import json, sys
want = json.loads(open(sys.argv[1]).read().splitlines()[-1])["shown_classes"]
rows = [l.split() for l in open(sys.argv[2]).read().splitlines()]
if len(rows) != len(want):
    sys.exit("%d predictions, expected %d; %s" % (len(rows), len(want), open(sys.argv[3]).read()[:300]))
got = [int(r[0]) for r in rows]
margins = [float(r[1]) for r in rows]
differ = [i for i in range(len(want)) if got[i] != want[i]]
open(sys.argv[4], "w").write(",".join(map(str, differ)))
print("%d differ; %d near-ties of the scores: top two within 1e-3, %d equal" %
      (len(differ), sum(1 for v in margins if v < 1e-3), sum(1 for v in margins if v == 0)))
' "$tmp/infer_$m" "$tmp/ort_$m.txt" "$tmp/ort_$m.err" "$tmp/differ_$m" 2>&1); then
        not_ok "$name" "$why"
    elif [ ! -s "$tmp/differ_$m" ]; then
        ok "$name: $why"
    elif [ -z "$PY_ONNX" ]; then
        not_ok "$name" "$why, and no python3 with onnx and numpy to look for rounding ties there"
    elif ties=$("$PY_ONNX" "$HERE/onnx/check.py" "$tmp/${m}_plain.onnx" --ties "$tmp/images.raw" \
            "$(cat "$tmp/differ_$m")" 2>&1); then
        # float32 sums in another order than the engine's: a sign's input or
        # the top two scores within rounding of each other may go either way
        ok "$name: $why, each at a rounding tie ($(echo "$ties" | tr '\n' ';'))"
    else
        not_ok "$name" "$why: $(echo "$ties" | tr '\n' ';' | head -c 400)"
    fi
done

finish
