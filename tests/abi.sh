#!/usr/bin/env bash
# abi.sh — the header is the ABI: every symbol the static library defines
# for others to link is either a function declared in include/fewmul.h or an
# internal one named fmi_* (never fm_*, the public namespace, nor bare).
# Names in the implementation's reserved namespace (__*: the sanitizers'
# __odr_asan.* indicators, for one) belong to the toolchain, not to fewmul.
# The shared library (libfewmul.so, cmake/fewmul.map) exports fewmul.h's
# functions alone: there an fmi_* symbol is a failure too.
# Usage: tests/abi.sh LIBFEWMUL.a|LIBFEWMUL.so INCLUDE/fewmul.h
set -euo pipefail
lib=$1 header=$2
shared=0 nm_table=-g
case $lib in *.so | *.so.*) shared=1 nm_table=-D ;; esac
public=$(grep -oE '\bfm_[a-z0-9_]+[[:space:]]*\(' "$header" | sed 's/[[:space:]]*($//' | sort -u)
bad=0 n=0 toolchain=0
while read -r symbol; do
  n=$((n + 1))
  case $symbol in
    fmi_*) [ $shared = 1 ] || continue ;;
    __*) toolchain=$((toolchain + 1)); continue ;;
  esac
  if ! grep -qx "$symbol" <<<"$public"; then
    if [ $shared = 1 ]; then
      echo "abi: $symbol is exported by the shared library but not declared in fewmul.h"
    else
      echo "abi: $symbol is defined by the library but is neither declared in fewmul.h nor named fmi_*"
    fi
    bad=$((bad + 1))
  fi
done < <(nm $nm_table --defined-only "$lib" | awk '$2 ~ /^[TDBRCGVW]$/ {print $3}' | sort -u)
[ "$n" -gt 0 ] || { echo "abi: no symbols read from $lib"; exit 1; }
if [ $bad -gt 0 ]; then
  echo "abi: $bad of $n symbols outside the public header and the fmi_ namespace"
  exit 1
fi
echo "abi: $n symbols: $(grep -c . <<<"$public") public (fewmul.h), $toolchain the toolchain's (__*), the rest fmi_*"
