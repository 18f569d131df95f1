#!/usr/bin/env bash
# cli_limits.sh — every command under resource limits, as a batch system or a
# shared machine sets them: an address-space or data limit (prlimit --as,
# --data at 100, 150 and 300 MB) and a process limit (prlimit --nproc 1 and 2,
# as an unprivileged user, since root is not held to it). Each run must end
# within 10 s (none may hang: OpenBLAS's allocator loops when its buffer cannot
# be mapped), with status 0, or 6 and one "out of memory" line; under a process
# limit with 0 and at most one line saying it runs on fewer threads (no libgomp
# or OpenBLAS message, no exit 1 or 130). docs/cli.md, "Memory and thread
# limits", says what the command does.
# Usage: cli_limits.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_limits.sh
source "$(dirname "$0")/cli_common.sh"

LIMIT_S=10 # seconds a run may take
command -v prlimit >/dev/null || { skip "every limit case" "prlimit not found"; finish; exit $?; }

# A world-readable folder (the process-limit cases run as nobody) with a small
# data set, a packed model, a training state and a log, made without limits.
chmod 755 "$tmp"
make_idx "$tmp/d" 200 50 8
mkdir -p "$tmp/out" && chmod 777 "$tmp/out"
if ! "$FEWMUL" train --data "idx:$tmp/d" --arch mlp:32 --epochs 1 --valid 20 --quiet --threads 1 \
    --out "$tmp/m.fmp" --state "$tmp/m.fm" --log "$tmp/l.jsonl" >/dev/null 2>"$tmp/setup.err" ||
    ! "$FEWMUL" train --data "idx:$tmp/d" --epochs 1 --valid 20 --quiet --threads 1 \
        --state "$tmp/paper.fm" >/dev/null 2>"$tmp/setup.err"; then
    not_ok "set-up: train the models" "$(head -n 1 "$tmp/setup.err")"
    finish
    exit $?
fi
chmod -R a+rX "$tmp"

# NAME|KIND|ARGS: light commands must succeed in 100 MB; heavy ones (a
# paper-mlp of 3 x 1024 units, float products) may run out of it, but must
# succeed in 300 MB.
D=idx:$tmp/d
commands=(
    "--version|light|--version"
    "--help|light|--help"
    "train (mlp:32)|light|train --data $D --arch mlp:32 --epochs 1 --valid 20 --quiet"
    "train (paper-mlp)|heavy|train --data $D --epochs 1 --valid 20 --quiet"
    "eval (packed model)|light|eval --model $tmp/m.fmp --data $D"
    "eval (training state)|light|eval --model $tmp/m.fm --data $D"
    "infer|light|infer --model $tmp/m.fmp --data $D"
    "info|light|info $tmp/m.fmp"
    "bench infer|light|bench infer --model $tmp/m.fmp --runs 3"
    "export|light|export --model $tmp/m.fmp --c $tmp/out --name m"
    "energy (paper-mlp)|heavy|energy"
    "energy (mlp:32)|light|energy --arch mlp:32"
    "report|light|report $tmp/l.jsonl -o $tmp/out/r.html"
)

# limited WRAP... -- ARGS...: runs fewmul under the wrapper with a time limit;
# sets rc and secs (wall time), stdout/stderr in $tmp/out.txt, $tmp/err.txt.
limited() {
    local wrap=()
    while [ "$1" != -- ]; do
        wrap+=("$1")
        shift
    done
    shift
    local t0 t1
    t0=$(date +%s%N)
    timeout -k 5 $((2 * LIMIT_S)) "${wrap[@]}" "$FEWMUL" "$@" >"$tmp/out.txt" 2>"$tmp/err.txt" </dev/null
    rc=$?
    t1=$(date +%s%N)
    secs=$(((t1 - t0) / 1000000))
    secs=$((secs / 1000)).$(printf '%03d' $((secs % 1000)))
}

# Lines of stderr that are not the command's own warnings.
other_lines() { grep -v '^fewmul [a-z ]*: warning: ' "$tmp/err.txt" | head -n 1 | cut -c1-160; }

# judge NAME KIND LIMIT_MB: the verdict on the last run.
judge() {
    local name=$1 kind=$2 mb=$3 lines
    lines=$(awk 'END { print NR }' "$tmp/err.txt")
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        not_ok "$name" "still running after $((2 * LIMIT_S)) s (killed)"
    elif [ "${secs%.*}" -ge "$LIMIT_S" ]; then
        not_ok "$name" "took $secs s"
    elif [ "$rc" -eq 6 ]; then
        if [ "$kind" = light ] || [ "$mb" -ge 300 ]; then
            not_ok "$name" "out of memory, where it must fit: $(head -n 1 "$tmp/err.txt" | cut -c1-160)"
        elif [ "$lines" -ne 1 ] || ! grep -q '^fewmul: error: out of memory' "$tmp/err.txt"; then
            not_ok "$name" "exit 6 without one 'out of memory' line ($lines lines): $(head -n 1 "$tmp/err.txt")"
        else
            ok "$name (exit 6, out of memory, $secs s)"
        fi
    elif [ "$rc" -ne 0 ]; then
        not_ok "$name" "exit $rc: $(head -n 1 "$tmp/err.txt" | cut -c1-160)"
    elif [ -n "$(other_lines)" ]; then
        not_ok "$name" "exit 0 but stderr says: $(other_lines)"
    else
        ok "$name (exit 0, $secs s)"
    fi
}

# ---- memory: address space and data segment --------------------------------

# AddressSanitizer reserves terabytes of address space when it starts, so its
# build cannot run under these limits at all.
if ldd "$FEWMUL" 2>/dev/null | grep -q libasan; then
    skip "memory-limit cases" "an AddressSanitizer build cannot start under an address-space limit"
else
    for resource in as data; do
        for mb in 100 150 300; do
            for c in "${commands[@]}"; do
                IFS='|' read -r name kind args <<<"$c"
                # shellcheck disable=SC2086 # ARGS are words without spaces
                limited prlimit --$resource=$((mb * 1000000)) -- $args
                judge "$name, prlimit --$resource=${mb}MB" "$kind" "$mb"
            done
        done
    done

    # The cases docs/errors.md lists: a network that cannot fit, whatever the
    # machine's cores, ends at once with exit 6 instead of hanging at exit.
    for c in "train|train --data $D --arch mlp:20000,10000 --epochs 1 --valid 20 --quiet" \
        "energy|energy --arch mlp:20000,10000"; do
        IFS='|' read -r name args <<<"$c"
        # shellcheck disable=SC2086
        limited prlimit --as=100000000 -- $args
        last_args=($args)
        record_wrap="prlimit --as=100000000"
        record_case "$name: a network larger than a 100 MB address space" "$tmp/err.txt"
        record_wrap=
        if [ "$rc" -eq 6 ] && [ "${secs%.*}" -lt "$LIMIT_S" ] &&
            [ "$(awk 'END { print NR }' "$tmp/err.txt")" -eq 1 ] &&
            grep -Eq '^fewmul: error: out of memory allocating [0-9]+ bytes$' "$tmp/err.txt"; then
            ok "$name: a network larger than a 100 MB address space (exit 6, $secs s)"
        else
            not_ok "$name: a network larger than a 100 MB address space" \
                "exit $rc after $secs s: $(head -n 1 "$tmp/err.txt" | cut -c1-160)"
        fi
    done

    # Under a limit the products take the portable loop instead of OpenBLAS
    # (docs/cli.md): a paper-mlp training state (products of 1024 x 1024, which
    # OpenBLAS wanted its buffer for) evaluates to the same error there.
    "$FEWMUL" eval --model "$tmp/paper.fm" --data "$D" --threads 1 >"$tmp/free.txt" 2>&1
    limited prlimit --as=300000000 -- eval --model "$tmp/paper.fm" --data "$D" --threads 1
    name="eval of a paper-mlp training state: the same error in a 300 MB address space"
    if [ "$rc" -eq 0 ] && [ "${secs%.*}" -lt "$LIMIT_S" ] &&
        diff <(sed 's/; [0-9.]* s)$//' "$tmp/free.txt") <(sed 's/; [0-9.]* s)$//' "$tmp/out.txt") >/dev/null; then
        ok "$name"
    else
        not_ok "$name" "exit $rc after $secs s: $(head -n 1 "$tmp/out.txt") against $(head -n 1 "$tmp/free.txt")"
    fi
fi

# ---- processes: RLIMIT_NPROC, as an unprivileged user -----------------------

# The limit counts every process and thread of the user; root is not held to
# it, so these cases run as nobody (needs setpriv and a user nobody, and a
# fewmul that nobody can run).
as_nobody=()
if [ "$(id -u)" -ne 0 ]; then
    as_nobody=(env) # already unprivileged
elif command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
    as_nobody=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups)
fi
if [ ${#as_nobody[@]} -eq 0 ]; then
    skip "process-limit cases" "running as root without setpriv or a nobody user"
elif ! "${as_nobody[@]}" test -x "$FEWMUL" || ! "${as_nobody[@]}" test -r "$tmp/m.fmp"; then
    skip "process-limit cases" "$FEWMUL or $tmp cannot be read by nobody"
else
    # LeakSanitizer's check at exit needs a thread of its own.
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
    for n in 1 2; do
        for c in "${commands[@]}"; do
            IFS='|' read -r name kind args <<<"$c"
            # shellcheck disable=SC2086
            limited "${as_nobody[@]}" prlimit --nproc=$n -- $args
            judge "$name, prlimit --nproc=$n as nobody" light 0
        done
    done
    # One process of one thread: told in one line, and the run goes on.
    limited "${as_nobody[@]}" prlimit --nproc=1 -- train --data "$D" --arch mlp:32 --epochs 1 \
        --valid 20 --quiet --threads 2 --json
    if [ "$rc" -eq 0 ] && [ "$(awk 'END { print NR }' "$tmp/err.txt")" -eq 1 ] &&
        grep -q '^fewmul train: warning: running on 1 thread of the 2 asked for: a process or memory limit' "$tmp/err.txt" &&
        python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["threads"] != 1)' "$tmp/out.txt"; then
        ok "train --threads 2 under prlimit --nproc=1: one warning line, runs on 1 thread and reports 1"
    else
        not_ok "train --threads 2 under prlimit --nproc=1: one warning line, runs on 1 thread and reports 1" \
            "exit $rc: $(head -n 1 "$tmp/err.txt" | cut -c1-160)"
    fi
fi

finish
