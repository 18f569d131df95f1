#!/usr/bin/env bash
# cli_export.sh — checks `fewmul export --c` as a user would meet it: its
# usage errors and refusals (recorded for docs/errors.md), that a failed
# export (a folder at the header's name, a full disk, no permission) leaves
# the files of the last one as they were, that a header and a source of two
# exports do not compile together; then, on three networks trained briefly
# on MNIST (or Fashion-MNIST where MNIST is absent: a binary mlp:256,256, the
# fully binary paper-mlp and a small fully binary CNN), that the generated C
# compiles for the host with -Wall -Wextra -Werror under AddressSanitizer and
# UndefinedBehaviorSanitizer and predicts 1,000 test images exactly as
# `fewmul infer --show` does (both entry points), that it needs nothing a
# freestanding compiler lacks (no undefined symbol at -O2, -O3, -Os, with
# GCC and clang), and its batch-1 latency beside fewmul infer's (printed,
# not checked: the machine is shared). The Cortex-M4 build is
# tests/cli_export_m4.sh.
# Usage: cli_export.sh PATH_TO_fewmul [SHARED_DATA_DIR]
set -u

NAME=cli_export.sh
source "$(dirname "$0")/cli_common.sh"
source "$(dirname "$0")/export/models.sh"
CC=${CC:-cc}

# ---- refusals (a tiny model on synthetic data: every machine runs these) ----

usage_error "export without --model" 'missing --model' export --c "$tmp/c"
usage_error "export without --c" 'missing --c DIR' export --model "$tmp/tiny.fmp"
usage_error "export --name that is not a C identifier" "--name '2fast' is not a C identifier" \
    export --model "$tmp/tiny.fmp" --c "$tmp/c" --name 2fast
usage_error "export --c without a folder" "option '--c' needs a value" export --model "$tmp/tiny.fmp" --c
not_found "export of a missing model" 'none\.fmp.*No such file' export --model "$tmp/none.fmp" --c "$tmp/c"

if ! tiny_models; then
    finish
    exit
fi
bad_input "export of a training-state file" 'tiny\.fm: a training-state file' \
    export --model "$tmp/tiny.fm" --c "$tmp/c"
bad_input "export of a damaged packed model" 'damaged\.fmp: .*checksum' \
    export --model "$tmp/damaged.fmp" --c "$tmp/c"
echo x >"$tmp/plain"
io_error "export --c naming a file" "plain: not a folder" export --model "$tmp/tiny.fmp" --c "$tmp/plain"
not_found "export --c in a folder that does not exist" 'deeper: cannot create the folder: No such file' \
    export --model "$tmp/tiny.fmp" --c "$tmp/missing/deeper"

# A failed export leaves the last one's files as they were.
run first export --model "$tmp/tiny.fmp" --c "$tmp/c"
if [ "$rc" -eq 0 ] && [ -s "$tmp/c/model.h" ] && [ -s "$tmp/c/model.c" ]; then
    ok "export --c DIR makes DIR and writes DIR/model.h and DIR/model.c"
else
    not_ok "export --c DIR makes DIR and writes DIR/model.h and DIR/model.c" "exit $rc: $(first_err_line first)"
fi
cp -p "$tmp/c/model.h" "$tmp/keep.h"
cp -p "$tmp/c/model.c" "$tmp/keep.c"
kept() { cmp -s "$tmp/keep.h" "$tmp/c/model.h" && cmp -s "$tmp/keep.c" "$tmp/c/model.c" &&
    ! ls "$tmp/c" | grep -q '\.tmp\.'; }
mkdir "$tmp/c/other.h"
cp "$tmp/c/model.c" "$tmp/c/other.c"
io_error "export over a header that is a folder" "other\.h' is a directory, not a regular file" \
    export --model "$tmp/other.fmp" --c "$tmp/c" --name other
if cmp -s "$tmp/c/model.c" "$tmp/c/other.c"; then ok "... and the source beside it is untouched"; else not_ok "... and the source beside it is untouched" "it changed"; fi
rmdir "$tmp/c/other.h"
rm -f "$tmp/c/other.c"
failed_writes_keep export 2048 "$tmp/c" 'model\.c: write failed: File too large' \
    'model\.c: cannot create a temporary file beside it: Permission denied' \
    export --model "$tmp/other.fmp" --c "$tmp/c"

# NAME.c refuses a header of another export (a half-copied pair).
run second export --model "$tmp/other.fmp" --c "$tmp/c2" --json
mkdir "$tmp/mixed" && cp "$tmp/c/model.c" "$tmp/c2/model.h" "$tmp/mixed/"
if [ "$rc" -eq 0 ] && ! "$CC" -std=c99 -c "$tmp/mixed/model.c" -o "$tmp/mixed.o" 2>"$tmp/mixed.err" &&
    grep -q 'model.h is not the header of this model.c' "$tmp/mixed.err"; then
    ok "a source and another export's header do not compile together"
else
    not_ok "a source and another export's header do not compile together" "exit $rc; $(head -c 300 "$tmp/mixed.err")"
fi
check "export --json: the files, their sizes, the scratch buffer NAME.h states" '
import json, os, re, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
for k in ["model", "describe", "name", "header", "source", "scratch_bytes", "const_bytes", "weight_bytes", "source_bytes", "exact"]:
    if k not in r:
        sys.exit("no key " + k)
if r["name"] != "model" or r["exact"] is not True or r["source_bytes"] != os.path.getsize(r["source"]):
    sys.exit("name %r exact %r source_bytes %r" % (r["name"], r["exact"], r["source_bytes"]))
h = open(r["header"]).read()
m = re.search(r"#define MODEL_SCRATCH_BYTES (\d+)", h)
if not m or int(m.group(1)) != r["scratch_bytes"]:
    sys.exit("header states %s, JSON %s" % (m and m.group(1), r["scratch_bytes"]))
' "$tmp/second"

# ---- the three networks, on the host ---------------------------------------------

# scripts/errors-table wants the refusals above, not the minute below
if [ -n "${ERRORS_TABLE:-}" ]; then
    finish
    exit
fi

if ! models_ready "exported networks on the host"; then
    finish
    exit
fi
test_images raw "$tmp/images.raw"
python3 -c '
import struct, sys
pixels = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(struct.pack("<%df" % len(pixels), *pixels))
' "$tmp/images.raw" "$tmp/images.f32"

echo 'int main(void) { return 0; }' >"$tmp/probe.c"
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all)
if ! "$CC" "${sanitize[@]}" "$tmp/probe.c" -o "$tmp/probe" 2>/dev/null || ! "$tmp/probe"; then
    skip "AddressSanitizer and UBSan on the exported code" "$CC cannot build with -fsanitize=address,undefined"
    sanitize=()
fi
for m in "${EXPORT_MODELS[@]}"; do
    up=$(echo "$m" | tr '[:lower:]' '[:upper:]')
    build=("$CC" -std=c99 -Wall -Wextra -Werror -I"$tmp/gen" "-DMODEL_H=\"$m.h\"" -DMODEL="$m"
           -DMODEL_UPPER="$up" "$EXPORT_SOURCE/host.c" "$tmp/gen/$m.c")
    if ! "${build[@]}" -O1 "${sanitize[@]}" -o "$tmp/host_$m" 2>"$tmp/cc_$m.err"; then
        not_ok "$m: the exported C compiles for the host" "$(head -c 400 "$tmp/cc_$m.err")"
        continue
    fi
    ok "$m: the exported C compiles for the host with -Wall -Wextra -Werror ${sanitize[*]}"
    "$tmp/host_$m" "$tmp/images.raw" "$EXPORT_IMAGES" >"$tmp/host_$m.txt" 2>"$tmp/host_$m.err"
    same_classes "$m: $EXPORT_IMAGES images, exactly fewmul infer's classes (NAME_predict)" "$m" "$tmp/host_$m.txt"
    [ -s "$tmp/host_$m.err" ] && not_ok "$m: a clean run" "$(head -c 400 "$tmp/host_$m.err")"
    "$tmp/host_$m" "$tmp/images.f32" "$EXPORT_IMAGES" --f32 >"$tmp/host_f32_$m.txt" 2>>"$tmp/host_$m.err"
    same_classes "$m: the same from float pixels (NAME_predict_f32)" "$m" "$tmp/host_f32_$m.txt"

    # nothing outside the file: no undefined symbol, whatever the optimizer makes of it
    undefined=""
    for cc in "$CC" clang; do
        command -v "$cc" >/dev/null || continue
        for opt in -O2 -O3 -Os; do
            if ! "$cc" -std=c99 "$opt" -ffreestanding -Wall -Wextra -Wpedantic -Werror -c "$tmp/gen/$m.c" \
                -o "$tmp/free.o" 2>"$tmp/free.err"; then
                undefined+=" [$cc $opt: $(head -c 200 "$tmp/free.err")]"
            else
                u=$(nm -u "$tmp/free.o" | awk '{print $2}' | tr '\n' ' ')
                [ -n "$u" ] && undefined+=" [$cc $opt: $u]"
            fi
        done
    done
    if [ -z "$undefined" ] && [ "$(grep -c '^#include' "$tmp/gen/$m.c")" -eq 4 ]; then
        ok "$m: freestanding: no undefined symbol (-O2, -O3, -Os), only stdint.h, limits.h, float.h"
    else
        not_ok "$m: freestanding" "${undefined:-includes: $(grep '^#include' "$tmp/gen/$m.c" | tr '\n' ' ')}"
    fi

    # batch-1 latency, one thread, beside fewmul infer's (indicative)
    if "${build[@]}" -O2 -o "$tmp/fast_$m" 2>/dev/null; then
        host_s=$("$tmp/fast_$m" "$tmp/images.raw" 200 --time 5)
        run "lat_$m" infer --model "$tmp/$m.fmp" --data "$TRAIN_SPEC" --batch 1 --threads 1 --json
        run "ref_$m" infer --model "$tmp/$m.fmp" --data "$TRAIN_SPEC" --batch 1 --threads 1 --json \
            --kernels ref
        python3 -c '
import json, sys
best, ref = (json.loads(open(f).read().splitlines()[-1]) for f in sys.argv[1:3])
print("# %s batch-1 latency: exported C (%s -O2) %.1f us; fewmul infer %.1f us (%s kernels), %.1f us (ref)"
      % (sys.argv[3], sys.argv[5], float(sys.argv[4]) * 1e6, best["latency_us_median"], best["kernels"],
         ref["latency_us_median"]))
' "$tmp/lat_$m" "$tmp/ref_$m" "$m" "$host_s" "$CC"
    fi
done

finish
