#!/usr/bin/env bash
# python_package.sh — the Python package (python/) as a user installs it:
# a venv over the system's site packages (Debian's python3-cffi,
# python3-numpy, python3-pytest), `pip install` offline with the build's
# libfewmul.so copied into the package, then its pytest suite
# (python/tests) against the fewmul command of the same build.
# Usage: tests/python_package.sh FEWMUL LIBFEWMUL.so SHARED_DATA_DIR WORK_DIR
# Exit 77 (skipped) when no Python here has cffi, numpy, pytest and venv.
set -euo pipefail
cli=$1 library=$2 shared=$3 work=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=""
for p in "${FEWMUL_PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$p" ] || continue
  if "$p" -c 'import cffi, numpy, pytest, venv, ensurepip' 2>/dev/null; then
    python=$p
    break
  fi
done
if [ -z "$python" ]; then
  echo "python_package: SKIP: no python3 with cffi, numpy, pytest and venv" \
       "(Debian: python3-cffi python3-numpy python3-pytest python3-venv)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
"$python" -m venv --system-site-packages "$work/venv"
# the package's own build folder and egg-info go to $work, not the source
# tree; it takes the header from ../include, as in the repository
mkdir "$work/src"
cp -r "$root/python" "$root/include" "$work/src/"
rm -rf "$work/src/python/build" "$work/src/python"/*.egg-info
FEWMUL_LIBRARY=$library "$work/venv/bin/python" -m pip install --quiet --no-build-isolation \
  --no-index "$work/src/python"
cd "$work"
unset FEWMUL_LIBRARY
# the installed package, with its own copy of the library
where=$("$work/venv/bin/python" -c 'import fewmul; print(fewmul.library_path)')
case $where in
  "$work/venv/"*) echo "python_package: fewmul loads $where" ;;
  *) echo "python_package: the installed package loads $where, not its own copy"; exit 1 ;;
esac
FEWMUL_CLI=$cli FEWMUL_SHARED_DATA=$shared OMP_WAIT_POLICY=PASSIVE \
  "$work/venv/bin/python" -m pytest -p no:cacheprovider -rs -q "$work/src/python/tests"
