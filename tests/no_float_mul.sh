#!/usr/bin/env bash
# no_float_mul.sh — proof that the multiplication-free kernels multiply no
# floats: disassembles the compiled kernel objects of the library archive
# (the table kernels of every variant, the exponent-add weight gradient, the
# layout fills and the exactness check, the convolution kernels, the error
# map's dilation and the sign packing: infer.c, infer_ref.c, infer_avx2.c,
# infer_avx512.c, infer_neon.c, infer_conv.c; and the drivers of --exec
# mulfree's dense and convolution products: mulfree.c) and fails on any float
# multiply, fused multiply-add, dot product, divide, reciprocal, scale or
# vector integer multiply instruction (aarch64: the float ones). The only functions exempt are `synapse_products`,
# which form the synapse product tables (N multiplies per input), and
# `times_h`, the one multiply by H per output (docs/mulfree.md lists both).
# The column copy that feeds a convolution's exponent-add weight gradient
# (conv.c's im2col and its chunk driver, shared with the default path, whose
# object also holds the GEMM calls) is scanned for float arithmetic of that
# kind only: its address arithmetic may use vector integer multiplies. A
# self-check first shows the scan finds the multiplies that are there.
#
# usage: tests/no_float_mul.sh LIBFEWMUL.a
set -u -o pipefail

ARCHIVE=${1:?usage: no_float_mul.sh LIBFEWMUL.a}
OBJDUMP=${OBJDUMP:-objdump}
MEMBERS="infer.c.o infer_ref.c.o infer_avx2.c.o infer_avx512.c.o infer_neon.c.o infer_conv.c.o mulfree.c.o"
EXEMPT='^(synapse_products|times_h)([.].*)?$'
# mnemonics (AT&T or Intel spelling, with or without the v prefix / suffixes;
# aarch64: fmul, fmla, fmadd, fnmul, fdiv, frecpe, frsqrte, the dot products)
AARCH64='|fml[as][a-z0-9]*|fn?m(add|sub)|fnmul|frecp[a-z]*|frsqrt[a-z]*|[su]dot|usdot|bfdot|bfml[a-z]*|bfmmla|[su]?mmla'
FLOAT_FORBIDDEN='^(v?mul(ss|sd|ps|pd|sh|ph)|v?f(n?m(add|sub)(sub|add)?)[0-9]*(ss|sd|ps|pd|sh|ph)|vfm(addsub|subadd)[0-9]*(ps|pd|ph)|v?dp(ps|pd)|v?div(ss|sd|ps|pd|sh|ph)|vscalef(ss|sd|ps|pd|sh|ph)|v?rcp[0-9a-z]*|v?rsqrt[0-9a-z]*|f(i?)mul[a-z]*|f(i?)div[a-z]*|v4?fmadd[a-z]*'"$AARCH64"')$'
FORBIDDEN='^(v?mul(ss|sd|ps|pd|sh|ph)|v?f(n?m(add|sub)(sub|add)?)[0-9]*(ss|sd|ps|pd|sh|ph)|vfm(addsub|subadd)[0-9]*(ps|pd|ph)|v?dp(ps|pd)|v?div(ss|sd|ps|pd|sh|ph)|vscalef(ss|sd|ps|pd|sh|ph)|v?rcp[0-9a-z]*|v?rsqrt[0-9a-z]*|f(i?)mul[a-z]*|f(i?)div[a-z]*|v?pmul[a-z0-9]*|v?pmadd[a-z0-9]*|vpdp[a-z]*|v4?fmadd[a-z]*'"$AARCH64"')$'

command -v "$OBJDUMP" >/dev/null || { echo "no_float_mul.sh: $OBJDUMP not found (install binutils)" >&2; exit 1; }
[ -f "$ARCHIVE" ] || { echo "no_float_mul.sh: $ARCHIVE not found" >&2; exit 1; }
WORK=$(mktemp -d) || exit 1
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && ar x "$ARCHIVE") || { echo "no_float_mul.sh: cannot unpack $ARCHIVE" >&2; exit 1; }

# scan OBJECT EXEMPT_REGEX [ONLY_REGEX [FORBIDDEN_REGEX]]: prints "function:
# mnemonic" per offending instruction of the functions (all, or those ONLY
# names), and on stderr the number of functions and instructions seen.
scan() {
  "$OBJDUMP" -d --no-show-raw-insn "$1" | awk -v forbidden="${4:-$FORBIDDEN}" -v exempt="$2" -v only="${3:-}" '
    /^[0-9a-f]+ <[^>]+>:$/ { fn = $2; gsub(/[<>:]/, "", fn); skip = only != "" && fn !~ only; if (!skip) functions++; next }
    /^ +[0-9a-f]+:\t/ {
      if (skip) next
      split($0, parts, "\t"); insn = parts[2]; split(insn, words, " "); op = words[1]
      if (op ~ /^(rep|repz|repnz|lock|notrack|bnd|data16|addr32)$/) op = words[2]
      instructions++
      if (exempt != "" && fn ~ exempt) next
      if (op ~ forbidden) print fn ": " insn
    }
    END { printf "%d functions, %d instructions\n", functions, instructions > "/dev/stderr" }'
}

status=0
# Self-check: without the exemption the scan must find the exempt functions' multiplies.
for check in infer_ref.c.o:synapse_products infer_conv.c.o:synapse_products mulfree.c.o:times_h; do
  member=${check%%:*} fn=${check#*:}
  if [ -z "$(scan "$WORK/$member" '' 2>/dev/null | grep "^$fn")" ]; then
    echo "FAIL self-check: no multiply found in $member's $fn without the exemption" >&2
    status=1
  else
    echo "ok self-check: the scan finds the multiplies of $member's $fn when not exempt"
  fi
done

for member in $MEMBERS; do
  object="$WORK/$member"
  if [ ! -f "$object" ]; then
    echo "FAIL $member: not in $ARCHIVE (renamed? update tests/no_float_mul.sh)" >&2
    status=1
    continue
  fi
  found=$(scan "$object" "$EXEMPT" 2>"$WORK/counts")
  counts=$(cat "$WORK/counts")
  case "$counts" in
    0\ functions*|*\ 0\ instructions) echo "FAIL $member: nothing disassembled ($counts)" >&2; status=1; continue ;;
  esac
  if [ -n "$found" ]; then
    echo "FAIL $member: float multiplies outside synapse_products and times_h:" >&2
    echo "$found" | head -20 >&2
    status=1
  else
    echo "ok $member: $counts, no float multiply outside synapse_products and times_h"
  fi
done

# The column copy of a convolution's weight gradient: no float arithmetic.
COLUMNS='^(im2col|fmi_conv_backward_weights_rows)([.].*)?$'
if [ ! -f "$WORK/conv.c.o" ]; then
  echo "FAIL conv.c.o: not in $ARCHIVE (renamed? update tests/no_float_mul.sh)" >&2
  status=1
else
  found=$(scan "$WORK/conv.c.o" '' "$COLUMNS" "$FLOAT_FORBIDDEN" 2>"$WORK/counts")
  counts=$(cat "$WORK/counts")
  case "$counts" in
    0\ functions*|*\ 0\ instructions|1\ functions*) echo "FAIL conv.c.o: the column copy was not found ($counts)" >&2; status=1 ;;
    *) if [ -n "$found" ]; then
         echo "FAIL conv.c.o: float arithmetic in the column copy:" >&2
         echo "$found" | head -20 >&2
         status=1
       else
         echo "ok conv.c.o column copy: $counts, no float multiply"
       fi ;;
  esac
fi

# The kernels the training path and the deployed convolutions call must be
# among what was scanned.
defined=$(nm "$WORK"/infer*.c.o "$WORK"/mulfree.c.o 2>/dev/null)
for symbol in fmi_pow2_grad_ref fmi_infer_real_ref fmi_kernel_fill fmi_pow2_grad_exact \
    fmi_conv_real_ref fmi_conv_bits_ref fmi_signs_int_ref fmi_signs_float_ref fmi_conv_fill \
    fmi_conv_dilate fmi_mulfree_product fmi_mulfree_pow2_grad fmi_mulfree_conv \
    fmi_mulfree_conv_pow2_grad; do
  if ! grep -q " T $symbol\$" <<<"$defined"; then
    echo "FAIL: $symbol not defined in the scanned objects" >&2
    status=1
  fi
done
exit $status
