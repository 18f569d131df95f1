# cli_common.sh — sourced by the command-line test scripts (cli_*.sh): checks
# the arguments (PATH_TO_fewmul [SHARED_DATA_DIR]), makes a temporary
# directory removed on exit, keeps TAP-like counts, and runs fewmul (run,
# first_err_line) and Python checks of its output (check). NAME must be set to
# the script's name first; the script ends with `finish`.

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH_TO_fewmul [SHARED_DATA_DIR]" >&2
    exit 2
fi
FEWMUL=$1
SHARED=${2:-}
command -v python3 >/dev/null || { echo "$NAME: python3 is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
skip() { echo "ok - $1 # SKIP $2"; }

# run OUT ARGS...: runs fewmul with a time limit, stdout to $tmp/OUT, stderr to
# $tmp/OUT.err; sets rc.
run() {
    local out=$1
    shift
    timeout 300 "$FEWMUL" "$@" >"$tmp/$out" 2>"$tmp/$out.err" </dev/null
    rc=$?
}

first_err_line() { head -n 1 "$tmp/$1.err" | cut -c1-200; }

# check NAME PYTHON_CODE ARGS...: runs the code with the arguments in sys.argv;
# it fails the check with sys.exit("why").
check() {
    local name=$1 code=$2
    shift 2
    local why
    if why=$(python3 -c "$code" "$@" 2>&1); then ok "$name"; else not_ok "$name" "$why"; fi
}

# Prints the counts; the exit status is nonzero if anything failed.
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
