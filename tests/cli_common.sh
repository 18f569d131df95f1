# cli_common.sh — sourced by the command-line test scripts (cli_*.sh): checks
# the arguments (PATH_TO_fewmul [SHARED_DATA_DIR]), makes a temporary
# directory removed on exit, keeps TAP-like counts, runs fewmul (run,
# first_err_line) and Python checks of its output (check), writes small IDX
# data sets (make_idx), sets up runs without root's rights (unprivileged_wrap)
# and checks cases that must fail with one line and a status (expect_error and
# its helpers, recorded for docs/errors.md; failed_writes_keep for an export). NAME must be set to the script's
# name first; the script ends with `finish`.

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH_TO_fewmul [SHARED_DATA_DIR]" >&2
    exit 2
fi
FEWMUL=$1
SHARED=${2:-}
# FEWMUL_DATA, when set, replaces the shared data folder (tests then look for
# mnist/ in it, and train on Fashion-MNIST when there is none).
[ -n "${FEWMUL_DATA+x}" ] && SHARED=$FEWMUL_DATA
command -v python3 >/dev/null || { echo "$NAME: python3 is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
skipped=0
skip() { echo "ok - $1 # SKIP $2"; skipped=$((skipped + 1)); }

# The set the training cases use: MNIST from the shared data folder, else
# Debian's Fashion-MNIST (scripts/deps installs it), so they train on every
# machine scripts/test sets up. Sets TRAIN_SPEC (a data spec), TRAIN_DIR (its
# folder of IDX files) and TRAIN_NAME; returns 1 when neither set is there.
FASHION_DIR=/usr/share/datasets/fashion-mnist
pick_train_data() {
    if [ -n "$SHARED" ] && [ -r "$SHARED/mnist/train-images-idx3-ubyte.gz" ]; then
        TRAIN_SPEC="mnist:$SHARED/mnist" TRAIN_DIR=$SHARED/mnist TRAIN_NAME=MNIST
    elif [ -r "$FASHION_DIR/train-images-idx3-ubyte.gz" ]; then
        TRAIN_SPEC=fashion TRAIN_DIR=$FASHION_DIR TRAIN_NAME=Fashion-MNIST
    else
        return 1
    fi
}
on_fashion() { [ "$TRAIN_NAME" = Fashion-MNIST ]; }

# run OUT ARGS...: runs fewmul with a time limit (run_limit seconds, default
# 300), stdout to $tmp/OUT, stderr to $tmp/OUT.err; sets rc.
run() {
    local out=$1
    shift
    last_args=("$@")
    timeout "${run_limit:-300}" "$FEWMUL" "$@" >"$tmp/$out" 2>"$tmp/$out.err" </dev/null
    rc=$?
}

first_err_line() { head -n 1 "$tmp/$1.err" | cut -c1-200; }

# expect_run_error NAME CODE PATTERN OUT: the last run (run OUT ...) exited
# CODE with exactly one line "fewmul: error: ..." matching PATTERN (extended
# regexp) on stderr; recorded for docs/errors.md.
expect_run_error() {
    local name=$1 code=$2 pattern=$3 out=$4
    record_case "$name" "$tmp/$out.err"
    local lines
    lines=$(awk 'END { print NR }' "$tmp/$out.err")
    if [ "$rc" -eq 124 ] || [ "$rc" -ge 128 ]; then
        not_ok "$name" "crashed or timed out (exit $rc): $(first_err_line "$out")"
    elif [ "$rc" -ne "$code" ]; then
        not_ok "$name" "exit $rc, expected $code: $(first_err_line "$out")"
    elif [ "$lines" -ne 1 ] || ! grep -Eq "^fewmul: error: .*($pattern)" "$tmp/$out.err"; then
        not_ok "$name" "stderr is not one error line matching /$pattern/: $(first_err_line "$out")"
    else
        ok "$name"
    fi
}

# check NAME PYTHON_CODE ARGS...: runs the code with the arguments in sys.argv;
# it fails the check with sys.exit("why").
check() {
    local name=$1 code=$2
    shift 2
    local why
    if why=$(python3 -c "$code" "$@" 2>&1); then ok "$name"; else not_ok "$name" "$why"; fi
}

# make_idx DIR TRAIN TEST SIDE [TRAIN_LABELS]: raw IDX files of SIDE x SIDE images
# whose pixels depend on the label, so that a tiny network can learn them.
make_idx() {
    python3 - "$@" <<'EOF'
import os, struct, sys
d, n_train, n_test, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n_labels = int(sys.argv[5]) if len(sys.argv) > 5 else n_train
os.makedirs(d, exist_ok=True)
def write(prefix, n, n_lab):
    labels = bytes(i % 10 for i in range(n))
    pixels = bytearray()
    for i in range(n):
        for p in range(side * side):
            pixels.append(255 if (p + labels[i]) % 10 == 0 else (i * 7 + p * 13) % 40)
    with open(os.path.join(d, prefix + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, side, side) + bytes(pixels))
    with open(os.path.join(d, prefix + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n_lab) + labels[:n_lab])
write("train", n_train, n_labels)
write("t10k", n_test, n_test)
EOF
}

# unprivileged_wrap: sets wrap to what runs a command without the right to
# read everything: nothing for a user that is not root, setpriv to nobody for
# root (who reads any file), or (none) when root has neither setpriv nor a
# nobody user, so permission cases are skipped.
unprivileged_wrap() {
    if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
        wrap=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)
    elif [ "$(id -u)" -ne 0 ]; then
        wrap=()
    else
        wrap=(none)
    fi
}

# record_case NAME ERRFILE: with ERRORS_TABLE set (scripts/errors-table), appends
# one raw record to it for docs/errors.md: the script, NAME, the last run's exit
# status, the temporary folder and the shared data folder (which the table writes
# DIR and SHARED), record_wrap (when set, the command that started fewmul:
# prlimit ...), the first line of ERRFILE and the last command line (last_args,
# which may start with one VAR=value of the environment). Fields end in \037 and
# the record in \036 and a newline, so no argument can split it; scripts/errors-table
# turns the records into rows. No process is started: the suite records hundreds.
last_args=()
record_wrap=
record_case() {
    [ -n "${ERRORS_TABLE:-}" ] || return 0
    local line= record
    IFS= read -r line <"$2" || true
    printf -v record '%s\037' "$NAME" "$1" "$rc" "$tmp" "$SHARED" "$record_wrap" "$line" "${last_args[@]}"
    # one write, so the records of tests running side by side never interleave
    printf '%s\036\n' "$record" >>"$ERRORS_TABLE"
}

# ---- expected failures (cli_errors.sh, cli_values.sh) ------------------------

# Runs fewmul with a time limit; sets rc, leaves stdout/stderr in $tmp/out, $tmp/err.
# wrap: a command that starts fewmul (setpriv, prlimit), empty for none.
wrap=()
run_cli() {
    last_args=("$@")
    timeout 300 "${wrap[@]}" "$FEWMUL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
}

first_stderr_line() { head -n 1 "$tmp/err" | cut -c1-200; }

# expect_error NAME CODE PATTERN ARGS...: exit status CODE, and stderr exactly one
# non-empty line "fewmul: error: ..." that matches PATTERN (extended regexp,
# case-insensitive; "" for any).
expect_error() {
    local name=$1 code=$2 pattern=$3
    shift 3
    run_cli "$@"
    record_case "$name" "$tmp/err"
    local lines
    lines=$(awk 'END { print NR }' "$tmp/err")
    if [ "$rc" -eq 124 ]; then
        not_ok "$name" "timed out"
    elif [ "$rc" -ge 128 ]; then
        not_ok "$name" "killed by signal $((rc - 128)) (exit $rc); stderr: $(first_stderr_line)"
    elif [ "$rc" -ne "$code" ]; then
        not_ok "$name" "exit $rc, expected $code; stderr: $(first_stderr_line)"
    elif [ "$lines" -ne 1 ]; then
        not_ok "$name" "stderr has $lines lines, expected 1: $(first_stderr_line)"
    elif ! grep -Eq '^fewmul: error: .+' "$tmp/err"; then
        not_ok "$name" "stderr does not read 'fewmul: error: ...': $(first_stderr_line)"
    elif [ -n "$pattern" ] && ! grep -Eiq -- "$pattern" "$tmp/err"; then
        not_ok "$name" "message does not match /$pattern/: $(first_stderr_line)"
    else
        ok "$name"
    fi
}

# The exit statuses of docs/cli.md, "Exit status".
usage_error() { local name=$1 pattern=$2; shift 2; expect_error "$name" 2 "$pattern" "$@"; }
runtime_error() { local name=$1 pattern=$2; shift 2; expect_error "$name" 1 "$pattern" "$@"; }
not_found() { local name=$1 pattern=$2; shift 2; expect_error "$name" 3 "$pattern" "$@"; }
bad_input() { local name=$1 pattern=$2; shift 2; expect_error "$name" 4 "$pattern" "$@"; }
io_error() { local name=$1 pattern=$2; shift 2; expect_error "$name" 5 "$pattern" "$@"; }
no_memory() { local name=$1 pattern=$2; shift 2; expect_error "$name" 6 "$pattern" "$@"; }


# tiny_models: two tiny packed models on synthetic data for an export's
# refusals, $tmp/tiny.fmp (with its training state $tmp/tiny.fm) and
# $tmp/other.fmp, and $tmp/damaged.fmp, tiny.fmp with a byte of its first
# layer changed; 1 (after a not_ok) when training wrote no model.
tiny_models() {
    make_idx "$tmp/idx" 200 50 8
    local tiny=(--data "idx:$tmp/idx" --arch mlp:8 --weights bc-det --epochs 1 --batch 50 --valid 50 --threads 1 --quiet)
    "$FEWMUL" train "${tiny[@]}" --out "$tmp/tiny.fmp" --state "$tmp/tiny.fm" >/dev/null 2>&1
    "$FEWMUL" train "${tiny[@]}" --arch mlp:9 --out "$tmp/other.fmp" >/dev/null 2>&1
    if [ ! -s "$tmp/tiny.fmp" ] || [ ! -s "$tmp/other.fmp" ]; then
        not_ok "train two tiny models" "no model written"
        return 1
    fi
    cp "$tmp/tiny.fmp" "$tmp/damaged.fmp"
    printf '\377' | dd of="$tmp/damaged.fmp" bs=1 seek=100 conv=notrunc 2>/dev/null
}
# failed_writes_keep WHAT FSIZE FOLDER DISK_PATTERN PERM_PATTERN ARGS...: an
# export (fewmul ARGS, writing into FOLDER) on a full disk (a file size limit
# of FSIZE bytes makes the write fail part-way with EFBIG, as ENOSPC would;
# SIGXFSZ is ignored so that the write returns the error), then as an
# unprivileged user into FOLDER made read-only: each an I/O error matching
# its pattern (recorded for docs/errors.md), after which `kept` (the
# caller's function) must find the earlier export's files untouched and no
# temporary file left. Skipped without prlimit, or as root without setpriv.
failed_writes_keep() {
    local what=$1 fsize=$2 folder=$3 disk=$4 perm=$5
    shift 5
    if command -v prlimit >/dev/null; then
        wrap=(bash -c "trap '' XFSZ; exec prlimit --fsize=$fsize \"\$0\" \"\$@\"")
        io_error "$what on a full disk" "$disk" "$@"
        wrap=()
        if kept; then ok "... and the last export's files are untouched, no temporary file left"; else not_ok "... and the last export's files are untouched, no temporary file left" "they changed"; fi
    else
        skip "$what on a full disk" "prlimit not found"
    fi
    unprivileged_wrap
    if [ "${wrap[0]:-}" != none ]; then
        chmod 755 "$tmp" && find "$tmp" -maxdepth 1 -type f -exec chmod a+r {} + && chmod 555 "$folder"
        io_error "$what into a folder that cannot be written" "$perm" "$@"
        chmod 755 "$folder"
        if kept; then ok "... and the files are untouched"; else not_ok "... and the files are untouched" "they changed"; fi
    else
        skip "$what into a folder that cannot be written" "running as root without setpriv or a nobody user"
    fi
    wrap=()
}

# Prints the counts; the exit status is 1 if anything failed, 77 (CTest's
# skip) if nothing ran but something was skipped, else 0.
finish() {
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ] || return 1
    [ "$passed" -gt 0 ] || [ "$skipped" -eq 0 ] || return 77
}
