#!/usr/bin/env bash
# cli_onnx_import.sh — checks `fewmul import --onnx FILE -o OUT` (issue 23):
# its usage errors and its refusals of bad ONNX files and graphs it cannot
# run (each one line and its exit status, recorded for docs/errors.md: empty,
# not protobuf, truncated, no graph, an unknown operator, weights of the wrong
# shape, a dynamic input size, a value read twice), that a refused import
# leaves OUT as it was; then the round trip: networks trained briefly on
# synthetic images (binary, ternary, synapse and fp32 weights; dense and conv
# with pools, padding and global average pooling; relu and sign activations;
# the input mean), exported in both dialects and imported, give back the
# packed file byte for byte; a binary MLP written as another tool would
# (tests/onnx/make_graph.py: no fewmul metadata, raw inputs) predicts with
# fewmul infer what a float64 reference of its graph predicts, image by image;
# and a binary MLP trained for 200 steps by PyTorch in the test itself
# (tests/onnx/torch_mlp.py, on MNIST or else Fashion-MNIST; a skip without
# python3-torch) and exported by torch.onnx.export predicts with fewmul infer
# what PyTorch predicts on every test image.
# Usage: cli_onnx_import.sh PATH_TO_fewmul [SHARED_DATA_DIR]
set -u

NAME=cli_onnx_import.sh
source "$(dirname "$0")/cli_common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
GRAPH=$HERE/onnx/make_graph.py
# check, but the passing check's output (its counts) joins the ok line
check_says() {
    local name=$1 code=$2
    shift 2
    local why
    if why=$(python3 -c "$code" "$@" 2>&1); then ok "$name: $why"; else not_ok "$name" "$why"; fi
}

usage_error "import without --onnx" 'missing --onnx FILE' import -o "$tmp/m.fmp"
usage_error "import without -o" 'missing -o OUT' import --onnx "$tmp/m.onnx"
usage_error "import with an unknown option" "unknown option '--model'" \
    import --onnx "$tmp/m.onnx" -o "$tmp/m.fmp" --model x

run version --version
if grep -qx 'ONNX export: none (built without protobuf-c)' "$tmp/version"; then
    runtime_error "import --onnx in a fewmul built without protobuf-c" 'built without ONNX support' \
        import --onnx "$tmp/m.onnx" -o "$tmp/m.fmp"
    skip "import --onnx" "this fewmul was built without protobuf-c"
    finish
    exit
fi

# ---- refusals --------------------------------------------------------------------

for c in binary-mlp no-graph unknown-op wrong-shape dynamic-shape two-readers; do
    python3 "$GRAPH" "$c" "$tmp/$c.onnx"
done
: >"$tmp/empty.onnx"
echo "this is not an ONNX model" >"$tmp/text.onnx"
head -c 200 "$tmp/binary-mlp.onnx" >"$tmp/truncated.onnx"

usage_error "import -o naming the ONNX file itself" "name the same file" \
    import --onnx "$tmp/binary-mlp.onnx" -o "$tmp/binary-mlp.onnx"
not_found "import of a missing file" 'none\.onnx.*No such file' import --onnx "$tmp/none.onnx" -o "$tmp/m.fmp"
bad_input "import of an empty file" 'empty\.onnx: empty file' import --onnx "$tmp/empty.onnx" -o "$tmp/m.fmp"
bad_input "import of a file that is not protobuf" 'text\.onnx: not an ONNX model' \
    import --onnx "$tmp/text.onnx" -o "$tmp/m.fmp"
bad_input "import of a truncated ONNX file" 'truncated\.onnx: not an ONNX model' \
    import --onnx "$tmp/truncated.onnx" -o "$tmp/m.fmp"
bad_input "import of a model without a graph" 'no-graph\.onnx: the model has no graph' \
    import --onnx "$tmp/no-graph.onnx" -o "$tmp/m.fmp"
bad_input "import of a graph with an operator fewmul lacks" "node 'act1' \(Tanh\)" \
    import --onnx "$tmp/unknown-op.onnx" -o "$tmp/m.fmp"
bad_input "import of weights of the wrong shape" "node 'fc1' \(MatMul\): its weights are not a matrix" \
    import --onnx "$tmp/wrong-shape.onnx" -o "$tmp/m.fmp"
bad_input "import of an input of dynamic size" "input 'x' dimension 1 is not a fixed size" \
    import --onnx "$tmp/dynamic-shape.onnx" -o "$tmp/m.fmp"
bad_input "import of a graph that is not a chain" "value 'z1' is read by 2 nodes" \
    import --onnx "$tmp/two-readers.onnx" -o "$tmp/m.fmp"
mkdir "$tmp/folder.fmp"
io_error "import -o naming a folder" "folder\.fmp' is a directory, not a regular file" \
    import --onnx "$tmp/binary-mlp.onnx" -o "$tmp/folder.fmp"

# a refused import leaves OUT as it was
echo keep >"$tmp/kept.fmp"
run refused import --onnx "$tmp/unknown-op.onnx" -o "$tmp/kept.fmp"
if [ "$rc" -eq 4 ] && [ "$(cat "$tmp/kept.fmp")" = keep ]; then
    ok "a refused import leaves OUT as it was"
else
    not_ok "a refused import leaves OUT as it was" "exit $rc, OUT now $(head -c 40 "$tmp/kept.fmp" | od -c | head -n 1)"
fi

# a graph from PyTorch the import must refuse: a CNN whose first batch norm has
# a negative scale before its max-pool (untrained: no steps)
PY_TORCH=""
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import torch, numpy' 2>/dev/null; then PY_TORCH=$py; break; fi
done
if [ -z "$PY_TORCH" ]; then
    skip "a max-pool after a batch norm with a negative scale" "no python3 with torch and numpy (Debian: python3-torch)"
elif ! pick_train_data; then
    skip "a max-pool after a batch norm with a negative scale" "neither MNIST in '$SHARED' nor Fashion-MNIST in $FASHION_DIR"
elif "$PY_TORCH" "$HERE/onnx/torch_mlp.py" "$TRAIN_DIR" 0 "$tmp/negative.onnx" "$tmp/negative.txt" \
        cnn-negative >/dev/null 2>"$tmp/negative.err"; then
    bad_input "a max-pool after a batch norm with a negative scale" \
        "MaxPool.*a max-pool after a batch norm with a negative scale" \
        import --onnx "$tmp/negative.onnx" -o "$tmp/negative.fmp"
else
    not_ok "PyTorch exports a CNN with a negative batch-norm scale" "$(tail -n 3 "$tmp/negative.err" | tr '\n' ' ')"
fi

# scripts/errors-table wants the refusals above, not the rest
if [ -n "${ERRORS_TABLE:-}" ]; then
    finish
    exit
fi

# ---- another tool's binary MLP: predictions -------------------------------------

make_idx "$tmp/idx4" 100 1000 4
run import_mlp import --onnx "$tmp/binary-mlp.onnx" -o "$tmp/binary-mlp.fmp" --json
run infer_mlp infer --model "$tmp/binary-mlp.fmp" --data "idx:$tmp/idx4" --show 1000 --json
python3 "$GRAPH" predict "$tmp/idx4/t10k-images-idx3-ubyte" >"$tmp/reference.txt"
# same_as_reference NAME IMPORT INFER REFERENCE: the import made a 16-8-10 binary
# network, and infer's classes of the 1,000 images are the reference's
same_as_reference() {
    check_says "$1" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if not r["describe"].startswith("16-8-10, binary weights, binary activations"):
    sys.exit("imported as " + r["describe"])
want = [l.split() for l in open(sys.argv[3])]
got = json.loads(open(sys.argv[2]).read().splitlines()[-1])["shown_classes"]
differ = [k for k in range(len(want)) if int(want[k][0]) != got[k]]
ties = sum(1 for w in want if float(w[1]) < 1e-3)
print("%d images, %d differ, %d near-ties (top two within 1e-3)" % (len(got), len(differ), ties))
if len(got) != 1000 or differ:
    sys.exit("%d of %d differ: %s" % (len(differ), len(got), differ[:10]))
' "$2" "$3" "$4"
}
same_as_reference "another tool's binary MLP (no metadata): fewmul infer predicts every image as the graph's float64 reference" \
    "$tmp/import_mlp" "$tmp/infer_mlp" "$tmp/reference.txt"
# the same weights as PyTorch's exporter writes a Linear with a bias: Gemm
# (transB = 1), BatchNormalization (folded), ONNX's Sign as the activation
python3 "$GRAPH" gemm-mlp "$tmp/gemm-mlp.onnx"
run import_gemm import --onnx "$tmp/gemm-mlp.onnx" -o "$tmp/gemm-mlp.fmp" --json
run infer_gemm infer --model "$tmp/gemm-mlp.fmp" --data "idx:$tmp/idx4" --show 1000 --json
python3 "$GRAPH" predict-gemm "$tmp/idx4/t10k-images-idx3-ubyte" >"$tmp/reference_gemm.txt"
same_as_reference "Gemm with a bias, BatchNormalization and Sign: fewmul infer predicts every image as the graph's float64 reference" \
    "$tmp/import_gemm" "$tmp/infer_gemm" "$tmp/reference_gemm.txt"
for c in ternary-mlp real-mlp; do
    python3 "$GRAPH" "$c" "$tmp/$c.onnx"
    run "import_$c" import --onnx "$tmp/$c.onnx" -o "$tmp/$c.fmp"
    want=$([ $c = ternary-mlp ] && echo "ternary weights, relu" || echo "fp32 weights, relu")
    if [ "$rc" -eq 0 ] && grep -q "16-8-10, $want" "$tmp/import_$c"; then
        ok "another tool's $c: imported as $want"
    else
        not_ok "another tool's $c: imported as $want" "exit $rc: $(head -c 200 "$tmp/import_$c") $(first_err_line "import_$c")"
    fi
done

# ---- a binary MLP trained and exported by PyTorch -----------------------------------

# from_torch NAME KIND STEPS DESCRIBE: torch_mlp.py trains KIND (mlp or cnn) for
# STEPS steps and exports it; fewmul imports it as DESCRIBE, and infer predicts
# PyTorch's class on every test image
from_torch() {
    local name=$1 kind=$2 steps=$3 describe=$4
    if ! "$PY_TORCH" "$HERE/onnx/torch_mlp.py" "$TRAIN_DIR" "$steps" "$tmp/$kind.onnx" "$tmp/$kind.txt" \
            "$kind" >"$tmp/$kind.out" 2>"$tmp/$kind.err"; then
        not_ok "PyTorch trains and exports a binary $kind" "$(tail -n 3 "$tmp/$kind.err" | tr '\n' ' ')"
        return
    fi
    cat "$tmp/$kind.out"
    run "import_$kind" import --onnx "$tmp/$kind.onnx" -o "$tmp/$kind.fmp" --json
    run "infer_$kind" infer --model "$tmp/$kind.fmp" --data "$TRAIN_SPEC" --show 10000 --json
    check_says "$name" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if not r["describe"].startswith(sys.argv[4]):
    sys.exit("imported as " + r["describe"])
want = [l.split() for l in open(sys.argv[3])]
got = json.loads(open(sys.argv[2]).read().splitlines()[-1])["shown_classes"]
differ = [k for k in range(len(want)) if int(want[k][0]) != got[k]]
ties = sum(1 for w in want if float(w[1]) < 1e-3)
print("%d images, %d differ, %d near-ties in PyTorch (top two within 1e-3)" % (len(got), len(differ), ties))
if len(got) != len(want) or len(got) < 10000 or differ:
    sys.exit("%d of %d differ: %s" % (len(differ), len(got), differ[:10]))
' "$tmp/import_$kind" "$tmp/infer_$kind" "$tmp/$kind.txt" "$describe"
}
if [ -z "$PY_TORCH" ]; then
    skip "a binary MLP and CNN from torch.onnx.export" "no python3 with torch and numpy (Debian: python3-torch)"
elif ! pick_train_data; then
    skip "a binary MLP and CNN from torch.onnx.export" "neither MNIST in '$SHARED' nor Fashion-MNIST in $FASHION_DIR"
else
    from_torch "a binary MLP trained by PyTorch ($TRAIN_NAME), torch.onnx.export, import: fewmul infer predicts every test image as PyTorch" \
        mlp 200 "784-128-64-10, binary weights, binary activations"
    # PyTorch's order: conv, batch norm, sign, then the max-pool
    from_torch "a binary CNN from PyTorch (max-pool after batch norm and sign), import: fewmul infer predicts every test image as PyTorch" \
        cnn 30 "28x28x1-8k3p1-pool2-16k3p1-pool2-10, binary weights, binary activations"
fi

# ---- round trip: export then import gives back the packed file ---------------------

make_idx "$tmp/idx" 300 100 12
arch() {
    case $1 in
    mlp) echo "--arch mlp:32,16 --weights bc-det" ;;
    paper) echo "--arch mlp:32,32 --weights bc-det --acts binary" ;;
    mean) echo "--arch mlp:24 --weights bc --export mean --preproc center" ;;
    conv) echo "--arch conv:4k3,pool2,8k3same,pool2,fc16 --weights bc-det --acts binary" ;;
    gap) echo "--arch conv:4k3s2same,8k3,gap --weights tc-det" ;;
    ternary) echo "--arch mlp:32 --weights tc-det --acts binary" ;;
    synapse) echo "--arch mlp:16 --weights synapse:16" ;;
    fp32) echo "--arch conv:4k3,pool2,fc16 --weights fp32" ;;
    esac
}
for m in mlp paper mean conv gap ternary synapse fp32; do
    # shellcheck disable=SC2046
    run "train_$m" train --data "idx:$tmp/idx" $(arch "$m") --epochs 1 --batch 50 --valid 50 --threads 1 \
        --quiet --out "$tmp/$m.fmp"
    if [ "$rc" -ne 0 ]; then
        not_ok "train $m" "exit $rc: $(first_err_line "train_$m")"
        continue
    fi
    for dialect in plain qonnx; do
        run "export_${m}_$dialect" export --model "$tmp/$m.fmp" --onnx "$tmp/${m}_$dialect.onnx" --onnx-dialect "$dialect"
        run "import_${m}_$dialect" import --onnx "$tmp/${m}_$dialect.onnx" -o "$tmp/${m}_$dialect.fmp"
        name="$m ($(sed -n 's/.*: //p' "$tmp/import_${m}_$dialect" | head -n 1)): export --onnx-dialect $dialect then import gives the packed file byte for byte"
        if [ "$rc" -ne 0 ]; then
            not_ok "$name" "exit $rc: $(first_err_line "import_${m}_$dialect")"
        elif cmp -s "$tmp/$m.fmp" "$tmp/${m}_$dialect.fmp"; then
            ok "$name"
        else
            not_ok "$name" "$(cmp "$tmp/$m.fmp" "$tmp/${m}_$dialect.fmp" 2>&1 | head -n 1)"
        fi
    done
done

finish
