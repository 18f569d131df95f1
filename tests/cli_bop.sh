#!/usr/bin/env bash
# cli_bop.sh — `fewmul train --opt bop` and `fewmul energy --opt bop` as a
# user meets them: a run on small synthetic data learns and reports bop in its
# plan and JSON, and the report page names its mode; its packed model (--out) is 1 bit a weight and evaluates to
# the run's test error; a run stopped by SIGTERM mid-epoch and resumed from
# its checkpoint ends with the same model file, byte for byte, as a run never
# stopped; two MPI ranks train as one process does (skipped without mpirun
# or MPI in the build); the energy report shows the bits and momenta in
# place of fp32 latent weights, and with bf16 momenta a quarter of bc+qb's
# data movement; a run with bf16 momenta and a decaying gamma says so.
# Usage: cli_bop.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_bop.sh
source "$(dirname "$0")/cli_common.sh"

data=$tmp/data
make_idx "$data" 6000 500 16
# 5,500 training images in batches of 50: 110 steps an epoch
args=(--data "idx:$data" --arch mlp:256,256 --weights bc-det --qb --opt bop --valid 500
      --epochs 3 --batch 50 --threads 2 --seed 5)

# ---- a run ---------------------------------------------------------------------
run ref train "${args[@]}" --json --state "$tmp/ref.fm" --out "$tmp/ref.fmp" --log "$tmp/ref.jsonl" \
    --ledger
if [ "$rc" -ne 0 ]; then
    not_ok "train --opt bop" "exit $rc: $(first_err_line ref)"
    finish
    exit 1
fi
ok "train --opt bop"
check "bop learns, and its JSON and plan name it" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["opt"] != "bop" or r["weights"] != "bc-det" or abs(r["bop_gamma"] - 0.001) > 1e-12 \
        or abs(r["bop_threshold"] - 1e-6) > 1e-18:
    sys.exit("opt %r weights %r gamma %r threshold %r" % (r["opt"], r["weights"], r.get("bop_gamma"),
             r.get("bop_threshold")))
if not r["test_error_pct"] < 40.0:  # 10 classes: chance is 90 %
    sys.exit("test error %r" % r["test_error_pct"])
if r["bits_per_weight"] > 1.1 or r["out_weights"] != "binary":
    sys.exit("packed weights %r, %r bits" % (r["out_weights"], r["bits_per_weight"]))
if "bop gamma 0.001, threshold 1e-06" not in open(sys.argv[2]).read():
    sys.exit("plan: " + open(sys.argv[2]).read())
print("test error %.2f %%" % r["test_error_pct"], file=sys.stderr)
' "$tmp/ref" "$tmp/ref.err"
run ref_eval eval --model "$tmp/ref.fmp" --data "idx:$data" --json
check "the packed bop model evaluates to the run's test error" '
import json, sys
run = json.loads(open(sys.argv[1]).read().splitlines()[-1])
ev = json.loads(open(sys.argv[2]).read())
if abs(ev["error_pct"] - run["test_error_pct"]) > 1.0:
    sys.exit("eval %r, run %r" % (ev["error_pct"], run["test_error_pct"]))
' "$tmp/ref" "$tmp/ref_eval"

run page report "$tmp/ref.jsonl" -o "$tmp/page.html"
if [ "$rc" -eq 0 ] && grep -q 'bc-det+qb bop' "$tmp/page.html"; then
    ok "the report names a bop run's mode (bc-det+qb bop)"
else
    not_ok "the report names a bop run's mode (bc-det+qb bop)" "exit $rc: $(first_err_line page)"
fi

# ---- stopped by SIGTERM and resumed ----------------------------------------------
ck=$tmp/run.fmc
"$FEWMUL" train "${args[@]}" --quiet --checkpoint "$ck" --checkpoint-every 5 \
    --state "$tmp/stopped.fm" >"$tmp/bg.out" 2>"$tmp/bg.err" </dev/null &
pid=$!
for _ in $(seq 600); do [ -f "$ck" ] && break; sleep 0.02; done
sleep 0.3
kill -TERM "$pid" 2>/dev/null
wait "$pid"
stopped=$?
run info info "$ck" --json
check "SIGTERM stops a bop run mid-run with a checkpoint (exit 143)" '
import json, sys
if sys.argv[1] != "143":
    sys.exit("exit %s (the run may have finished first); its stderr: %r" %
             (sys.argv[1], open(sys.argv[3], errors="replace").read()[:600]))
r = json.loads(open(sys.argv[2]).read())
if r["epoch"] > 3:
    sys.exit("checkpoint of a finished run: %r" % r)
' "$stopped" "$tmp/info" "$tmp/bg.err"
run resumed train --resume "$ck" --quiet --state "$tmp/resumed.fm"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/ref.fm" "$tmp/resumed.fm"; then
    ok "the resumed bop run ends with the uninterrupted run's model file, byte for byte"
else
    not_ok "the resumed bop run ends with the uninterrupted run's model file, byte for byte" \
        "exit $rc: $(first_err_line resumed)"
fi

# ---- two MPI ranks ----------------------------------------------------------------
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
small=$tmp/small
make_idx "$small" 2500 300 12
margs=(--data "idx:$small" --arch mlp:64,32 --weights bc-det --qb --opt bop --valid 500 --epochs 3
       --batch 100 --seed 9 --threads 1)
if ! command -v mpirun >/dev/null; then
    skip "2 MPI ranks train bop as one process" "mpirun not found"
else
    run one train "${margs[@]}" --quiet --json --log "$tmp/one.jsonl"
    timeout -k 5 120 "${mpi[@]}" -np 2 "$FEWMUL" train "${margs[@]}" --quiet --json \
        --log "$tmp/two.jsonl" >"$tmp/two" 2>"$tmp/two.err" </dev/null
    rc=$?
    if [ "$rc" -ne 0 ] && grep -q "built without MPI" "$tmp/two.err"; then
        skip "2 MPI ranks train bop as one process" "built without MPI"
    elif [ "$rc" -ne 0 ]; then
        not_ok "2 MPI ranks train bop as one process" "exit $rc: $(first_err_line two)"
    else
        # a sum of gradients in another order can flip a weight at the
        # threshold one step apart: close, not equal
        check "2 MPI ranks train bop as one process" '
import json, sys
one = [json.loads(l) for l in open(sys.argv[1]) if "epoch" in l and "result" not in l]
two = [json.loads(l) for l in open(sys.argv[2]) if "epoch" in l and "result" not in l]
one = [r for r in one if "train_loss" in r]
two = [r for r in two if "train_loss" in r]
if len(one) != 3 or len(two) != 3:
    sys.exit("epoch lines %d and %d" % (len(one), len(two)))
for a, b in zip(one, two):
    if abs(a["train_loss"] - b["train_loss"]) > 0.02 * abs(a["train_loss"]):
        sys.exit("epoch %d: loss %r against %r" % (a["epoch"], a["train_loss"], b["train_loss"]))
    if abs(a["test_error_pct"] - b["test_error_pct"]) > 2.0:
        sys.exit("epoch %d: test error %r against %r" % (a["epoch"], a["test_error_pct"],
                 b["test_error_pct"]))
' "$tmp/one.jsonl" "$tmp/two.jsonl"
    fi
fi

# ---- the ledger ---------------------------------------------------------------------
run bc energy --arch paper-mlp --batch 200 --weights bc --qb --json
run bop energy --arch paper-mlp --batch 200 --weights bc-det --qb --opt bop --json
check "energy --opt bop: bits and momenta in place of fp32 latent weights, less data movement" '
import json, sys
bc = json.loads(open(sys.argv[1]).read().splitlines()[-1])
bop = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if bop["opt"] != "bop" or bc["opt"] != "sgd":
    sys.exit("opt %r, %r" % (bop["opt"], bc["opt"]))
t = {x["name"]: x for x in bop["train_step"]["tensors"]}
n = 1024 * 1024
if t["dense2.W"]["bytes"] != n // 8:
    sys.exit("dense2.W %r bytes, expected the %d bytes of its bits" % (t["dense2.W"]["bytes"], n // 8))
if "dense2.Wq" in t or "dense2.momentum" not in t or t["dense2.momentum"]["bytes"] != 4 * n:
    sys.exit("tensors %r" % sorted(t))
cb, cp = bc["train_step"]["total"]["communication"], bop["train_step"]["total"]["communication"]
if not cp < cb:
    sys.exit("communication %r against bc+qb %r" % (cp, cb))
print("training step communication: bc+qb %.4g, bop %.4g" % (cb, cp), file=sys.stderr)
' "$tmp/bc" "$tmp/bop"
run bop16 energy --arch paper-mlp --batch 200 --weights bc-det --qb --opt bop --latent bf16 --json
check "energy --opt bop --latent bf16: dW folded in 32 KiB tiles, 2-byte momenta, 4x less data movement" '
import json, sys
bc = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if r.get("latent") != "bf16" or "latent" in bc:
    sys.exit("latent %r, bc+qb %r" % (r.get("latent"), bc.get("latent")))
t = {x["name"]: x for x in r["train_step"]["tensors"]}
n = 1024 * 1024
if "dense2.dW" in t or t["dense2.dW.tile"]["bytes"] != 32768 or t["dense2.momentum"]["bytes"] != 2 * n:
    sys.exit("tensors %r" % {k: v["bytes"] for k, v in t.items() if k.startswith("dense2")})
cb, cp = bc["train_step"]["total"]["communication"], r["train_step"]["total"]["communication"]
if not 4 * cp <= cb:
    sys.exit("communication %r, not a quarter of bc+qb %r" % (cp, cb))
print("training step communication: bc+qb %.4g, bop bf16 %.4g (%.3fx less)" % (cb, cp, cb / cp),
      file=sys.stderr)
' "$tmp/bc" "$tmp/bop16"

# ---- bf16 momenta and a decaying gamma, through the command ---------------------------
run b16 train "${args[@]}" --epochs 2 --latent bf16 --bop-gamma 0.01 --bop-gamma-final 0.001 --json
check "train --latent bf16 --bop-gamma-final: learns, and its JSON and plan name both" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r.get("latent") != "bf16" or abs(r["bop_gamma_final"] - 0.001) > 1e-15:
    sys.exit("latent %r final gamma %r" % (r.get("latent"), r.get("bop_gamma_final")))
if not r["test_error_pct"] < 40.0:
    sys.exit("test error %r" % r["test_error_pct"])
plan = open(sys.argv[2]).read()
if "bop gamma 0.01 -> 0.001" not in plan or "bf16 learning state" not in plan:
    sys.exit("plan: " + plan)
' "$tmp/b16" "$tmp/b16.err"

finish
