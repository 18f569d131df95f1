#!/usr/bin/env bash
# cli_export_m4.sh — the C that `fewmul export --c` writes, on a
# microcontroller: the three networks of tests/export/models.sh (trained
# briefly on MNIST, or Fashion-MNIST where MNIST is absent) are exported and
# built for a Cortex-M4 with GCC (-Os -mcpu=cortex-m4 -mthumb, hard float,
# the compiler's own GNU dialect, where it would fuse multiply-adds if the
# file did not forbid it) together with 1,000 test images embedded in the
# program, a minimal startup and semihosting (tests/export/m4/: no C
# library, -nostdlib, only libgcc), and run under QEMU's MPS2-AN386 board:
# every prediction must be `fewmul infer --show`'s. Prints each model's
# flash (text + rodata of NAME.o) and RAM (data + bss of NAME.o, the scratch
# buffer, and the stack a prediction used, found by painting the stack);
# with FEWMUL_M4_TABLE=FILE also writes them as a Markdown table
# (docs/deploy.md). Skipped (exit 77) without arm-none-eabi-gcc or
# qemu-system-arm (Debian: gcc-arm-none-eabi, qemu-system-arm).
# Usage: cli_export_m4.sh PATH_TO_fewmul [SHARED_DATA_DIR]
set -u

NAME=cli_export_m4.sh
source "$(dirname "$0")/cli_common.sh"
source "$(dirname "$0")/export/models.sh"
M4=$EXPORT_SOURCE/m4

missing=""
for tool in arm-none-eabi-gcc arm-none-eabi-size arm-none-eabi-nm qemu-system-arm; do
    command -v "$tool" >/dev/null || missing+=" $tool"
done
if [ -n "$missing" ]; then
    skip "Cortex-M4 build under QEMU" "not installed:$missing (Debian: gcc-arm-none-eabi qemu-system-arm)"
    finish
    exit
fi
if ! qemu-system-arm -M help | grep -q '^mps2-an386'; then
    skip "Cortex-M4 build under QEMU" "this qemu-system-arm has no mps2-an386 board"
    finish
    exit
fi
# Under a sanitized fewmul (CI's second run of the suite) it would check the
# same cross-compiled code again, only slower.
if ldd "$FEWMUL" 2>/dev/null | grep -q libasan; then
    skip "Cortex-M4 build under QEMU" "fewmul is an AddressSanitizer build: the plain build's run checks this"
    finish
    exit
fi
if ! models_ready "Cortex-M4 build under QEMU"; then
    finish
    exit
fi
test_images c "$tmp/images.c"

flags=(-Os -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding -Wall -Wextra -Werror)
echo "| model | flash: text + rodata | RAM: data + bss + scratch + stack | of which stack |" >"$tmp/table.md"
echo "|---|---|---|---|" >>"$tmp/table.md"
for m in "${EXPORT_MODELS[@]}"; do
    up=$(echo "$m" | tr '[:lower:]' '[:upper:]')
    if ! arm-none-eabi-gcc "${flags[@]}" -c "$tmp/gen/$m.c" -o "$tmp/$m.o" 2>"$tmp/cc_$m.err" ||
        ! arm-none-eabi-gcc "${flags[@]}" -nostdlib -T "$M4/m4.ld" -I"$tmp/gen" -I"$M4" \
            "-DMODEL_H=\"$m.h\"" -DMODEL="$m" -DMODEL_UPPER="$up" "$M4/startup.c" "$M4/main.c" \
            "$tmp/images.c" "$tmp/$m.o" -lgcc -o "$tmp/$m.elf" 2>>"$tmp/cc_$m.err"; then
        not_ok "$m: builds for the Cortex-M4" "$(head -c 400 "$tmp/cc_$m.err")"
        continue
    fi
    undefined=$(arm-none-eabi-nm -u "$tmp/$m.o" | awk '{print $2}' | tr '\n' ' ')
    if [ -z "$undefined" ]; then
        ok "$m: builds for the Cortex-M4 (-Os, hard float), no C library, no undefined symbol"
    else
        not_ok "$m: no undefined symbol in $m.o" "$undefined"
    fi
    timeout 600 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$tmp/$m.elf" \
        >"$tmp/qemu_$m.out" 2>"$tmp/qemu_$m.txt"
    qrc=$?
    if [ "$qrc" -ne 0 ]; then
        not_ok "$m: runs under qemu-system-arm -M mps2-an386" "exit $qrc: $(tail -c 300 "$tmp/qemu_$m.txt")"
        continue
    fi
    same_classes "$m: $EXPORT_IMAGES images on the Cortex-M4, exactly fewmul infer's classes" "$m" \
        "$tmp/qemu_$m.txt"
    stack=$(awk '$1 == "stack" {print $2}' "$tmp/qemu_$m.txt")
    scratch=$(awk -v k="${up}_SCRATCH_BYTES" '$1 == "#define" && $2 == k {print $3}' "$tmp/gen/$m.h")
    arm-none-eabi-size -A "$tmp/$m.o" >"$tmp/size_$m.txt"
    python3 - "$tmp/size_$m.txt" "$m" "${stack:-0}" "${scratch:-0}" \
        >>"$tmp/table.md" <<'PY'
import sys
sizes = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 2 and f[0].startswith(".") and f[1].isdigit():
        sizes[f[0]] = sizes.get(f[0], 0) + int(f[1])
text, rodata = sizes.get(".text", 0), sizes.get(".rodata", 0)
data, bss = sizes.get(".data", 0), sizes.get(".bss", 0)
m, stack, scratch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print("| %s | %s B = %s + %s | %s B = %s + %s + %s + %s | %s B |" % (
    m, format(text + rodata, ","), format(text, ","), format(rodata, ","),
    format(data + bss + scratch + stack, ","), data, bss, format(scratch, ","), stack, stack))
PY
done
check "the stack a prediction uses was measured, and stays small" '
import sys
rows = [l for l in open(sys.argv[1]) if l.startswith("| ") and not l.startswith("| model")]
for r in rows:
    stack = int(r.split("|")[4].split()[0].replace(",", ""))
    if not 0 < stack < 4096:
        sys.exit("stack %d B in %r" % (stack, r))
if not rows:
    sys.exit("no model measured")
' "$tmp/table.md"
sed 's/^/# /' "$tmp/table.md"
[ -n "${FEWMUL_M4_TABLE:-}" ] && cp "$tmp/table.md" "$FEWMUL_M4_TABLE"

finish
