#!/usr/bin/env bash
# check.sh — the golden-output test: the "ci" runs of tests/golden/runs.sh
# (an MLP with binary weights and Q(x), a ternary MLP on the mulfree kernels
# with 2 threads, a binary CNN, and that CNN on gcn-zca and gcn-lcn inputs
# with 2 threads; every output file, the ledger included) must
# give exactly the hashes in tests/golden/ci.sha256, so that a change of
# shape that changes a result shows. The hashes are those of the portable
# build (no BLAS, no -march=native: the same arithmetic on every x86-64) on
# Debian's Fashion-MNIST, with the reference kernel variant named (every
# variant gives the same bits; the name is in the result).
#
# Usage: tests/golden/check.sh FEWMUL            compare (exit 77: no data)
#        tests/golden/check.sh --update FEWMUL   rewrite ci.sha256 after a
#                                                change that means to change results
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
update=0
if [ "${1:-}" = --update ]; then
  update=1
  shift
fi
bin=$1
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "SKIP: Debian's Fashion-MNIST is not installed (scripts/deps installs it)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
FEWMUL_KERNELS=ref "$here/runs.sh" "$bin" fashion "$out" ci
if [ $update = 1 ]; then
  cp "$out/SHA256SUMS" "$here/ci.sha256"
  echo "golden: wrote $here/ci.sha256"
  exit 0
fi
if (cd "$out" && sha256sum --check --quiet "$here/ci.sha256"); then
  echo "golden: $(wc -l <"$here/ci.sha256") output files identical"
  exit 0
fi
echo "golden: outputs differ from tests/golden/ci.sha256 (above). If the change means to" >&2
echo "change results, say why in its commit and run: tests/golden/check.sh --update FEWMUL" >&2
exit 1
