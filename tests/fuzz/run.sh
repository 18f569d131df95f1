#!/usr/bin/env bash
# run.sh — builds fewmul's libFuzzer targets (tests/fuzz/fuzz_*.c) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, straight from the library
# sources (portable: no BLAS, no OpenMP unless FUZZ_OPENMP=1), and runs each
# for SECONDS (default 30) from its seed corpus tests/fuzz/corpus/NAME.
# Prints each target's executions and whether it found a crash; exits 1 if
# any did. New inputs and crash files go under the build folder, never into
# the committed seeds.
#
# Usage: tests/fuzz/run.sh [SECONDS]
# Environment: CC (default clang), FUZZ_BUILD (default build-fuzz in the
# repository root), FUZZ_OPENMP=1 to build with -fopenmp, FUZZ_JOBS.
set -euo pipefail

seconds=${1:-30}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CC:-clang}
build=${FUZZ_BUILD:-$root/build-fuzz}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run.sh: $cc not found (libFuzzer needs clang)" >&2
    exit 2
fi

# The library's internal include folders, as CMakeLists.txt lists them.
dirs=$(sed -n 's/^foreach(dir \(.*\))$/\1/p' "$root/CMakeLists.txt" | head -n 1)
if [ -z "$dirs" ]; then
    echo "run.sh: no 'foreach(dir ...)' include list in CMakeLists.txt" >&2
    exit 2
fi
includes=(-I"$root/include")
for d in $dirs; do includes+=(-I"$root/src/$d"); done

flags=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined)
# the SIMD kernels need their instruction sets where the CPU has them
if echo 'int main(void){return 0;}' | "$cc" -march=native -x c - -o /dev/null 2>/dev/null; then
    flags+=(-march=native)
fi
libs=(-lz -lm)
if [ "${FUZZ_OPENMP:-0}" = 1 ]; then
    flags+=(-fopenmp)
else
    flags+=(-Wno-unknown-pragmas)
fi

mkdir -p "$build"
shopt -s nullglob
sources=("$root"/src/*/*.c)
targets=("$here"/fuzz_*.c)
if [ ${#targets[@]} -eq 0 ]; then
    echo "run.sh: no fuzz targets in $here" >&2
    exit 2
fi

failed=0
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)          # fuzz_deploy_file
    corpus_name=${name#fuzz_}              # deploy_file
    corpus_name=${corpus_name%_file}       # deploy
    seeds=$root/tests/fuzz/corpus/$corpus_name
    exe=$build/$name
    work=$build/$name.corpus
    artifacts=$build/$name.artifacts
    log=$build/$name.log

    echo "== $name: building"
    "$cc" "${flags[@]}" "${includes[@]}" "$target" "${sources[@]}" "${libs[@]}" -o "$exe"

    mkdir -p "$work" "$artifacts"
    rm -f "$artifacts"/*
    dict=$build/$name.dict
    printf 'magic="FMULPACK"\ntag="LAYR"\nversion="\\x01\\x00\\x00\\x00"\n' >"$dict"
    corpora=("$work")
    [ -d "$seeds" ] && corpora+=("$seeds")

    echo "== $name: fuzzing for $seconds s (seeds: ${seeds#"$root"/})"
    set +e
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$exe" -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 \
        -timeout=10 -rss_limit_mb=2048 -dict="$dict" \
        -artifact_prefix="$artifacts/" "${corpora[@]}" >"$log" 2>&1
    status=$?
    set -e

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then # killed before the final stats: take the last status line
        runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    found=("$artifacts"/*)
    if [ $status -ne 0 ] || [ ${#found[@]} -gt 0 ]; then
        failed=1
        echo "$name: ${runs:-?} executions; CRASH found (exit $status)"
        for f in "${found[@]}"; do echo "  reproducer: $f"; done
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 | sed 's/^/  /'
        echo "  log: $log"
    else
        echo "$name: ${runs:-?} executions; no crash found (corpus: $(ls "$work" | wc -l) inputs)"
    fi
done
exit $failed
