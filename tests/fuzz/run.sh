#!/usr/bin/env bash
# run.sh — builds fewmul's libFuzzer targets (tests/fuzz/fuzz_*.c) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs each for SECONDS
# (default 30) from its seed corpus tests/fuzz/corpus/NAME.
#
# The library's sources (src/*/*.c; portable: no BLAS, no OpenMP unless
# FUZZ_OPENMP=1) are compiled once, with coverage instrumentation
# (-fsanitize=fuzzer-no-link), into an archive that every target links;
# objects are rebuilt only when a source, a header it includes or the flags
# change. Targets named fuzz_cli* also link the command's sources: tools/*.c
# except tools/main.c and any file that defines main() (found with nm), and
# the report module's, tools/report/*.c; with -I tools.
#
# NAME is the target's file name without "fuzz_" and without a "_file" suffix
# (fuzz_deploy_file.c: corpus/deploy). A target may name extra libFuzzer
# options in a comment line "FUZZ_OPTIONS: -max_len=16384" of its source, and
# tests/fuzz/NAME.dict is its dictionary when present. Every target runs with
# -malloc_limit_mb=256 (no input of a few KB justifies more), -rss_limit_mb=2048
# and -timeout=10; leaks are checked after each input.
#
# At the end one line per target gives its executions, time, corpus (libFuzzer's
# count and size of the inputs it kept) and findings (crash, leak, timeout,
# out-of-memory files, or an abnormal exit), then a total; the exit status is 1
# when any target found something or did not build. New inputs and findings go
# under the build folder (FUZZ_BUILD/fuzz_NAME.corpus, .artifacts, .log), never
# into the committed seeds.
#
# Usage: tests/fuzz/run.sh [SECONDS [NAME...]]     e.g. run.sh 20 idx svhn
# Environment: CC (default clang); FUZZ_BUILD (default build-fuzz in the
# repository root); FUZZ_JOBS, targets fuzzed at once (default: 2 on a machine
# with 2 or more CPUs, else 1; the build uses every CPU); FUZZ_OPENMP=1 to build
# with -fopenmp; FUZZ_FLAGS, extra libFuzzer options for every target.
set -euo pipefail

usage() {
    echo "usage: $0 [SECONDS [NAME...]]  (NAME: a target, e.g. idx or fuzz_idx)" >&2
    exit 2
}

seconds=${1:-30}
case $seconds in '' | *[!0-9]*) usage ;; esac
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CC:-clang}
build=${FUZZ_BUILD:-$root/build-fuzz}
case $build in /*) ;; *) build=$PWD/$build ;; esac
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
jobs=${FUZZ_JOBS:-$((cpus >= 2 ? 2 : 1))}
case $jobs in '' | *[!0-9]* | 0) echo "run.sh: FUZZ_JOBS must be a positive number" >&2; exit 2 ;; esac

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run.sh: $cc not found (libFuzzer needs clang)" >&2
    exit 2
fi
nm=nm
command -v nm >/dev/null 2>&1 || nm=llvm-nm

# ---- targets ----------------------------------------------------------------

shopt -s nullglob
short_name() { # fuzz_deploy_file.c -> deploy
    local n
    n=$(basename "$1" .c)
    n=${n#fuzz_}
    echo "${n%_file}"
}
all=("$here"/fuzz_*.c)
if [ ${#all[@]} -eq 0 ]; then
    echo "run.sh: no fuzz targets in $here" >&2
    exit 2
fi
targets=()
if [ $# -eq 0 ]; then
    targets=("${all[@]}")
else
    for want in "$@"; do
        match=
        for t in "${all[@]}"; do
            b=$(basename "$t" .c)
            if [ "$want" = "$b" ] || [ "$want" = "${b#fuzz_}" ] || [ "$want" = "$(short_name "$t")" ]; then
                match=$t
            fi
        done
        if [ -z "$match" ]; then
            echo "run.sh: no target '$want' (targets:$(for t in "${all[@]}"; do printf ' %s' "$(short_name "$t")"; done))" >&2
            exit 2
        fi
        targets+=("$match")
    done
fi

# ---- flags ------------------------------------------------------------------

# The library's internal include folders, as CMakeLists.txt lists them.
dirs=$(sed -n 's/^foreach(dir \(.*\))$/\1/p' "$root/CMakeLists.txt" | head -n 1)
if [ -z "$dirs" ]; then
    echo "run.sh: no 'foreach(dir ...)' include list in CMakeLists.txt" >&2
    exit 2
fi
includes=(-I"$root/include")
for d in $dirs; do includes+=(-I"$root/src/$d"); done

common=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
        -fno-sanitize-recover=undefined)
# the SIMD kernels need their instruction sets where the CPU has them
if echo 'int main(void){return 0;}' | "$cc" -march=native -x c - -o /dev/null 2>/dev/null; then
    common+=(-march=native)
fi
if [ "${FUZZ_OPENMP:-0}" = 1 ]; then
    common+=(-fopenmp)
else
    common+=(-Wno-unknown-pragmas)
fi
libs=(-lz -lm)
# ONNX (export_onnx.c, import_onnx.c) as CMakeLists.txt builds it: onnx.proto
# under the package name fmi_onnx, compiled by protoc-c into the build folder,
# when protoc-c, libprotobuf-c and the proto are there (else the ONNX
# functions only refuse, and fuzz_onnx_import tests that)
onnx_proto=/usr/lib/python3/dist-packages/onnx/onnx.proto
onnx_src=()
if command -v protoc-c >/dev/null 2>&1 && [ -r "$onnx_proto" ] &&
    [ -r /usr/include/protobuf-c/protobuf-c.h ]; then
    mkdir -p "$build/onnx_pb"
    sed 's/^package onnx;/package fmi_onnx;/' "$onnx_proto" >"$build/onnx_pb/fmi_onnx.proto.new"
    if ! cmp -s "$build/onnx_pb/fmi_onnx.proto.new" "$build/onnx_pb/fmi_onnx.proto"; then
        mv "$build/onnx_pb/fmi_onnx.proto.new" "$build/onnx_pb/fmi_onnx.proto"
        protoc-c --c_out="$build/onnx_pb" --proto_path="$build/onnx_pb" "$build/onnx_pb/fmi_onnx.proto"
    fi
    includes+=(-I"$build/onnx_pb" -DFM_HAVE_ONNX=1)
    onnx_src=("$build/onnx_pb/fmi_onnx.pb-c.c")
    libs+=(-lprotobuf-c)
fi
compile=("${common[@]}" -fsanitize=fuzzer-no-link "${includes[@]}")
link=("${common[@]}" -fsanitize=fuzzer "${includes[@]}")
# as CMakeLists.txt: the SIMD inference kernels get their instruction sets
# whatever the machine (infer.c runs one only on a CPU that has it)
avx2=(-mavx2 -mpopcnt)
avx512=(-mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq -mavx2 -mpopcnt)
case $(uname -m) in x86_64 | amd64) ;; *) avx2=() avx512=() ;; esac
file_flags() {
    case $1 in
    */infer_avx2.c) echo "${avx2[*]}" ;;
    */infer_avx512.c) echo "${avx512[*]}" ;;
    esac
}

# ---- building ---------------------------------------------------------------

mkdir -p "$build/lib" "$build/tools"
stamp="$cc ${compile[*]} | ${link[*]} | ${avx2[*]} | ${avx512[*]}"
if [ ! -f "$build/flags" ] || [ "$(cat "$build/flags")" != "$stamp" ]; then
    rm -f "$build"/lib/*.o "$build"/lib/*.d "$build"/tools/*.o "$build"/tools/*.d "$build"/libfewmul-fuzz.a
    rm -f "$build"/fuzz_*.d
    printf '%s\n' "$stamp" >"$build/flags"
fi

# stale OBJ DEPFILE SOURCE: true when OBJ must be rebuilt
stale() {
    [ -f "$1" ] && [ -f "$2" ] || return 0
    [ "$3" -nt "$1" ] && return 0
    local dep
    for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$2"); do
        [ -e "$dep" ] || return 0
        [ "$dep" -nt "$1" ] && return 0
    done
    return 1
}

# compiles SOURCE into OBJ (with its depfile), adding EXTRA flags
compile_one() {
    local source=$1 obj=$2
    shift 2
    # shellcheck disable=SC2046
    "$cc" "${compile[@]}" "$@" $(file_flags "$source") -MMD -MF "${obj%.o}.d" -c "$source" -o "$obj"
}

# builds the objects of the given sources into DIR in parallel; prints them
build_objects() {
    local dir=$1 extra=$2
    shift 2
    local pids=() objs=() source obj failed=0 n=0
    for source in "$@"; do
        obj=$dir/$(basename "$(dirname "$source")")_$(basename "$source" .c).o
        objs+=("$obj")
        if stale "$obj" "${obj%.o}.d" "$source"; then
            rm -f "$obj"
            # shellcheck disable=SC2086
            compile_one "$source" "$obj" $extra &
            pids+=($!)
            n=$((n + 1))
            if [ $n -ge "$cpus" ]; then
                wait "${pids[0]}" || failed=1
                pids=("${pids[@]:1}")
                n=$((n - 1))
            fi
        fi
    done
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [ $failed = 0 ] || return 1
    printf '%s\n' "${objs[@]}"
}

t0=$(date +%s)
echo "== building the library for fuzzing ($build)"
sources=("$root"/src/*/*.c ${onnx_src[@]+"${onnx_src[@]}"})
if ! lib_objs=$(build_objects "$build/lib" "" "${sources[@]}"); then
    echo "run.sh: the library does not build" >&2
    exit 1
fi
archive=$build/libfewmul-fuzz.a
# shellcheck disable=SC2086
if [ ! -f "$archive" ] || [ -n "$(find $lib_objs -newer "$archive" 2>/dev/null)" ] ||
    [ "$(ar t "$archive" | sort)" != "$(for o in $lib_objs; do basename "$o"; done | sort)" ]; then
    rm -f "$archive"
    # shellcheck disable=SC2086
    ar rcs "$archive" $lib_objs
fi

# The command's sources, for fuzz_cli* targets only.
need_tools=0
for t in "${targets[@]}"; do case $(basename "$t") in fuzz_cli*) need_tools=1 ;; esac; done
tool_objs=()
if [ $need_tools = 1 ]; then
    tool_sources=()
    for s in "$root"/tools/*.c "$root"/tools/report/*.c; do
        [ "$(basename "$s")" = main.c ] || tool_sources+=("$s")
    done
    if [ ${#tool_sources[@]} -gt 0 ]; then
        if ! objs=$(build_objects "$build/tools" "-I$root/tools" "${tool_sources[@]}"); then
            echo "run.sh: the command's sources do not build" >&2
            exit 1
        fi
        for o in $objs; do
            # libFuzzer brings main(); a file that defines its own is the command's entry point
            if "$nm" --defined-only "$o" 2>/dev/null | grep -Eq '^[0-9a-fA-F]* T main$'; then
                continue
            fi
            tool_objs+=("$o")
        done
    fi
fi

failed_build=()
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)
    exe=$build/$name
    extra=()
    objs=()
    case $name in fuzz_cli*) extra=(-I"$root/tools") objs=(${tool_objs[@]+"${tool_objs[@]}"}) ;; esac
    rebuild=0
    stale "$exe" "$build/$name.d" "$target" && rebuild=1
    for d in "$archive" ${objs[@]+"${objs[@]}"}; do [ "$d" -nt "$exe" ] && rebuild=1; done
    list="${objs[*]:-}"
    [ -f "$build/$name.objs" ] && [ "$(cat "$build/$name.objs")" = "$list" ] || rebuild=1
    [ $rebuild = 1 ] || continue
    printf '%s\n' "$list" >"$build/$name.objs"
    echo "== $name: building"
    if ! "$cc" "${link[@]}" ${extra[@]+"${extra[@]}"} -MMD -MF "$build/$name.d" "$target" \
        ${objs[@]+"${objs[@]}"} "$archive" "${libs[@]}" -o "$exe" >"$build/$name.build.log" 2>&1; then
        cat "$build/$name.build.log" >&2
        rm -f "$exe"
        failed_build+=("$name")
    fi
done
t1=$(date +%s)
echo "== built in $((t1 - t0)) s"

# ---- fuzzing ----------------------------------------------------------------

# fuzz_one TARGET: runs it, writes $build/NAME.summary
fuzz_one() {
    local target=$1 name short seeds exe work artifacts log dict opts status start
    name=$(basename "$target" .c)
    short=$(short_name "$target")
    seeds=$root/tests/fuzz/corpus/$short
    exe=$build/$name
    work=$build/$name.corpus
    artifacts=$build/$name.artifacts
    log=$build/$name.log
    mkdir -p "$work" "$artifacts"
    rm -f "$artifacts"/*
    opts=(-max_total_time="$seconds" -print_final_stats=1 -max_len=8192 -timeout=10
          -rss_limit_mb=2048 -malloc_limit_mb=256 -artifact_prefix="$artifacts/")
    dict=$here/$short.dict
    [ -f "$dict" ] && opts+=(-dict="$dict")
    # the target's own options: the words starting with '-' after "FUZZ_OPTIONS:"
    # (read splits without expanding globs, so a comment's "*/" stays a word)
    local words w
    read -r -a words <<<"$(sed -n 's/^.*FUZZ_OPTIONS:[[:space:]]*//p' "$target" | head -n 1)"
    for w in ${words[@]+"${words[@]}"}; do case $w in -?*) opts+=("$w") ;; esac; done
    read -r -a words <<<"${FUZZ_FLAGS:-}"
    opts+=(${words[@]+"${words[@]}"})
    local corpora=("$work")
    [ -d "$seeds" ] && corpora+=("$seeds")
    echo "== $name: fuzzing for $seconds s (seeds: ${seeds#"$root"/})"
    start=$(date +%s)
    set +e
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$exe" "${opts[@]}" "${corpora[@]}" >"$log" 2>&1
    status=$?
    set -e
    local runs corp found findings
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then # stopped before the final stats: the last status line
        runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' "$log" | tail -n 1)
    found=("$artifacts"/*)
    findings=${#found[@]}
    [ "$status" -ne 0 ] && [ "$findings" -eq 0 ] && findings=1
    {
        printf '%s %s %s %s %s\n' "$name" "${runs:-0}" "$(($(date +%s) - start))" "${corp:-0/0b}" "$findings"
        if [ "$findings" -gt 0 ]; then
            echo "  $name: exit $status"
            for f in "${found[@]}"; do echo "  reproducer: $f"; done
            { grep -E '^(==[0-9]+== ?ERROR|SUMMARY|.*runtime error|fuzz_[a-z_]*: )' "$log" || true; } |
                head -n 5 | sed 's/^/  /'
            echo "  log: $log"
        fi
    } >"$build/$name.summary"
    echo "== $name: done"
}

running=0
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)
    rm -f "$build/$name.summary"
    [ -x "$build/$name" ] || continue
    if [ $running -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$target" &
    running=$((running + 1))
done
wait || true

# ---- summary ----------------------------------------------------------------

echo "== summary: $seconds s per target, $jobs at once, built in $((t1 - t0)) s, total $(($(date +%s) - t0)) s"
total_runs=0 total_findings=0 total_inputs=0
printf '%-22s %12s %6s %18s %9s\n' target executions time corpus findings
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)
    if [ ! -f "$build/$name.summary" ]; then
        printf '%-22s %12s %6s %18s %9s\n' "$name" - - - "no build"
        total_findings=$((total_findings + 1))
        continue
    fi
    read -r _ runs secs corp findings <"$build/$name.summary"
    printf '%-22s %12s %5ss %18s %9s\n' "$name" "$runs" "$secs" "${corp%%/*} (${corp#*/})" "$findings"
    tail -n +2 "$build/$name.summary"
    total_runs=$((total_runs + runs))
    total_inputs=$((total_inputs + ${corp%%/*}))
    total_findings=$((total_findings + findings))
done
printf '%-22s %12s %6s %18s %9s\n' total "$total_runs" "" "$total_inputs" "$total_findings"
[ $total_findings -eq 0 ] || exit 1
exit 0
