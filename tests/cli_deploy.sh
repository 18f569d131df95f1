#!/usr/bin/env bash
# cli_deploy.sh — checks deployment as a user would meet it: `train --out`
# (packed) and `--state` (training state), `--export`, `--acts binary`,
# `info`, `eval` of both formats, `infer` with each kernel variant, `bench
# infer`, convolutional networks (binary and ternary, pools and gap),
# FEWMUL_KERNELS, damaged packed files, and the example program
# examples/classify_idx. Tiny networks trained for one short epoch on MNIST,
# or on Debian's Fashion-MNIST where MNIST is absent (cli_common.sh).
# Usage: cli_deploy.sh PATH_TO_fewmul [SHARED_DATA_DIR [PATH_TO_classify_idx]]
set -u

NAME=cli_deploy.sh
source "$(dirname "$0")/cli_common.sh"
EXAMPLE=${3:-}

# expect_fail NAME CODE PATTERN OUT: expect_run_error (cli_common.sh).
expect_fail() { expect_run_error "$@"; }

# Usage errors need no data.
run u1 train --export bogus
expect_fail "train --export bogus is a usage error" 2 'export.*bogus' u1
run u2 train --acts bogus
expect_fail "train --acts bogus is a usage error" 2 'acts.*bogus' u2
run u3 infer --model x --kernels bogus
expect_fail "infer --kernels bogus is a usage error" 2 'kernels.*bogus' u3
run u4 bench
expect_fail "bench without a subcommand is a usage error" 2 'subcommand' u4

if ! pick_train_data; then
    skip "deployment" "neither MNIST in '$SHARED' nor Fashion-MNIST in $FASHION_DIR"
    finish
    exit
fi
echo "# training on $TRAIN_NAME ($TRAIN_SPEC)"
DATA=$TRAIN_SPEC
TINY=(--data "$DATA" --arch mlp:64 --epochs 1 --train-limit 2000 --valid 500 --batch 100
      --quiet --json)

# Three tiny models: binary weights with quantized back-prop, evaluated in
# training with the deterministic weights it deploys; deterministic binary
# weights with binary activations (xnor and popcount); and bc exported with
# its real weights (fp32 in the file).
run bc train "${TINY[@]}" --weights bc --qb --test-weights quantized \
    --out "$tmp/bc.fmp" --state "$tmp/bc.fm"
bc_rc=$rc
run xnor train "${TINY[@]}" --weights bc-det --acts binary --out "$tmp/xnor.fmp" --state "$tmp/xnor.fm"
xnor_rc=$rc
run mean train "${TINY[@]}" --weights bc --export mean --out "$tmp/mean.fmp"
mean_rc=$rc
# ternary (2 bits) and synapse (26 levels: 6 bits) packed weights
run tern train "${TINY[@]}" --weights tc-det --out "$tmp/tern.fmp" --state "$tmp/tern.fm"
tern_rc=$rc
run syn train "${TINY[@]}" --weights synapse --test-weights quantized --out "$tmp/syn.fmp" \
    --state "$tmp/syn.fm"
syn_rc=$rc
if [ "$bc_rc" -ne 0 ] || [ "$xnor_rc" -ne 0 ] || [ "$mean_rc" -ne 0 ] || [ "$tern_rc" -ne 0 ] ||
    [ "$syn_rc" -ne 0 ]; then
    not_ok "train tiny models" "exit $bc_rc/$xnor_rc/$mean_rc/$tern_rc/$syn_rc: $(first_err_line bc) $(first_err_line xnor) $(first_err_line mean) $(first_err_line tern) $(first_err_line syn)"
    finish
    exit
fi
check "train --json reports both files, size and bits per weight" '
import json, os, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
for k in ["out", "out_bytes", "bits_per_weight", "out_weights", "export", "state", "acts"]:
    if k not in r:
        sys.exit("no key " + k)
if r["out"] != sys.argv[2] or r["state"] != sys.argv[3]:
    sys.exit("out/state %r %r" % (r["out"], r["state"]))
if r["out_bytes"] != os.path.getsize(sys.argv[2]):
    sys.exit("out_bytes %r, file has %d" % (r["out_bytes"], os.path.getsize(sys.argv[2])))
if r["bits_per_weight"] != 1 or r["out_weights"] != "binary" or r["export"] != "det":
    sys.exit("bits %r weights %r export %r" % (r["bits_per_weight"], r["out_weights"], r["export"]))
if open(sys.argv[2], "rb").read(8) != b"FMULPACK" or open(sys.argv[3], "rb").read(8) != b"FMULMODL":
    sys.exit("--out is not packed or --state is not the training state")
' "$tmp/bc" "$tmp/bc.fmp" "$tmp/bc.fm"

# ---- info ----------------------------------------------------------------------

run info_bc info "$tmp/bc.fmp" --json
run info_xnor info --json "$tmp/xnor.fmp"
run info_mean info "$tmp/mean.fmp" --json
check "info: 1-bit binary layers, much smaller than the fp32 export" '
import json, sys
bc, xnor, mean = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:4])
for r in (bc, xnor):
    if [(l["weights"], l["bits"]) for l in r["layers"]] != [("binary", 1)] * 2:
        sys.exit("layers %r" % r["layers"])
    if r["input"] != "28x28x1" or r["classes"] != 10 or r["bits_per_weight"] != 1:
        sys.exit("input %r classes %r bits %r" % (r["input"], r["classes"], r["bits_per_weight"]))
if [(l["weights"], l["bits"]) for l in mean["layers"]] != [("fp32", 32)] * 2:
    sys.exit("--export mean layers %r" % mean["layers"])
if not bc["file_bytes"] * 10 < mean["file_bytes"]:
    sys.exit("packed %d bytes, fp32 %d" % (bc["file_bytes"], mean["file_bytes"]))
acts = [(l["input"], l["activation"]) for l in xnor["layers"]]
if acts != [("real", "sign"), ("binary", "none")]:
    sys.exit("--acts binary layers (input, activation) %r" % acts)
if [(l["input"], l["activation"]) for l in bc["layers"]] != [("real", "relu"), ("real", "none")]:
    sys.exit("relu layers %r" % bc["layers"])
if bc["kernels"] not in bc["kernels_available"] or bc["kernels_available"][-1] != "fp32":
    sys.exit("kernels %r of %r" % (bc["kernels"], bc["kernels_available"]))
' "$tmp/info_bc" "$tmp/info_xnor" "$tmp/info_mean"
variants=$(python3 -c 'import json,sys; print(" ".join(json.loads(open(sys.argv[1]).read().splitlines()[-1])["kernels_available"]))' "$tmp/info_bc" 2>/dev/null)
run info_tern info "$tmp/tern.fmp" --json
run info_syn info "$tmp/syn.fmp" --json
check "info: ternary 2 bits, synapse 26 levels in 6 bits" '
import json, sys
tern, syn = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:3])
if [(l["weights"], l["bits"], l["levels"]) for l in tern["layers"]] != [("ternary", 2, 0)] * 2:
    sys.exit("tc-det layers %r" % tern["layers"])
if [(l["weights"], l["bits"], l["levels"]) for l in syn["layers"]] != [("synapse", 6, 26)] * 2:
    sys.exit("synapse layers %r" % syn["layers"])
if tern["layers"][0]["weight_bytes"] != 64 * 784 * 2 // 8:
    sys.exit("ternary weight bytes %r" % tern["layers"][0]["weight_bytes"])
' "$tmp/info_tern" "$tmp/info_syn"
run info_text info "$tmp/xnor.fmp"
if [ "$rc" -eq 0 ] && grep -q 'binary' "$tmp/info_text" && grep -q 'sign' "$tmp/info_text" &&
    grep -q 'kernels here' "$tmp/info_text"; then
    ok "info text"
else
    not_ok "info text" "exit $rc: $(head -n 3 "$tmp/info_text")"
fi

# ---- eval and infer agree ------------------------------------------------------

# error_pct of a --json result
err_of() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["error_pct"])' "$tmp/$1" 2>/dev/null; }

for m in bc xnor tern syn; do
    run "eval_packed_$m" eval --model "$tmp/$m.fmp" --data "$DATA" --json
    run "eval_state_$m" eval --model "$tmp/$m.fm" --data "$DATA" --json
    run "infer_$m" infer --model "$tmp/$m.fmp" --data "$DATA" --json
    packed=$(err_of "eval_packed_$m") state=$(err_of "eval_state_$m") inferred=$(err_of "infer_$m")
    if [ -n "$packed" ] && [ "$packed" = "$inferred" ]; then
        ok "$m: eval of the packed file = infer ($packed%)"
    else
        not_ok "$m: eval of the packed file = infer" "eval '$packed', infer '$inferred': $(first_err_line "infer_$m")"
    fi
    if [ -n "$state" ] && [ "$state" = "$inferred" ]; then
        ok "$m: infer = eval of the training state with deterministic weights ($state%)"
    else
        described=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["describe"])' "$tmp/eval_state_$m" 2>/dev/null)
        not_ok "$m: infer = eval of the training state" "state '$state' ($described), infer '$inferred': $(first_err_line "eval_state_$m")"
    fi
    for v in $variants; do
        [ "$v" = fp32 ] && continue
        run "infer_${m}_$v" infer --model "$tmp/$m.fmp" --data "$DATA" --kernels "$v" --json
        got=$(err_of "infer_${m}_$v")
        if [ -n "$got" ] && [ "$got" = "$inferred" ]; then
            ok "$m: infer --kernels $v gives the same error"
        else
            not_ok "$m: infer --kernels $v" "error '$got', default '$inferred': $(first_err_line "infer_${m}_$v")"
        fi
    done
done
# Training measured its test error with the weights each file deploys: the
# deterministic ones (bc with --test-weights quantized, bc-det), and the real
# ones for bc exported with --export mean.
run infer_mean infer --model "$tmp/mean.fmp" --data "$DATA" --json
for m in bc xnor mean tern syn; do
    trained=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["test_error_pct"])' "$tmp/$m" 2>/dev/null)
    inferred=$(err_of "infer_$m")
    if [ -n "$trained" ] && [ "$trained" = "$inferred" ]; then
        ok "$m: infer = the training run's own test error ($trained%)"
    else
        not_ok "$m: infer = the training run's own test error" "train '$trained', infer '$inferred'"
    fi
done
check "eval --json says which format it read" '
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:3])
if a["format"] != "packed" or b["format"] != "state" or b["kernels"] is not None:
    sys.exit("formats %r %r" % (a["format"], b["format"]))
' "$tmp/eval_packed_bc" "$tmp/eval_state_bc"

# --show N: the first images' predictions; all of them agree with the error
run show infer --model "$tmp/bc.fmp" --data "$DATA" --show 5
check "infer --show 5: five lines 'image I: class C, label L' before the summary" '
import re, sys
lines = open(sys.argv[1]).read().splitlines()
shown = [l for l in lines if l.startswith("image ")]
if len(shown) != 5 or lines[:5] != shown:
    sys.exit("lines %r" % lines[:7])
for i, l in enumerate(shown):
    m = re.fullmatch(r"image (\d+): class (\d), label (\d)( \(wrong\))?", l)
    if not m or int(m.group(1)) != i or (m.group(2) != m.group(3)) != bool(m.group(4)):
        sys.exit("line %r" % l)
' "$tmp/show"
run showall infer --model "$tmp/bc.fmp" --data "$DATA" --show 1000000 --json
check "infer --show beyond the set: every image, wrong ones matching error_pct" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
c, l = r["shown_classes"], r["shown_labels"]
if len(c) != r["images"] or len(l) != r["images"]:
    sys.exit("%d classes, %d labels, %d images" % (len(c), len(l), r["images"]))
wrong = sum(a != b for a, b in zip(c, l))
if abs(100.0 * wrong / r["images"] - r["error_pct"]) > 1e-9:
    sys.exit("%d wrong of %d, error_pct %r" % (wrong, r["images"], r["error_pct"]))
' "$tmp/showall"
run infer1 infer --model "$tmp/xnor.fmp" --data "$DATA" --batch 1 --threads 1 --json
check "infer --batch 1 --threads 1: same error, JSON keys" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
need = ["error_pct", "images", "images_per_s", "latency_us_median", "batch", "batches", "seconds",
        "kernels", "threads", "model", "describe", "input", "input_dim", "classes", "data", "set"]
missing = [k for k in need if k not in r]
if missing:
    sys.exit("lacks " + ", ".join(missing))
if r["batch"] != 1 or r["batches"] != 10000 or r["threads"] != 1 or str(r["error_pct"]) != sys.argv[2]:
    sys.exit("batch %r batches %r threads %r error %r (expected %s)" %
             (r["batch"], r["batches"], r["threads"], r["error_pct"], sys.argv[2]))
if not (r["images_per_s"] > 0 and r["latency_us_median"] > 0):
    sys.exit("timings %r %r" % (r["images_per_s"], r["latency_us_median"]))
' "$tmp/infer1" "$(err_of infer_xnor)"
# OMP_THREAD_LIMIT caps the threads, those the library starts to probe the
# room for them included (an emulator that cannot start one hangs there).
OMP_THREAD_LIMIT=1 run infer_omp1 infer --model "$tmp/xnor.fmp" --data "$DATA" --threads 3 --json
check "infer --threads 3 under OMP_THREAD_LIMIT=1: 1 thread, said in one warning" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
err = open(sys.argv[1] + ".err").read().splitlines()
if int(sys.argv[3]) != 0 or r["threads"] != 1 or str(r["error_pct"]) != sys.argv[2]:
    sys.exit("exit %s, threads %r, error %r (expected 0, 1, %s)" % (sys.argv[3], r["threads"],
             r["error_pct"], sys.argv[2]))
if len(err) != 1 or "running on 1 thread of the 3 asked for" not in err[0] or "OMP_THREAD_LIMIT" not in err[0]:
    sys.exit("stderr: %r" % err)
' "$tmp/infer_omp1" "$(err_of infer_xnor)" "$rc"

# ---- bench infer ---------------------------------------------------------------

run bench bench infer --model "$tmp/xnor.fmp" --runs 20 --json
check "bench infer --json: every variant, 0 mismatches" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
names = [v["name"] for v in r["variants"]]
if names != sys.argv[2].split():
    sys.exit("variants %r, info lists %r" % (names, sys.argv[2]))
if r["mismatches"] != 0 or any(v["mismatches"] != 0 for v in r["variants"]):
    sys.exit("mismatches %r" % [(v["name"], v["mismatches"]) for v in r["variants"]])
if r["runs"] != 20 or r["throughput_runs"] != 5 or r["batch"] != 256:
    sys.exit("runs %r/%r batch %r" % (r["runs"], r["throughput_runs"], r["batch"]))
for v in r["variants"]:
    if not (v["latency_us"] > 0 and v["images_per_s"] > 0):
        sys.exit("timings of %s" % v["name"])
    if v["name"] == "fp32" and (v["latency_speedup_vs_fp32"] != 1 or v["throughput_speedup_vs_fp32"] != 1):
        sys.exit("fp32 against itself %r" % v)
' "$tmp/bench" "$variants"
run bench_some bench infer --model "$tmp/xnor.fmp" --runs 6 --kernels "$(echo "$variants" | awk '{print $NF "," $1}')" --json
check "bench infer --kernels: only the variants named, in their order" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
names = [v["name"] for v in r["variants"]]
want = sys.argv[2].split()
if names != [want[-1], want[0]] or r["runs"] != 6 or r["mismatches"] != 0:
    sys.exit("variants %r (wanted %r), runs %r, mismatches %r" % (names, [want[-1], want[0]], r["runs"], r["mismatches"]))
' "$tmp/bench_some" "$variants"
run bench_text bench infer --model "$tmp/bc.fmp" --runs 5
if [ "$rc" -eq 0 ] && grep -q '^fp32 ' "$tmp/bench_text" && grep -q 'same classes' "$tmp/bench_text"; then
    ok "bench infer table"
else
    not_ok "bench infer table" "exit $rc: $(first_err_line bench_text)"
fi

# ---- FEWMUL_KERNELS, damaged files ---------------------------------------------

last_args=(FEWMUL_KERNELS=bogus info "$tmp/bc.fmp")
FEWMUL_KERNELS=bogus timeout 60 "$FEWMUL" info "$tmp/bc.fmp" >"$tmp/env" 2>"$tmp/env.err" </dev/null
rc=$?
expect_fail "FEWMUL_KERNELS=bogus fails clearly" 1 'FEWMUL_KERNELS' env
# neon is a known name: a build for aarch64 runs it, any other refuses it (exit 1)
last_args=(FEWMUL_KERNELS=neon info "$tmp/bc.fmp")
FEWMUL_KERNELS=neon timeout 60 "$FEWMUL" info "$tmp/bc.fmp" >"$tmp/env_neon" 2>"$tmp/env_neon.err" </dev/null
rc=$?
if [ "$rc" -eq 0 ] && grep -q '^kernels here: neon' "$tmp/env_neon"; then
    ok "FEWMUL_KERNELS=neon runs NEON in a build for aarch64"
else
    expect_fail "FEWMUL_KERNELS=neon where the build is not for aarch64" 1 \
        'FEWMUL_KERNELS=neon: this build has no NEON kernels \(not built for aarch64\)' env_neon
fi

size=$(wc -c <"$tmp/bc.fmp")
head -c $((size / 2)) "$tmp/bc.fmp" >"$tmp/trunc.fmp"
cp "$tmp/bc.fmp" "$tmp/flip.fmp"
printf '\377\377\377\377' | dd of="$tmp/flip.fmp" bs=1 seek=$((size / 2)) conv=notrunc status=none
for f in trunc flip; do
    run "bad_info_$f" info "$tmp/$f.fmp"
    expect_fail "info on a damaged packed file ($f)" 4 "$f\\.fmp" "bad_info_$f"
    run "bad_infer_$f" infer --model "$tmp/$f.fmp" --data "$DATA"
    expect_fail "infer on a damaged packed file ($f)" 4 "$f\\.fmp" "bad_infer_$f"
    run "bad_eval_$f" eval --model "$tmp/$f.fmp" --data "$DATA"
    expect_fail "eval on a damaged packed file ($f)" 4 "$f\\.fmp" "bad_eval_$f"
done
run state_info info "$tmp/bc.fm"
expect_fail "info on a training-state file says so" 4 'bc\.fm.*state' state_info

# ---- convolutional networks ----------------------------------------------------

# Small conv nets exported by train --out: fully binary (bc-det, binary
# activations: xnor convolutions, pools on bits) and ternary with global
# average pooling; info, eval of both files, infer with every variant and
# bench infer must all agree with the training run's own test error.
CONV=(--data "$DATA" --epochs 1 --train-limit 2000 --valid 500 --batch 100 --quiet --json)
run cnn train "${CONV[@]}" --arch conv:8k3,pool2,16k3same,pool2,fc32 --weights bc-det \
    --acts binary --out "$tmp/cnn.fmp" --state "$tmp/cnn.fm"
cnn_rc=$rc
run cnngap train "${CONV[@]}" --arch conv:8k3,pool2,16k3,gap --weights tc --qb \
    --test-weights quantized --out "$tmp/cnngap.fmp"
if [ "$cnn_rc" -ne 0 ] || [ "$rc" -ne 0 ]; then
    not_ok "train --out of conv nets" "exit $cnn_rc/$rc: $(first_err_line cnn) $(first_err_line cnngap)"
else
    ok "train --out of conv nets"
    run cnn_info info "$tmp/cnn.fmp" --json
    check "info of a conv file: its records, maps and binary inputs" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
types = [l["type"] for l in r["layers"]]
if types != ["conv", "maxpool", "conv", "maxpool", "dense", "dense"]:
    sys.exit("types %r" % types)
c1, p1, c2 = r["layers"][:3]
if c1["in_map"] != [28, 28, 1] or c1["out_map"] != [26, 26, 8] or c1["kernel_h"] != 3:
    sys.exit("first conv %r" % c1)
if p1["out_map"] != [13, 13, 8] or c2["pad_top"] != 1 or c2["input"] != "binary":
    sys.exit("pool %r second conv %r" % (p1, c2))
if c1["weight_count"] != 72 or r["weights"] != 72 + 1152 + 576 * 32 + 320 or r["bits_per_weight"] != 1:
    sys.exit("weights %r %r" % (c1["weight_count"], r["weights"]))
' "$tmp/cnn_info"
    run cnn_info_text info "$tmp/cnn.fmp"
    if [ "$rc" -eq 0 ] && grep -q 'conv .*13x13x8 > 3x3 s1 pad 1,1 > 13x13x16' "$tmp/cnn_info_text" &&
        grep -q 'maxpool' "$tmp/cnn_info_text"; then
        ok "info text of a conv file"
    else
        not_ok "info text of a conv file" "exit $rc: $(head -n 5 "$tmp/cnn_info_text")"
    fi
    for m in cnn cnngap; do
        trained=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["test_error_pct"])' "$tmp/$m" 2>/dev/null)
        run "eval_$m" eval --model "$tmp/$m.fmp" --data "$DATA" --json
        got=$(err_of "eval_$m")
        if [ -n "$trained" ] && [ "$got" = "$trained" ]; then
            ok "$m: eval of the packed conv file = the training run's test error ($trained%)"
        else
            not_ok "$m: eval of the packed conv file" "train '$trained', eval '$got': $(first_err_line "eval_$m")"
        fi
        for v in $variants; do
            run "infer_${m}_$v" infer --model "$tmp/$m.fmp" --data "$DATA" --kernels "$v" --json
            got=$(err_of "infer_${m}_$v")
            if [ -n "$got" ] && [ "$got" = "$trained" ]; then
                ok "$m: infer --kernels $v = the training run's test error"
            else
                not_ok "$m: infer --kernels $v" "error '$got', training '$trained': $(first_err_line "infer_${m}_$v")"
            fi
        done
    done
    run cnn_state eval --model "$tmp/cnn.fm" --data "$DATA" --json
    if [ "$(err_of cnn_state)" = "$(err_of eval_cnn)" ]; then
        ok "cnn: eval of the training state = eval of the packed file"
    else
        not_ok "cnn: eval of the training state" "state '$(err_of cnn_state)', packed '$(err_of eval_cnn)'"
    fi
    run cnn_bench bench infer --model "$tmp/cnn.fmp" --runs 5 --json
    check "bench infer of a conv file: every variant, 0 mismatches" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
names = [v["name"] for v in r["variants"]]
if names != sys.argv[2].split() or r["mismatches"] != 0:
    sys.exit("variants %r mismatches %r" % (names, r["mismatches"]))
if any(not (v["latency_us"] > 0 and v["images_per_s"] > 0) for v in r["variants"]):
    sys.exit("timings %r" % r["variants"])
' "$tmp/cnn_bench" "$variants"
fi

# ---- the example program -------------------------------------------------------

if [ -n "$EXAMPLE" ] && [ -x "$EXAMPLE" ]; then
    timeout 120 "$EXAMPLE" "$tmp/xnor.fmp" "$TRAIN_DIR/t10k-images-idx3-ubyte.gz" \
        "$TRAIN_DIR/t10k-labels-idx1-ubyte.gz" >"$tmp/example" 2>"$tmp/example.err"
    rc=$?
    check "examples/classify_idx: accuracy = 100 - infer's error" '
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"accuracy ([0-9.]+)%", text)
if not m:
    sys.exit("exit %s, output %r %r" % (sys.argv[3], text, open(sys.argv[1] + ".err").read()))
if abs(float(m.group(1)) - (100 - float(sys.argv[2]))) > 0.006:
    sys.exit("accuracy %s, infer error %s" % (m.group(1), sys.argv[2]))
' "$tmp/example" "$(err_of infer_xnor)" "$rc"
    timeout 60 "$EXAMPLE" "$tmp/trunc.fmp" "$TRAIN_DIR/t10k-images-idx3-ubyte.gz" \
        "$TRAIN_DIR/t10k-labels-idx1-ubyte.gz" >"$tmp/example" 2>"$tmp/example.err"
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q 'trunc\.fmp' "$tmp/example.err"; then
        ok "examples/classify_idx on a damaged file"
    else
        not_ok "examples/classify_idx on a damaged file" "exit $rc: $(head -c 200 "$tmp/example.err")"
    fi
else
    skip "examples/classify_idx" "not built (FEWMUL_EXAMPLES=OFF) or not given"
fi

finish
