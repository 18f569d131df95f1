#!/usr/bin/env bash
# valgrind_train.sh — an end-to-end run of the command under valgrind memcheck:
# training with every output (--state, --out, --log, --ledger, --checkpoint),
# stopped by SIGINT and resumed, then eval, infer, info and energy. Any invalid
# read or write, use of an uninitialized value, or definitely or indirectly
# lost block fails it. Valgrind 3.19 does not know AVX-512: give it a build
# without -march=native (-DFEWMUL_NATIVE=OFF); the kernels then take the AVX2
# variant valgrind's CPUID reports. CI runs it on the portable build.
# Usage: valgrind_train.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (TAP-like lines)
set -u

NAME=valgrind_train.sh
source "$(dirname "$0")/cli_common.sh"
command -v valgrind >/dev/null || { echo "$NAME: valgrind is needed" >&2; exit 2; }

# The command re-executes itself to set OMP_WAIT_POLICY unless it is set:
# set it, so that valgrind watches the process that does the work.
export OMP_WAIT_POLICY=PASSIVE
vg=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --track-origins=yes --quiet)

# memcheck NAME ARGS...: runs fewmul under valgrind; passes when it exits 0 and
# valgrind reported nothing.
memcheck() {
    local name=$1
    shift
    timeout 900 "${vg[@]}" "$FEWMUL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    if [ "$rc" -eq 0 ] && ! grep -q '^==[0-9]*==' "$tmp/err"; then
        ok "$name"
    else
        not_ok "$name" "exit $rc; $(grep -m 3 -E '^==[0-9]+== [A-Z]|error' "$tmp/err" | tr '\n' ' ')"
    fi
}

make_idx "$tmp/data" 1200 300 12
args=(--data "idx:$tmp/data" --arch mlp:32,32 --weights bc --qb --momentum 0.9 --epochs 3
      --batch 50 --valid 200 --threads 2 --quiet)

memcheck "train with --state, --out, --log, --ledger, --checkpoint" train "${args[@]}" \
    --state "$tmp/a.fm" --out "$tmp/a.fmp" --log "$tmp/a.jsonl" --ledger --checkpoint "$tmp/a.fmc" --json

# Stopped by SIGINT once its first periodic checkpoint is there, then resumed.
"${vg[@]}" "$FEWMUL" train "${args[@]}" --ledger --checkpoint "$tmp/b.fmc" --checkpoint-every 3 \
    --log "$tmp/b.jsonl" >"$tmp/b.out" 2>"$tmp/b.err" </dev/null &
pid=$!
for _ in $(seq 1200); do
    [ -f "$tmp/b.fmc" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
if [ "$rc" -eq 130 ] && ! grep -q '^==[0-9]*==' "$tmp/b.err"; then
    ok "train stopped by SIGINT (exit 130)"
else
    not_ok "train stopped by SIGINT (exit 130)" "exit $rc; $(grep -m 3 -E '^==|error' "$tmp/b.err" | tr '\n' ' ')"
fi
memcheck "train --resume" train --resume "$tmp/b.fmc" --state "$tmp/b.fm" --log "$tmp/b.jsonl" --quiet
if cmp -s "$tmp/a.fm" "$tmp/b.fm"; then
    ok "the resumed run's model is the uninterrupted run's"
else
    not_ok "the resumed run's model is the uninterrupted run's" "the --state files differ"
fi
memcheck "eval of the training state" eval --model "$tmp/a.fm" --data "idx:$tmp/data"
memcheck "infer with the packed model" infer --model "$tmp/a.fmp" --data "idx:$tmp/data"
memcheck "info of the checkpoint" info "$tmp/a.fmc"
memcheck "energy of a small network" energy --arch mlp:32 --input 12x12x1 --weights tc --qb --batch 20
finish
