#!/usr/bin/env bash
# cli_mpi.sh — `mpirun -np 2 fewmul train` as a user meets it: the same losses
# and errors as one process with the same global minibatch (up to float
# rounding); only rank 0 prints and writes the log, the models and the
# checkpoint, which holds the whole run's ledger with its network level;
# compressed exchanges send a quarter of the bytes; a rank that cannot start
# (missing data, other data) or fails mid-run (its checkpoint cannot be
# written) ends every rank with a message naming it, and a rank killed with
# SIGKILL ends the run, never a hang. Without MPI in the build, a launch of
# several ranks is refused (exit 4). Oversubscribed, and as root where CI
# runs it (--allow-run-as-root).
# Usage: cli_mpi.sh PATH_TO_fewmul [SHARED_DATA_DIR] [with-mpi|without-mpi]
set -u

NAME=cli_mpi.sh
source "$(dirname "$0")/cli_common.sh"
built=${3:-with-mpi}

if [ "$built" = without-mpi ]; then
    # the launcher's environment, as Open MPI sets it, without a launcher
    OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 run refused train --data fashion --epochs 1
    check "a 2-rank launch without MPI in the build is refused (exit 4)" '
import sys
err = open(sys.argv[2]).read()
if sys.argv[1] != "4" or "built without MPI" not in err:
    sys.exit("exit %s: %s" % (sys.argv[1], err))' "$rc" "$tmp/refused.err"
    finish
    exit $?
fi

if ! command -v mpirun >/dev/null; then
    echo "$NAME: SKIP: mpirun not found (Debian: openmpi-bin)"
    exit 77
fi
# Open MPI refuses root without the first flag; the second lets 2 ranks share fewer cores.
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
# containers often forbid the cross-memory attach of the shared-memory transport
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}

# mpi_run OUT SECONDS MPIRUN_ARGS...: like run, through mpirun, with a time limit
mpi_run() {
    local out=$1 limit=$2
    shift 2
    last_args=("$@")
    timeout -k 5 "$limit" "${mpi[@]}" "$@" >"$tmp/$out" 2>"$tmp/$out.err" </dev/null
    rc=$?
}

data=$tmp/data
make_idx "$data" 2500 300 12
other=$tmp/other
make_idx "$other" 2400 300 12
# 2,000 training images in minibatches of 100: 20 steps an epoch
args=(--data "idx:$data" --arch mlp:64,32 --valid 500 --epochs 3 --batch 100 --momentum 0.9
      --dropout 0.1 --seed 9 --threads 1)

# ---- the same run on one process and on two ranks -----------------------------
run one train "${args[@]}" --quiet --json --log "$tmp/one.jsonl"
mpi_run two 120 -np 2 "$FEWMUL" train "${args[@]}" --json --log "$tmp/two.jsonl" \
    --state "$tmp/two.fm" --out "$tmp/two.fmp" --checkpoint "$tmp/two.fmc" --ledger
if [ "$rc" -ne 0 ]; then
    not_ok "2 ranks train" "exit $rc: $(first_err_line two)"
else
    ok "2 ranks train"
fi
check "2 ranks: the losses and errors of one process, epoch by epoch" '
import json, sys
one = [json.loads(l) for l in open(sys.argv[1])]
two = [json.loads(l) for l in open(sys.argv[2])]
e1 = [r for r in one if "epoch" in r]
e2 = [r for r in two if "epoch" in r]
if len(e1) != 3 or len(e2) != 3:
    sys.exit("epoch lines: %d and %d (expected 3 each: rank 0 alone logs)" % (len(e1), len(e2)))
worst = 0.0
for a, b in zip(e1, e2):
    rel = abs(a["train_loss"] - b["train_loss"]) / abs(a["train_loss"])
    worst = max(worst, rel)
    if rel > 1e-4:
        sys.exit("epoch %d: loss %r against %r" % (a["epoch"], a["train_loss"], b["train_loss"]))
    for k in ("valid_error_pct", "test_error_pct", "train_error_pct"):
        if abs(a[k] - b[k]) > 0.5:
            sys.exit("epoch %d: %s %r against %r" % (a["epoch"], k, a[k], b[k]))
print("largest relative loss difference %.3g" % worst, file=sys.stderr)
' "$tmp/one.jsonl" "$tmp/two.jsonl"
check "2 ranks: one --json result (rank 0), naming 2 ranks" '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
if len(lines) != 1:
    sys.exit("%d result lines" % len(lines))
r = json.loads(lines[0])
if r["ranks"] != 2 or r["compress"] != "none" or r["threads"] != 1:
    sys.exit("ranks %r, compress %r, threads %r" % (r["ranks"], r["compress"], r["threads"]))
' "$tmp/two"
check "2 ranks: one plan line and no message from rank 1" '
import sys
err = open(sys.argv[1]).read()
plans = [l for l in err.splitlines() if "on each of 2 MPI ranks" in l]
if len(plans) != 1 or "rank 1" in err:
    sys.exit(err)
' "$tmp/two.err"
if [ -s "$tmp/two.fm" ] && [ -s "$tmp/two.fmp" ] && [ -s "$tmp/two.fmc" ] && [ ! -e "$tmp/two.fmc.tmp" ]; then
    ok "2 ranks: rank 0 wrote the state, the packed model and the checkpoint"
else
    not_ok "2 ranks: rank 0 wrote the state, the packed model and the checkpoint" "$(ls "$tmp")"
fi
run two_eval eval --model "$tmp/two.fmp" --data "idx:$data" --json
check "2 ranks: the packed model evaluates to the run's test error" '
import json, sys
run = json.loads(open(sys.argv[1]).read())
ev = json.loads(open(sys.argv[2]).read())
if abs(ev["error_pct"] - run["test_error_pct"]) > 1.0:
    sys.exit("eval %r, run %r" % (ev["error_pct"], run["test_error_pct"]))
' "$tmp/two" "$tmp/two_eval"
run two_info info "$tmp/two.fmc" --json
check "2 ranks: the checkpoint holds both ranks' ledger: all training images, the network level" '
import json, sys
run = json.loads(open(sys.argv[1]).read())
info = json.loads(open(sys.argv[2]).read())
led = run["ledger"]
if led["passes"]["update"]["examples"] != 3 * 2000:
    sys.exit("training examples %r" % led["passes"]["update"]["examples"])
sent = led["total"]["written_bytes"].get("network", 0)
if sent <= 0 or led["total"]["read_bytes"].get("network") != sent:
    sys.exit("network bytes %r" % led["total"])
grad = [t for t in led["tensors"] if t["name"].startswith("net:") and t["level"] != "network"]
if grad:
    sys.exit("tensors not at the network level: %r" % grad)
if not info.get("ledger"):
    sys.exit("the checkpoint has no ledger: %r" % info)
' "$tmp/two" "$tmp/two_info"

# ---- compression ------------------------------------------------------------
for how in int8 pow2; do
    mpi_run "c_$how" 120 -np 2 "$FEWMUL" train "${args[@]}" --json --ledger --compress "$how"
    check "--compress $how: trains, and sends about a quarter of the gradient bytes" '
import json, sys
plain = json.loads(open(sys.argv[1]).read())
comp = json.loads(open(sys.argv[2]).read())
def grad_bytes(r):
    # the update phase of each weighted layer: its gradient exchange
    return sum(l["phases"]["update"]["written_bytes"].get("network", 0)
               for l in r["ledger"]["layers"] if l["name"].startswith("dense") and "update" in l["phases"])
a, b = grad_bytes(plain), grad_bytes(comp)
if not (0.24 * a < b < 0.27 * a):
    sys.exit("gradient bytes %d against %d" % (b, a))
if comp["compress"] != sys.argv[3] or comp["test_error_pct"] > plain["test_error_pct"] + 10:
    sys.exit("compress %r, test error %r against %r" % (comp["compress"], comp["test_error_pct"], plain["test_error_pct"]))
' "$tmp/two" "$tmp/c_$how" "$how"
done

# ---- failures: every rank ends, with the rank that failed named ----------------
expect_all_end() { # NAME STATUS_RE WHAT_RANK0_SAYS WHAT_RANK1_SAYS
    check "$1" '
import re, sys
status, err, r0, r1 = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
if status in ("0", "124", "137"):
    sys.exit("exit %s (124/137: a hang)\n%s" % (status, err))
if not re.search(r0, err) or not re.search(r1, err):
    sys.exit("messages lack %r or %r:\n%s" % (r0, r1, err))
' "$rc" "$tmp/$2.err" "$3" "$4"
}
small=(--arch mlp:16 --valid 500 --epochs 2 --batch 100 --threads 1 --quiet)
mpi_run nodata 60 -np 1 "$FEWMUL" train --data "idx:$data" "${small[@]}" : \
    -np 1 "$FEWMUL" train --data "idx:$tmp/missing" "${small[@]}"
expect_all_end "a rank without its data: both ranks end" nodata \
    'rank 0 of 2: rank 1 of 2 failed: .*missing' 'rank 1 of 2: .*missing'
mpi_run otherdata 60 -np 1 "$FEWMUL" train --data "idx:$data" "${small[@]}" : \
    -np 1 "$FEWMUL" train --data "idx:$other" "${small[@]}"
expect_all_end "ranks with other data sets: refused on both" otherdata \
    "rank 0 of 2: rank 1's data differs from rank 0's" "rank 1 of 2: rank 1's data differs"
mpi_run otherseed 60 -np 1 "$FEWMUL" train --data "idx:$data" "${small[@]}" : \
    -np 1 "$FEWMUL" train --data "idx:$data" "${small[@]}" --seed 5
expect_all_end "ranks with another --seed: refused on both" otherseed \
    "rank 0 of 2: rank 1's configuration differs from rank 0's: seed" "rank 1 of 2: rank 1's configuration"
# rank 0's checkpoint cannot be written once training has begun: a name of
# 250 characters leaves no room for its temporary file's, 15 longer than
# NAME_MAX (only rank 0 writes checkpoints; its lock file's name still fits).
# The name comes first: a rank's message is cut at the exchange's length.
blocked=blocked.fmc.$(printf 'b%.0s' $(seq 238))
mpi_run blocked 60 -np 2 "$FEWMUL" train --data "idx:$data" "${small[@]}" --checkpoint "$tmp/$blocked"
expect_all_end "rank 0's checkpoint cannot be written: both ranks end" blocked \
    'rank 0 of 2: .*blocked\.fmc' 'rank 1 of 2: rank 0 of 2 failed: .*blocked\.fmc'
check "a failed write ends the run with exit 5 (rank 0) or 7 (the rank it stopped)" '
import sys
if sys.argv[1] not in ("5", "7"):
    sys.exit("mpirun exit %s" % sys.argv[1])' "$rc"

# a rank killed outright: the launcher ends the run
big=(--data "idx:$data" --arch mlp:512,512 --valid 500 --epochs 200 --batch 100 --threads 1 --quiet)
( "${mpi[@]}" -np 2 bash -c 'echo $$ >"$0.$OMPI_COMM_WORLD_RANK"; exec "$1" "${@:2}"' "$tmp/pid" \
      "$FEWMUL" train "${big[@]}" >"$tmp/killed" 2>"$tmp/killed.err" </dev/null ) &
launcher=$!
for _ in $(seq 100); do [ -s "$tmp/pid.1" ] && break; sleep 0.1; done
sleep 1
kill -KILL "$(cat "$tmp/pid.1")" 2>/dev/null
waited=0
while kill -0 "$launcher" 2>/dev/null && [ "$waited" -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
if kill -0 "$launcher" 2>/dev/null; then
    kill -KILL "$launcher"
    not_ok "rank 1 killed with SIGKILL: the run ends" "still running after 60 s"
else
    wait "$launcher"
    status=$?
    if [ "$status" -ne 0 ]; then
        ok "rank 1 killed with SIGKILL: the run ends (exit $status after $((waited / 10)) s)"
    else
        not_ok "rank 1 killed with SIGKILL: the run ends" "exit 0: $(head -n 3 "$tmp/killed.err")"
    fi
fi

# ---- usage -------------------------------------------------------------------
mpi_run tiny 60 -np 2 "$FEWMUL" train --data "idx:$data" "${small[@]}" --batch 1
expect_all_end "a minibatch of 1 image on 2 ranks: refused on both" tiny \
    'rank 0 of 2: a minibatch of 1 images cannot be shared by 2 ranks' 'rank 1 of 2: a minibatch'

finish
