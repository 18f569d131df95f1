#!/usr/bin/env bash
# cli_values.sh — values as the command meets them at their limits: numbers
# checked after the conversion to the 32-bit floats training computes with
# (--lr 1e39 is inf there, 1e-50 is 0), synapse ranges refused with their real
# reason; a run that diverges reports its loss as null (JSON) and names it (text),
# and --out or --state after it fails naming the file and the divergence
# (exit 1); error messages that echo a long value (a 5,000-item --arch, a
# 1,200-character path) keep their reason; report pages whose logs hold
# 5e-324, 1e-310, 1e308 or -0.0 have no NaN or infinity in a coordinate or a
# label; SIGTERM to the ranks of an MPI run is reported by rank 0 alone.
# Usage: cli_values.sh PATH_TO_fewmul [SHARED_DATA_DIR] [with-mpi|without-mpi]
set -u

NAME=cli_values.sh
source "$(dirname "$0")/cli_common.sh"
built=${3:-with-mpi}

data=$tmp/data
make_idx "$data" 300 60 8
TINY=(--data "idx:$data" --arch mlp:16 --valid 50 --batch 50 --threads 1 --quiet)

# ---- numbers as training uses them: 32-bit floats ---------------------------------

# the edge of the float range: 1e39 refused (inf as a float), 3e38 taken, and
# values that stay in range once rounded (--momentum 0.9999999) taken too
usage_error "--lr 1e39 (inf as a float)" '^fewmul: error: --lr: 1e39 is too large for a 32-bit float' \
    train "${TINY[@]}" --lr 1e39
cp "$tmp/err" "$tmp/lr_inf.err"
run ok_values train "${TINY[@]}" --epochs 1 --lr 3e38 --lr-final 1.2e-38 --momentum 0.9999999 \
    --dropout 0.9999999 --json
check "--lr at the float range's edge: 1e39 refused, 3e38 (and --momentum 0.9999999) taken" '
import json, sys
status, out, err, inf_err = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read(), open(sys.argv[4]).read()
if "too large for a 32-bit float" not in inf_err:
    sys.exit("--lr 1e39: %r" % inf_err)
if status != "0":
    sys.exit("exit %s: %s" % (status, err[:300]))
r = json.loads(out.splitlines()[-1])
if r["lr"] != 3e38:
    sys.exit("lr %r" % r["lr"])' "$rc" "$tmp/ok_values" "$tmp/ok_values.err" "$tmp/lr_inf.err"
usage_error "--lr 1e-50 (0 as a float, as --lr 0)" '--lr: 1e-50 becomes 0 as a 32-bit float' \
    train "${TINY[@]}" --lr 1e-50
usage_error "--lr 1e-40 (a denormal float)" '--lr: 1e-40 becomes 9.99995e-41 .*at least 1.17549e-38' \
    train "${TINY[@]}" --lr 1e-40
usage_error "--lr-final 1e-50 (0 as a float)" '--lr-final: 1e-50 becomes 0 as a 32-bit float' \
    train "${TINY[@]}" --lr-final 1e-50
usage_error "--momentum 0.99999999999 (1 as a float)" \
    '--momentum: 0.99999999999 becomes 1 as a 32-bit float.*must be in \[0, 1\)' \
    train "${TINY[@]}" --momentum 0.99999999999
usage_error "--dropout 0.999999999999 (1 as a float)" '--dropout: 0.999999999999 becomes 1 as a 32-bit float' \
    train "${TINY[@]}" --dropout 0.999999999999
usage_error "energy --momentum 0.99999999999 (1 as a float)" '--momentum: 0.99999999999 becomes 1' \
    energy --momentum 0.99999999999
usage_error "--synapse-range 1.00000001 (1 as a float)" '--synapse-range: 1.00000001 becomes 1 as a 32-bit float.*must be > 1' \
    train "${TINY[@]}" --synapse-range 1.00000001
usage_error "--synapse-range 1e39 (inf as a float)" '--synapse-range: 1e39 is too large for a 32-bit float' \
    train "${TINY[@]}" --synapse-range 1e39
usage_error "--synapse-range 1e30: its real reason, the levels' underflow" \
    'synapse range 1e\+30 is too large: the smallest magnitude H/R would be below 2\^-63.*R at most 2\^63' \
    train "${TINY[@]}" --synapse-range 1e30
usage_error "--synapse-range 1.00002 with 26 levels: levels closer than float rounding" \
    'synapse range 1.00002 is too close to 1 for 26 levels.*R at least 1.000024' \
    train "${TINY[@]}" --weights synapse --synapse-range 1.00002
usage_error "--synapse-range 9e18 for a layer whose H is 0.137" \
    'synapse range 9e\+18 is too large for weighted layer 1 \(64 x 16\).*H = 0.137' \
    train "${TINY[@]}" --weights synapse --synapse-range 9e18

# ---- a run that diverges ---------------------------------------------------------

run diverged train "${TINY[@]}" --epochs 3 --lr 1e30 --json --log "$tmp/diverged.jsonl"
check "a diverged run: final_train_loss null (not 0), exit 0 without --out" '
import json, sys
if sys.argv[1] != "0":
    sys.exit("exit %s: %s" % (sys.argv[1], open(sys.argv[3]).read()[:300]))
r = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if r["final_train_loss"] is not None:
    sys.exit("final_train_loss %r" % r["final_train_loss"])
log = [json.loads(l) for l in open(sys.argv[4])]
if log[-2]["train_loss"] is not None or log[-1]["result"]["final_train_loss"] is not None:
    sys.exit("the log: %r" % log[-2:])' "$rc" "$tmp/diverged" "$tmp/diverged.err" "$tmp/diverged.jsonl"

run diverged_text train "${TINY[@]}" --epochs 3 --lr 1e30
check "a diverged run: the summary names the divergence" '
import re, sys
out = open(sys.argv[1]).read()
if not re.search(r"final loss nan; the loss diverged \(nan\) in epoch [0-9]+\n", out):
    sys.exit("summary: %r" % out)' "$tmp/diverged_text"

runtime_error "--out after a diverged run: the file and the divergence named, exit 1" \
    "^fewmul: error: --out $tmp/d.fmp not written: training diverged, the trained weights are not finite \(weight [0-9]+ of weighted layer [0-9]+ \([0-9]+ x [0-9]+\) is nan; the loss diverged \(nan\) in epoch [0-9]+\); a smaller --lr may help$" \
    train "${TINY[@]}" --epochs 3 --lr 1e30 --out "$tmp/d.fmp"
runtime_error "--out and --state after a diverged run (adam): both named" \
    "--out $tmp/e.fmp and --state $tmp/e.fm not written: training diverged" \
    train "${TINY[@]}" --epochs 3 --opt adam --lr 1e30 --out "$tmp/e.fmp" --state "$tmp/e.fm"
if [ ! -e "$tmp/d.fmp" ] && [ ! -e "$tmp/e.fmp" ] && [ ! -e "$tmp/e.fm" ]; then
    ok "after a diverged run neither --out nor --state is written"
else
    not_ok "after a diverged run neither --out nor --state is written" "$(cd "$tmp" && ls d.fmp e.fmp e.fm 2>/dev/null)"
fi

# ---- messages that echo long values keep their reason ------------------------------

arch="mlp:16,16,x$(printf ',16%.0s' $(seq 4997))"
# (not recorded for docs/errors.md: their command lines are thousands of characters)
ERRORS_TABLE= usage_error "a 5,000-item --arch with a bad item: the reason kept" \
    "^fewmul: error: bad architecture 'mlp:16,16,x,16,16.*\\.\\.\\..*16,16': item 'x' is not a hidden width 1\\.\\.65536 \\(widths are separated by commas\\) \\(try 'fewmul train --help'\\)$" \
    train "${TINY[@]}" --arch "$arch"

longname=$(printf 'a%.0s' $(seq 1200))
ERRORS_TABLE= io_error "a 1,200-character --log path in a missing folder: the reason kept" \
    "^fewmul: error: cannot create log file '$tmp/missing/a{10,}\\.\\.\\.a{10,}\\.jsonl': No such file or directory$" \
    train "${TINY[@]}" --epochs 1 --log "$tmp/missing/$longname.jsonl"
longdir=$tmp$(for _ in $(seq 15); do printf '/'; printf 'd%.0s' $(seq 200); done)
ERRORS_TABLE= not_found "a 3,000-character --data folder that does not exist: the reason kept" \
    "^fewmul: error: data directory $tmp/d{10,}\\.\\.\\.d{10,}: No such file or directory$" \
    train --data "idx:$longdir" --quiet

# ---- report pages from logs with extreme numbers ------------------------------------

run base train "${TINY[@]}" --epochs 3 --ledger --log "$tmp/base.jsonl"
[ "$rc" -eq 0 ] || not_ok "a run with --ledger --log for the report cases" "exit $rc: $(first_err_line base)"
# PAGE_OK: the report exited 0 (argv[1]) and its page (argv[2]) has no NaN or
# infinity, no run of 40 digits, every coordinate a finite number and every
# tick label a number; argv[3]: its stderr
PAGE_OK='
import math, re, sys
status, page, err = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
if status != "0":
    sys.exit("exit %s: %s" % (status, err))
bad = re.findall(r".{0,40}(?<![A-Za-z])(?:-?nan|-?inf)(?![a-z]).{0,20}", page, re.I)
if bad:
    sys.exit("NaN or inf: %r" % bad[:3])
if re.search(r"[0-9]{40,}", page):
    sys.exit("a run of 40 digits: %r" % re.search(r".{0,20}[0-9]{40,}", page).group(0)[:80])
for svg in re.findall(r"<svg.*?</svg>", page, re.S):
    for name, value in re.findall(r"\s(x|y|x1|y1|x2|y2|cx|cy|r|width|height|points|d|transform)=\"([^\"]*)\"", svg):
        for number in re.findall(r"-?[0-9.]+(?:e[-+]?[0-9]+)?|[A-Za-z]+", value.replace(",", " ")):
            if re.match(r"[A-Za-z]", number) and number not in ("M", "V", "H", "translate", "rotate"):
                sys.exit("%s=%r" % (name, value))
            if not re.match(r"[A-Za-z]", number) and not math.isfinite(float(number)):
                sys.exit("%s=%r" % (name, value))
    for label in re.findall(r"class=\"fm-tick\"[^>]*>([^<]*)<", svg):
        if not re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?[kMG]?", label):
            sys.exit("tick label %r" % label)
'
for v in 5e-324 1e-310 1e308 -0.0; do
    python3 - "$tmp/base.jsonl" "$tmp/v$v.jsonl" "$v" <<'EOF'
import json, sys
src, out, val = sys.argv[1:]
def every(o):  # every number of the result line's ledger and table
    if isinstance(o, dict):
        return {k: every(v) for k, v in o.items()}
    if isinstance(o, list):
        return [every(v) for v in o]
    if isinstance(o, (int, float)) and not isinstance(o, bool):
        return "VAL"
    return o
lines = []
for d in map(json.loads, open(src)):
    if "epoch" in d:
        keys = ["lr", "train_loss", "train_seconds", "epoch_seconds", "images_per_s"]
        if 0 <= float(val) <= 100:
            keys += ["train_error_pct", "valid_error_pct", "test_error_pct", "best_test_error_pct"]
        for k in keys:
            d[k] = "VAL"
    else:
        r = d["result"]
        r["ledger"], r["table"] = every(r["ledger"]), every(r["table"])
        for k in ["train_seconds", "train_images_per_s", "total_seconds", "final_train_loss",
                  "test_error_pct", "valid_error_pct", "best_epoch", "epochs", "lr", "lr_final"]:
            r[k] = "VAL"
    lines.append(json.dumps(d).replace('"VAL"', val))
open(out, "w").write("\n".join(lines) + "\n")
EOF
done
for v in 5e-324 1e-310 1e308; do
    run "rep$v" report "$tmp/v$v.jsonl" "$tmp/base.jsonl" -o "$tmp/v$v.html"
    check "report of a log of $v: exit 0, no NaN or infinity in the page, every coordinate a number" \
        "$PAGE_OK" "$rc" "$tmp/v$v.html" "$tmp/rep$v.err"
done
run rep_all report "$tmp/v5e-324.jsonl" "$tmp/v1e-310.jsonl" "$tmp/v1e308.jsonl" "$tmp/v-0.0.jsonl" \
    -o "$tmp/all.html"
check "report of the logs of 5e-324, 1e-310, 1e308 and -0.0 together: the same" \
    "$PAGE_OK" "$rc" "$tmp/all.html" "$tmp/rep_all.err"

# ---- SIGTERM to every rank of an MPI run --------------------------------------------

if [ "$built" = without-mpi ]; then
    skip "SIGTERM to the ranks of an MPI run" "fewmul built without MPI"
elif ! command -v mpirun >/dev/null; then
    skip "SIGTERM to the ranks of an MPI run" "mpirun not found (Debian: openmpi-bin)"
else
    export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
    make_idx "$tmp/big" 1200 100 12
    # term_ranks NAME RANKS...: SIGTERM to those ranks of a long run once
    # training has begun (its log has a line); sets rc (mpirun's status)
    term_ranks() {
        local name=$1
        shift
        rm -f "$tmp/pid".* "$tmp/$name.jsonl" "$tmp/$name.fmc"
        ( timeout -k 5 300 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
              bash -c 'echo $$ >"$0.$OMPI_COMM_WORLD_RANK"; exec "$1" "${@:2}"' "$tmp/pid" \
              "$FEWMUL" train --data "idx:$tmp/big" --arch mlp:256,256 --valid 200 --epochs 500 \
              --batch 10 --threads 1 --quiet --log "$tmp/$name.jsonl" --checkpoint "$tmp/$name.fmc" \
              >"$tmp/$name" 2>"$tmp/$name.err" </dev/null ) &
        local launcher=$!
        for _ in $(seq 600); do [ -s "$tmp/$name.jsonl" ] && break; sleep 0.1; done
        for r in "$@"; do kill -TERM "$(cat "$tmp/pid.$r")" 2>/dev/null; done
        wait "$launcher"
        rc=$?
    }
    for who in both one; do
        if [ "$who" = both ]; then term_ranks term_both 0 1; else term_ranks term_one 1; fi
        check "SIGTERM to $([ "$who" = both ] && echo "both ranks" || echo "rank 1 alone") of 2: one line, rank 0's, with its checkpoint; exit 143" '
import sys
status, err = sys.argv[1], open(sys.argv[2]).read()
lines = [l for l in err.splitlines() if l.startswith("fewmul:")]
if status != "143" or len(lines) != 1 or "interrupted by SIGTERM in epoch" not in lines[0] \
        or "checkpoint saved to" not in lines[0]:
    sys.exit("exit %s, lines %r" % (status, lines))'  "$rc" "$tmp/term_$who.err"
    done
fi

finish
