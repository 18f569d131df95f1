# cli_common.sh — sourced by the command-line test scripts (cli_*.sh): checks
# the arguments (PATH_TO_fewmul [SHARED_DATA_DIR]), makes a temporary
# directory removed on exit, and keeps TAP-like counts. NAME must be set to
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

# Prints the counts; the exit status is nonzero if anything failed.
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
