#!/usr/bin/env bash
# cli_checkpoint.sh — `fewmul train --checkpoint/--resume` as a user meets it:
# a run killed with SIGKILL at random moments (mid-write included) and resumed
# each time ends with the same model file, byte for byte, and the same log as a
# run never interrupted; SIGINT and SIGTERM write a checkpoint and exit 130 and
# 143; a checkpoint that cannot be written (missing folder, full disk, a
# folder where it goes) fails with exit 5 and leaves the previous one whole;
# resuming with changed options, other data or a damaged file is refused.
# Usage: cli_checkpoint.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (TAP-like lines)
set -u

NAME=cli_checkpoint.sh
source "$(dirname "$0")/cli_common.sh"

data=$tmp/data
make_idx "$data" 6000 500 16
# 5,500 training images in batches of 50: 110 steps an epoch, a few seconds a run
train_args=(--data "idx:$data" --arch mlp:512,512 --weights bc --qb --momentum 0.9
            --valid 500 --epochs 3 --batch 50 --threads 2 --seed 77 --quiet)

# The reference: the same run, never interrupted.
run ref train "${train_args[@]}" --state "$tmp/ref.fm" --log "$tmp/ref.jsonl" --json
if [ "$rc" -ne 0 ]; then
    not_ok "uninterrupted reference run" "exit $rc: $(first_err_line ref)"
    finish
    exit 1
fi
ok "uninterrupted reference run"

# The log without its timings: what must match between runs.
log_facts() {
    python3 - "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "result" in r:  # the finished run's last line
        r = r["result"]
        print("result", r["epochs"], r["test_error_pct"], r["best_epoch"], r["final_train_loss"])
        continue
    print(r["epoch"], r["lr"], r["train_loss"], r["train_error_pct"], r["valid_error_pct"],
          r["test_error_pct"], r["best_epoch"])
EOF
}
log_facts "$tmp/ref.jsonl" >"$tmp/ref.facts"

# ---- SIGKILL at random moments ------------------------------------------------

# start_bg ARGS...: fewmul train in the background; sets pid.
start_bg() {
    "$FEWMUL" train "$@" >"$tmp/bg.out" 2>"$tmp/bg.err" </dev/null &
    pid=$!
}

ck=$tmp/run.fmc
kills=0
restarts_fresh=0
delays=""
for round in 1 2 3 4 5 6; do
    if [ -f "$ck" ]; then
        start_bg --resume "$ck" --checkpoint-every 2 --state "$tmp/killed.fm" --log "$tmp/killed.jsonl" --quiet
    else
        start_bg "${train_args[@]}" --checkpoint "$ck" --checkpoint-every 2 \
            --state "$tmp/killed.fm" --log "$tmp/killed.jsonl"
        [ "$round" -gt 1 ] && restarts_fresh=$((restarts_fresh + 1))
    fi
    if [ "$round" -le 5 ]; then
        # 0.3 to 1.5 s: within loading, training, evaluation or a checkpoint write
        delay=$(python3 -c 'import random; print("%.2f" % random.uniform(0.3, 1.5))')
        delays="$delays $delay"
        sleep "$delay"
        kill -KILL "$pid" 2>/dev/null && kills=$((kills + 1))
        wait "$pid" 2>/dev/null
        # whatever the moment, the checkpoint on disk is whole
        if [ -f "$ck" ]; then
            run info info "$ck" --json
            if [ "$rc" -ne 0 ]; then
                not_ok "checkpoint whole after a SIGKILL at ${delay}s" "exit $rc: $(first_err_line info)"
            else
                where=$(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); print("epoch %d, %d images, step %d" % (r["epoch"], r["images_done"], r["step"]))' "$tmp/info")
                delays="$delays ($where)"
            fi
        fi
    else
        wait "$pid"
        final=$?
    fi
done
echo "# SIGKILL after:$delays s ($kills killed, $restarts_fresh fresh restarts before any checkpoint)"
if [ "${final:-1}" -ne 0 ]; then
    not_ok "killed and resumed run finishes" "exit $final: $(head -n 1 "$tmp/bg.err")"
elif ! cmp -s "$tmp/ref.fm" "$tmp/killed.fm"; then
    not_ok "killed $kills times and resumed: model identical to the uninterrupted run's" \
        "the --state files differ"
else
    ok "killed $kills times and resumed: model identical to the uninterrupted run's"
fi
log_facts "$tmp/killed.jsonl" >"$tmp/killed.facts" 2>&1
if cmp -s "$tmp/ref.facts" "$tmp/killed.facts"; then
    ok "killed and resumed: the log has each epoch once, as the uninterrupted run's"
else
    not_ok "killed and resumed: the log has each epoch once, as the uninterrupted run's" \
        "$(diff "$tmp/ref.facts" "$tmp/killed.facts" | head -n 3 | tr '\n' ' ')"
fi

# ---- SIGINT and SIGTERM: a checkpoint, then 130 and 143 ------------------------

# signal_run SIG STATUS: starts a run, waits for its first periodic checkpoint,
# sends SIG, expects STATUS and the message, then resumes it to the end.
signal_run() {
    local sig=$1 status=$2 c=$tmp/$1.fmc
    rm -f "$c"
    start_bg "${train_args[@]}" --checkpoint "$c" --checkpoint-every 30 --log "$tmp/$sig.jsonl"
    for _ in $(seq 600); do
        [ -f "$c" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -"$sig" "$pid" 2>/dev/null
    wait "$pid"
    local got=$?
    if [ "$got" -ne "$status" ]; then
        not_ok "SIG$sig: exit $status" "exit $got: $(head -n 1 "$tmp/bg.err")"
        return
    fi
    if grep -Eq "^fewmul: interrupted by SIG$sig in epoch [0-9]+/3 after [0-9]+ of 5500 images; checkpoint saved to .*$sig\.fmc; continue with 'fewmul train --resume" "$tmp/bg.err"; then
        ok "SIG$sig: exit $status, the checkpoint written and named"
    else
        not_ok "SIG$sig: exit $status, the checkpoint written and named" "stderr: $(head -n 1 "$tmp/bg.err")"
    fi
    run "info_$sig" info "$c" --json
    check "SIG$sig: the checkpoint stands after the last finished minibatch" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["finished"] or r["step"] < 30 or r["images_done"] % 50 != 0:
    sys.exit("position %r" % r)' "$tmp/info_$sig"
    run "resume_$sig" train --resume "$c" --state "$tmp/$sig.fm" --log "$tmp/$sig.jsonl" --quiet
    if [ "$rc" -eq 0 ] && cmp -s "$tmp/ref.fm" "$tmp/$sig.fm"; then
        ok "SIG$sig: resumed to the uninterrupted run's model"
    else
        not_ok "SIG$sig: resumed to the uninterrupted run's model" "exit $rc: $(first_err_line "resume_$sig")"
    fi
}
signal_run INT 130
signal_run TERM 143

# Without --checkpoint: 130, nothing written, an existing --state file untouched.
cp "$tmp/ref.fm" "$tmp/keep.fm"
start_bg "${train_args[@]}" --epochs 1000 --state "$tmp/keep.fm" --log "$tmp/nock.jsonl"
for _ in $(seq 600); do
    [ -s "$tmp/nock.jsonl" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
got=$?
if [ "$got" -eq 130 ] && grep -q '^fewmul: interrupted by SIGINT; nothing saved' "$tmp/bg.err" &&
    cmp -s "$tmp/ref.fm" "$tmp/keep.fm"; then
    ok "SIGINT without --checkpoint: 130, nothing saved, --state file untouched"
else
    not_ok "SIGINT without --checkpoint: 130, nothing saved, --state file untouched" \
        "exit $got: $(head -n 1 "$tmp/bg.err")"
fi

# ---- checkpoints that cannot be written ------------------------------------------

# expect_status NAME STATUS PATTERN OUT: the last run's status and one error line.
expect_status() {
    local name=$1 status=$2 pattern=$3 out=$4
    record_case "$name" "$tmp/$out.err"
    if [ "$rc" -eq "$status" ] && [ "$(awk 'END { print NR }' "$tmp/$out.err")" -eq 1 ] &&
        grep -Eq "^fewmul: error: .*($pattern)" "$tmp/$out.err"; then
        ok "$name"
    else
        not_ok "$name" "exit $rc (expected $status): $(first_err_line "$out")"
    fi
}

small_args=(--data "idx:$data" --arch mlp:16 --valid 500 --epochs 2 --batch 100 --threads 1 --quiet)
run good train "${small_args[@]}" --checkpoint "$tmp/good.fmc"
cp "$tmp/good.fmc" "$tmp/good.copy"

run nodir train "${small_args[@]}" --checkpoint "$tmp/no/such/dir/x.fmc"
expect_status "checkpoint in a missing folder: exit 5" 5 'no/such/dir/x\.fmc.*No such file' nodir

mkdir "$tmp/dir.fmc"
run blocked train "${small_args[@]}" --checkpoint "$tmp/dir.fmc"
expect_status "a folder where the checkpoint goes: exit 5" 5 "dir\.fmc' is a directory, not a regular file" blocked
if rmdir "$tmp/dir.fmc"; then ok "... and the folder is left as it was"; else not_ok "... and the folder is left as it was" "it is not empty"; fi

# A full disk: a file size limit makes the write fail part-way (EFBIG) as ENOSPC would.
if command -v prlimit >/dev/null; then
    (trap '' XFSZ; exec prlimit --fsize=20000 "$FEWMUL" train "${small_args[@]}" --arch mlp:64 \
        --checkpoint "$tmp/good.fmc") >"$tmp/full" 2>"$tmp/full.err" </dev/null
    rc=$?
    expect_status "checkpoint on a full disk: exit 5" 5 'good\.fmc: write failed: File too large' full
    if cmp -s "$tmp/good.fmc" "$tmp/good.copy" && ! ls "$tmp" | grep -q '^good\.fmc\.tmp'; then
        ok "... and the previous checkpoint is untouched, no FILE.tmp left"
    else
        not_ok "... and the previous checkpoint is untouched, no FILE.tmp left" "it changed"
    fi
else
    skip "checkpoint on a full disk" "prlimit not found"
fi

# ---- resuming what must not be resumed --------------------------------------------

run changed train --resume "$tmp/good.fmc" --epochs 5
expect_status "--resume with --epochs: usage error" 2 '--epochs cannot be given with --resume' changed
run changed2 train --resume "$tmp/good.fmc" --weights=tc
expect_status "--resume with --weights=tc: usage error" 2 '--weights cannot be given with --resume' changed2
run every train "${small_args[@]}" --checkpoint-every 5
expect_status "--checkpoint-every without a checkpoint: usage error" 2 'checkpoint-every needs --checkpoint' every
run every2 train "${small_args[@]}" --checkpoint "$tmp/x.fmc" --checkpoint-every 5x
expect_status "--checkpoint-every 5x: usage error" 2 "'5x' is not N" every2
run same train "${small_args[@]}" --checkpoint "$tmp/a.fm" --state "$tmp/a.fm"
expect_status "--checkpoint and --state the same file: usage error" 2 'same file' same
run missing train --resume "$tmp/no-such.fmc"
expect_status "--resume of a missing file: exit 3" 3 'no-such\.fmc: No such file' missing
head -c 3000 "$tmp/good.fmc" >"$tmp/trunc.fmc"
run trunc train --resume "$tmp/trunc.fmc"
expect_status "--resume of a truncated checkpoint: exit 4" 4 'trunc\.fmc: checksum mismatch' trunc
run notck train --resume "$tmp/ref.fm"
expect_status "--resume of a model file: exit 4" 4 'ref\.fm: not a fewmul checkpoint' notck
other=$tmp/other
make_idx "$other" 6000 500 16
printf '\001' | dd of="$other/train-images-idx3-ubyte" bs=1 seek=1000 conv=notrunc status=none
run otherdata train --resume "$tmp/good.fmc" --data "idx:$other" --quiet
expect_status "--resume on other data: exit 4, named" 4 'good\.fmc: resume: the training set .* is not the checkpoint' otherdata
run ledger train --resume "$tmp/good.fmc" --ledger
expect_status "--resume --ledger of a run without one: usage error" 2 'kept no energy ledger' ledger

# A finished run's checkpoint resumes to its result at once.
run done train --resume "$tmp/good.fmc" --json
check "a finished run's checkpoint resumes to its result" '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["epochs"] != 2 or r["resumed_from"] is None or r["checkpoint"] is None:
    sys.exit("json %r" % r)' "$tmp/done"

finish
