#!/usr/bin/env bash
# cli_fuse.sh — `fewmul train --fuse` and `fewmul energy --fuse` as a user
# meets them: a bc+qb run with bf16 latent weights gives the same model file,
# byte for byte, with and without --fuse (on 2 threads, and on the mulfree
# path), says so in its plan and JSON; a checkpoint of an unfused run resumes
# with --fuse and the reverse; two MPI ranks (skipped without them) run as
# without it; the energy report of the fused step has no
# whole dW, reads and writes the latent weights once and moves a quarter of
# bc+qb's bytes or fewer.
# Usage: cli_fuse.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_fuse.sh
source "$(dirname "$0")/cli_common.sh"

data=$tmp/data
make_idx "$data" 3000 500 16
args=(--data "idx:$data" --arch mlp:128,64 --weights bc --qb --latent bf16 --valid 500
      --epochs 2 --batch 50 --threads 2 --seed 11)

# ---- the same bits ----------------------------------------------------------------
run plain train "${args[@]}" --json --state "$tmp/plain.fm" --checkpoint "$tmp/plain.fmc"
run fused train "${args[@]}" --json --fuse --state "$tmp/fused.fm" --checkpoint "$tmp/fused.fmc"
if [ "$rc" -ne 0 ]; then
    not_ok "train --fuse" "exit $rc: $(first_err_line fused)"
    finish
    exit 1
fi
if cmp -s "$tmp/plain.fm" "$tmp/fused.fm"; then
    ok "train --fuse gives the unfused run's model file, byte for byte"
else
    not_ok "train --fuse gives the unfused run's model file, byte for byte" "the files differ"
fi
check "the fused run says so in its plan and JSON, the unfused one does not" '
import json, sys
plain = json.loads(open(sys.argv[1]).read().splitlines()[-1])
fused = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if fused.get("fuse") is not True or "fuse" in plain:
    sys.exit("fuse %r, unfused %r" % (fused.get("fuse"), plain.get("fuse")))
if fused["test_error_pct"] != plain["test_error_pct"]:
    sys.exit("test error %r against %r" % (fused["test_error_pct"], plain["test_error_pct"]))
if "update fused into the backward pass" not in open(sys.argv[3]).read():
    sys.exit("plan: " + open(sys.argv[3]).read())
' "$tmp/plain" "$tmp/fused" "$tmp/fused.err"

run mf_plain train "${args[@]}" --exec mulfree --quiet --state "$tmp/mf_plain.fm"
run mf_fused train "${args[@]}" --exec mulfree --fuse --quiet --state "$tmp/mf_fused.fm"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/mf_plain.fm" "$tmp/mf_fused.fm"; then
    ok "train --exec mulfree --fuse gives the unfused run's model file, byte for byte"
else
    not_ok "train --exec mulfree --fuse gives the unfused run's model file, byte for byte" \
        "exit $rc: $(first_err_line mf_fused)"
fi

# ---- resumed with and without it --------------------------------------------------
run r1 train --resume "$tmp/plain.fmc" --fuse --quiet --state "$tmp/r1.fm"
run r2 train --resume "$tmp/fused.fmc" --quiet --state "$tmp/r2.fm"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/plain.fm" "$tmp/r1.fm" && cmp -s "$tmp/plain.fm" "$tmp/r2.fm"; then
    ok "a checkpoint resumes with --fuse added or dropped, to the same model file"
else
    not_ok "a checkpoint resumes with --fuse added or dropped, to the same model file" \
        "exit $rc: $(first_err_line r1) $(first_err_line r2)"
fi

# ---- two MPI ranks: --fuse leaves a data-parallel run unfused -------------------------
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
margs=(--data "idx:$data" --arch mlp:64 --weights bc --qb --valid 500 --epochs 1 --batch 100
       --seed 9 --threads 1 --quiet)
if ! command -v mpirun >/dev/null; then
    skip "2 MPI ranks with --fuse train as without it" "mpirun not found"
else
    for f in plain fused; do
        extra=()
        [ "$f" = fused ] && extra=(--fuse)
        timeout -k 5 120 "${mpi[@]}" -np 2 "$FEWMUL" train "${margs[@]}" "${extra[@]}" \
            --state "$tmp/mpi_$f.fm" >"$tmp/mpi_$f" 2>"$tmp/mpi_$f.err" </dev/null
        rc=$?
        [ "$rc" -ne 0 ] && break
    done
    if [ "$rc" -ne 0 ] && grep -q "built without MPI" "$tmp/mpi_plain.err"; then
        skip "2 MPI ranks with --fuse train as without it" "built without MPI"
    elif [ "$rc" -eq 0 ] && cmp -s "$tmp/mpi_plain.fm" "$tmp/mpi_fused.fm"; then
        ok "2 MPI ranks with --fuse train as without it (the same model file)"
    else
        not_ok "2 MPI ranks with --fuse train as without it (the same model file)" \
            "exit $rc: $(head -n 1 "$tmp/mpi_fused.err" "$tmp/mpi_plain.err" | cut -c1-200)"
    fi
fi

# ---- the ledger ---------------------------------------------------------------------
run bc energy --arch paper-mlp --batch 200 --weights bc --qb --json
run bcf energy --arch paper-mlp --batch 200 --weights bc --qb --latent bf16 --fuse --json
check "energy --fuse --latent bf16: no whole dW, the latent weights read and written once, 4x less data movement" '
import json, sys
bc = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r = json.loads(open(sys.argv[2]).read().splitlines()[-1])
if r.get("fuse") is not True or "fuse" in bc:
    sys.exit("fuse %r, bc+qb %r" % (r.get("fuse"), bc.get("fuse")))
t = {x["name"]: x for x in r["train_step"]["tensors"]}
n = 1024 * 1024
if "dense2.dW" in t or t["dense2.dW.tile"]["bytes"] != 32768 or t["dense2.W"]["bytes"] != 2 * n \
        or t["dense2.Wq"]["bytes"] != n // 8:
    sys.exit("tensors %r" % {k: v["bytes"] for k, v in t.items() if k.startswith("dense2")})
# in DRAM only the bf16 latent weights of the three large layers, once each way
total = r["train_step"]["total"]
latent = 2 * (784 * 1024 + 2 * n)
if total["read_bytes"]["dram"] != latent or total["written_bytes"]["dram"] != latent:
    sys.exit("dram %r read, %r written; expected %d" % (total["read_bytes"]["dram"],
             total["written_bytes"]["dram"], latent))
cb, cp = bc["train_step"]["total"]["communication"], r["train_step"]["total"]["communication"]
if not 4 * cp <= cb:
    sys.exit("communication %r, not a quarter of bc+qb %r" % (cp, cb))
print("training step communication: bc+qb %.4g, fused bc+qb bf16 %.4g (%.3fx less)" % (cb, cp, cb / cp),
      file=sys.stderr)
' "$tmp/bc" "$tmp/bcf"

finish
