#!/usr/bin/env bash
# cli_conv.sh — convolutional networks and the CIFAR-10 and SVHN readers as a
# user meets them: a small CNN trained on a CIFAR-10 folder written here in the exact
# binary format (random images whose class sets their brightness), the
# paper's split and preprocessing chosen by the data set, the saved state
# evaluated again, the packed file (--out) of a CNN predicting as training
# evaluated, the CNN trained by --exec mulfree, and the refusals
# (architectures that do not fit the images, --out with GCN preprocessing,
# --qb-conv values, broken CIFAR-10 and SVHN files).
# Usage: cli_conv.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_conv.sh
source "$(dirname "$0")/cli_common.sh"

# CIFAR-10 binary version: 3073-byte records, label then 1024 R, G, B bytes.
python3 - "$tmp/cifar" <<'PY'
import os, random, sys
d = sys.argv[1]
os.makedirs(d)
rng = random.Random(7)
# pixel = its label's base plus noise: learnable from brightness alone
tables = [bytes(min(255, 20 * label + v // 3) for v in range(256)) for label in range(10)]
files = [("data_batch_%d.bin" % i, 1040) for i in range(1, 6)] + [("test_batch.bin", 200)]
for name, n in files:
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(n):
            label = rng.randrange(10)
            f.write(bytes([label]) + rng.randbytes(3072).translate(tables[label]))
PY
small="conv:8k3,pool2,16k3s2same,fc32"

run train train --data "cifar10:$tmp/cifar" --arch "$small" --weights bc --qb --epochs 2 \
    --batch 50 --valid 200 --preproc unit --state "$tmp/cnn.fm" --quiet --json
if [ $rc -eq 0 ]; then ok "train a small CNN on cifar10:DIR"; else not_ok "train a small CNN on cifar10:DIR" "exit $rc: $(first_err_line train)"; fi
check "train JSON: shape, split, mode, learns" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
want = {"valid": 200, "preproc": "unit", "qb_conv_emin": -4, "qb_conv_emax": 3, "weights": "bc"}
for k, v in want.items():
    if r.get(k) != v:
        sys.exit("%s = %r, expected %r" % (k, r.get(k), v))
if not r["model"].startswith("32x32x3-conv:"):
    sys.exit("model " + r["model"])
if not r["test_error_pct"] < 60:
    sys.exit("test error %s%% (chance 90%%)" % r["test_error_pct"])
' "$tmp/train"

run eval eval --model "$tmp/cnn.fm" --data "cifar10:$tmp/cifar" --json
check "eval of the saved CNN state gives the training's test error" '
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])
e = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if abs(t["test_error_pct"] - e["error_pct"]) > 1e-9:
    sys.exit("train %s, eval %s" % (t["test_error_pct"], e["error_pct"]))
' "$tmp/train" "$tmp/eval"

# --exec mulfree runs the convolutions too (a strided one included): it
# learns as the default path does, and says which kernels ran
run mulfree train --data "cifar10:$tmp/cifar" --arch "$small" --weights bc --qb --epochs 2 \
    --batch 50 --valid 200 --preproc unit --quiet --json --exec mulfree
if [ $rc -eq 0 ]; then ok "train --exec mulfree a small CNN"; else not_ok "train --exec mulfree a small CNN" "exit $rc: $(first_err_line mulfree)"; fi
check "train --exec mulfree JSON: exec, kernels, no fallback, learns" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["exec"] != "mulfree" or r["kernels"] not in ("ref", "avx2", "avx512", "neon") or r["ldexp_fallbacks"] != 0:
    sys.exit("exec %r, kernels %r, ldexp_fallbacks %r" % (r["exec"], r["kernels"], r["ldexp_fallbacks"]))
if not r["test_error_pct"] < 60:
    sys.exit("test error %s%% (chance 90%%)" % r["test_error_pct"])
' "$tmp/mulfree"
run energy_mf energy --arch "$small" --input 32x32x3 --weights tc --qb --exec mulfree --batch 20 --json
check "energy --exec mulfree of a CNN: its convolutions multiply-add nothing" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
convs = [l for l in r["train_step"]["layers"] if l["name"].startswith("conv")]
if len(convs) != 2:
    sys.exit("%d conv layers in %r" % (len(convs), [l["name"] for l in r["train_step"]["layers"]]))
for l in convs:
    f, b = l["phases"]["forward"]["ops"], l["phases"]["backward"]["ops"]
    # forward: H per output (and tc sampling per weight); backward: exponent adds
    if f["fma"] or b["fma"] or f["fmul"] < 20 * 64 * 16 or b["shift"] == 0:
        sys.exit("%s: forward %r, backward %r" % (l["name"], f, b))
' "$tmp/energy_mf"

# global average pooling: the channel means feed the class-score layer; it
# learns the brightness code, and its state evaluates as training did
run gap train --data "cifar10:$tmp/cifar" --arch conv:8k3,pool2,16k3,gap --epochs 2 --batch 50 \
    --valid 200 --preproc unit --state "$tmp/gap.fm" --quiet --json
run gap_eval eval --model "$tmp/gap.fm" --data "cifar10:$tmp/cifar" --json
check "a gap network learns and its state evaluates as training did" '
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])
e = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if not t["test_error_pct"] < 60:
    sys.exit("test error %s%% (chance 90%%)" % t["test_error_pct"])
if abs(t["test_error_pct"] - e["error_pct"]) > 1e-9:
    sys.exit("train %s, eval %s" % (t["test_error_pct"], e["error_pct"]))
' "$tmp/gap" "$tmp/gap_eval"

# the packed file of a CNN on 32x32x3 images: the deterministic binary
# weights training evaluated with predict the same test error in every variant
run packed train --data "cifar10:$tmp/cifar" --arch "$small" --weights bc --qb --test-weights quantized \
    --epochs 1 --batch 50 --valid 200 --preproc unit --out "$tmp/cnn.fmp" --quiet --json
for kernels in ref fp32; do
    run "packed_$kernels" infer --model "$tmp/cnn.fmp" --data "cifar10:$tmp/cifar" --kernels "$kernels" --json
    check "train --out of a CNN on cifar10: infer --kernels $kernels = training's test error" '
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])
i = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if i["input"] != "32x32x3" or abs(t["test_error_pct"] - i["error_pct"]) > 1e-9:
    sys.exit("train %s, infer %s (%s)" % (t["test_error_pct"], i["error_pct"], i["input"]))
' "$tmp/packed" "$tmp/packed_$kernels"
done

# defaults by data set: CIFAR-10's 5000 validation images and gcn-zca
run defaults train --data "cifar10:$tmp/cifar" --arch conv:4k5,pool4 --epochs 1 --batch 100 \
    --quiet --json
check "cifar10 defaults: valid 5000, gcn-zca" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if (r["valid"], r["preproc"]) != (5000, "gcn-zca"):
    sys.exit("valid %r preproc %r" % (r["valid"], r["preproc"]))
' "$tmp/defaults"

# gcn-lcn rows kept once per run (the default) or made at each batch load
# (--preproc-cache 0): the same bits (docs/data.md, "Once per run")
for cache in 1024 0; do
  run "lcn$cache" train --data "cifar10:$tmp/cifar" --arch "$small" --weights bc --qb --epochs 2 \
      --batch 50 --valid 200 --preproc gcn-lcn --preproc-cache $cache --threads 2 \
      --state "$tmp/lcn$cache.fm" --checkpoint "$tmp/lcn$cache.fmc" --quiet
done
if [ -s "$tmp/lcn0.fm" ] && cmp -s "$tmp/lcn1024.fm" "$tmp/lcn0.fm"; then
  ok "gcn-lcn: kept rows and per-batch rows train the same bits"
else
  not_ok "gcn-lcn: kept rows and per-batch rows train the same bits" "the state files differ or are missing"
fi
run lcn_resume train --resume "$tmp/lcn0.fmc" --preproc-cache 2048 --quiet
if [ $rc -eq 0 ]; then ok "--resume takes --preproc-cache"; else not_ok "--resume takes --preproc-cache" "exit $rc: $(first_err_line lcn_resume)"; fi

# expect NAME STATUS WORDS ARGS...: exit status and a word of the message
expect() {
    local name=$1 status=$2 word=$3
    shift 3
    run out "$@"
    record_case "$name" "$tmp/out.err"
    if [ $rc -ne "$status" ]; then
        not_ok "$name" "exit $rc, expected $status: $(first_err_line out)"
    elif ! grep -q -- "$word" "$tmp/out.err"; then
        not_ok "$name" "message lacks '$word': $(first_err_line out)"
    else
        ok "$name"
    fi
}
data=(--data "cifar10:$tmp/cifar" --epochs 1 --valid 200 --quiet)
expect "a kernel larger than its map is a usage error" 2 "item 5 (5x5x8 input)" train "${data[@]}" --arch conv:8k5,pool2,8k5,pool2,8k7
expect "a pool larger than its map is a usage error" 2 "larger than" train "${data[@]}" --arch conv:8k30,pool4
expect "--out refuses gcn preprocessing" 2 "GCN" train "${data[@]}" --arch mlp:8 --out "$tmp/x.fmp"
expect "--qb-conv needs EMIN:EMAX" 2 "EMIN:EMAX" train "${data[@]}" --arch "$small" --qb --qb-conv=4
expect "--qb-conv EMIN > EMAX" 2 "greater" train "${data[@]}" --arch "$small" --qb --qb-conv=3:-4
expect "--qb-conv out of range" 2 "126" train "${data[@]}" --arch "$small" --qb --qb-conv=-200:3
expect "bad conv item" 2 "FkK" train "${data[@]}" --arch conv:8x3
expect "pool not after a convolution" 2 "pool must follow" train "${data[@]}" --arch conv:pool2,8k3
expect "gap not after a map" 2 "gap must follow" train "${data[@]}" --arch conv:8k3,gap,gap
expect "convolution after a dense layer" 2 "follows a dense layer" train "${data[@]}" --arch conv:8k3,fc10,8k3
expect "energy: paper-cnn on a flat input" 2 "larger than" energy --arch paper-cnn --input 784
expect "unknown data spec names the forms" 2 "cifar10:DIR" train --data cifar:/x

# broken files
cp -r "$tmp/cifar" "$tmp/broken"
head -c 5000 "$tmp/cifar/data_batch_3.bin" >"$tmp/broken/data_batch_3.bin"
expect "a truncated CIFAR-10 batch is named" 4 "data_batch_3.bin" train --data "cifar10:$tmp/broken" --arch "$small" --epochs 1 --quiet
rm "$tmp/broken/test_batch.bin"
expect "a missing CIFAR-10 file is named" 3 "test_batch.bin" train --data "cifar10:$tmp/broken" --arch "$small" --epochs 1 --quiet

# SVHN: MATLAB level-5 files (X 32x32x3xN uint8, y N labels 1..10), written
# here uncompressed; svhn_mat DIR NAME N [LABEL] [ROWS]: one file, its labels
# i % 10 + 1 or all LABEL, its images ROWS (32) high.
svhn_mat() {
    python3 - "$@" <<'PY'
import os, struct, sys
d, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
label = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
rows = int(sys.argv[5]) if len(sys.argv) > 5 else 32
def element(kind, data):
    pad = (8 - len(data) % 8) % 8
    return struct.pack("<II", kind, len(data)) + data + b"\0" * pad
def matrix(var, mx_class, dims, kind, data):
    body = element(6, struct.pack("<II", mx_class, 0)) + element(5, struct.pack("<%di" % len(dims), *dims))
    body += element(1, var) + element(kind, data)
    return element(14, body)
x = bytes((i * 7) % 256 for i in range(rows * 32 * 3 * n))
y = struct.pack("<%dd" % n, *[label if label is not None else i % 10 + 1 for i in range(n)])
head = b"MATLAB 5.0 MAT-file, written by cli_conv.sh".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x100) + b"IM"
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, name), "wb") as f:
    f.write(head + matrix(b"X", 9, [rows, 32, 3, n], 2, x) + matrix(b"y", 6, [n, 1], 9, y))
PY
}
svhn_mat "$tmp/svhn" train_32x32.mat 20
svhn_mat "$tmp/svhn" test_32x32.mat 10
svhn_args=(--arch conv:4k5,pool4 --epochs 1 --batch 10 --valid 5 --quiet)
run svhn_ok train --data "svhn:$tmp/svhn" "${svhn_args[@]}"
if [ $rc -eq 0 ]; then ok "train on an svhn:DIR written here"; else not_ok "train on an svhn:DIR written here" "exit $rc: $(first_err_line svhn_ok)"; fi
expect "svhn: a missing folder" 3 "no-such" train --data "svhn:$tmp/no-such" "${svhn_args[@]}"
cp -r "$tmp/svhn" "$tmp/svhn_notest" && rm "$tmp/svhn_notest/test_32x32.mat"
expect "svhn: test_32x32.mat missing" 3 "test_32x32.mat" train --data "svhn:$tmp/svhn_notest" "${svhn_args[@]}"
cp -r "$tmp/svhn" "$tmp/svhn_cut" && head -c 2000 "$tmp/svhn/train_32x32.mat" >"$tmp/svhn_cut/train_32x32.mat"
expect "svhn: a MAT file cut short" 4 "train_32x32.mat" train --data "svhn:$tmp/svhn_cut" "${svhn_args[@]}"
cp -r "$tmp/svhn" "$tmp/svhn_text" && python3 -c 'print("not a MATLAB file " * 20)' >"$tmp/svhn_text/train_32x32.mat"
expect "svhn: not a MAT file" 4 "train_32x32.mat" train --data "svhn:$tmp/svhn_text" "${svhn_args[@]}"
svhn_mat "$tmp/svhn_label" train_32x32.mat 20 11
cp "$tmp/svhn/test_32x32.mat" "$tmp/svhn_label/"
expect "svhn: a label of 11" 4 "train_32x32.mat" train --data "svhn:$tmp/svhn_label" "${svhn_args[@]}"
svhn_mat "$tmp/svhn_shape" train_32x32.mat 20 "" 31
cp "$tmp/svhn/test_32x32.mat" "$tmp/svhn_shape/"
expect "svhn: images 31 pixels high" 4 "train_32x32.mat" train --data "svhn:$tmp/svhn_shape" "${svhn_args[@]}"

run energy energy --arch paper-cnn --input 32x32x3 --weights bc --qb --batch 10 --json
check "energy of paper-cnn: 7 conv layers, 3 pools, counts per layer" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
names = [l["name"] for l in r["train_step"]["layers"]]
if sum(n.startswith("conv") for n in names) != 7 or sum(n.startswith("pool") for n in names) != 3:
    sys.exit("layers %s" % names)
if not r["paper_mults_method"] < r["paper_mults_standard"]:
    sys.exit("paper counts")
' "$tmp/energy"

finish
