"""_ffi.py: include/fewmul.h given to cffi in ABI mode (no compiler at
install time), read from the header itself so that the declarations are the
header's, and the search for libfewmul.so."""
import os
import re

from cffi import FFI

ffi = FFI()


def _header_path():
    """fewmul.h, in order: $FEWMUL_HEADER, the copy placed in the package at
    install time, the repository's include/ (running from a checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.environ.get("FEWMUL_HEADER"), os.path.join(here, "fewmul.h"),
                 os.path.join(here, "..", "..", "include", "fewmul.h")):
        if path and os.path.exists(path):
            return path
    raise ImportError("fewmul: fewmul.h not found; set FEWMUL_HEADER to include/fewmul.h")


def cdef_of(text):
    """The header as cffi's cdef takes it: comments and preprocessor lines
    out (the C++ guard with them), integer #defines kept, and the enum of
    error codes, which a macro builds, left to ERRORS."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out, cplusplus, continued = [], False, False
    for line in text.split("\n"):
        s = line.strip()
        if continued or s.startswith("#"):
            continued = s.endswith("\\")
            if s.startswith("#ifdef __cplusplus"):
                cplusplus = True
            elif s.startswith("#endif"):
                cplusplus = False
            m = re.match(r"#define\s+(\w+)\s+\(?(-?\d+)\)?$", s)
            if m:
                out.append("#define %s %s" % m.groups())
        elif not cplusplus:
            out.append(line)
    return re.sub(r"enum fm_error\s*\{[^}]*\};", "", "\n".join(out))


with open(_header_path()) as _f:
    _header = _f.read()
ffi.cdef(cdef_of(_header))
# FM_ERROR_LIST's codes: {-2: "FM_EINVAL", ...}
ERRORS = {int(v): name for name, v in re.findall(r"X\((FM_\w+),\s*(-?\d+)", _header)}
# the constants cdef cannot read from their #define
FM_ENERGY_UNBOUNDED = 2**64 - 1
FM_LANDAUER_J_PER_BIT = 1.380649e-23 * 300.0 * 0.69314718055994531


def _candidates():
    """Where libfewmul.so is looked for, in order: $FEWMUL_LIBRARY, the copy
    placed in the package at install time, then the system's loader path."""
    env = os.environ.get("FEWMUL_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, name) for name in ("libfewmul.so", "libfewmul.so.0")]
    return [p for p in found if os.path.exists(p)] + ["libfewmul.so.0", "libfewmul.so"]


def _open():
    tried = []
    for path in _candidates():
        try:
            return ffi.dlopen(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError(
        "fewmul: cannot load libfewmul.so; set FEWMUL_LIBRARY to its path "
        "(a CMake build makes build/libfewmul.so). Tried: " + "; ".join(tried)
    )


# As the command does for itself (tools/main.c): OpenMP's threads sleep
# between parallel regions instead of spinning, unless the user chose; a
# spinning team loses badly on a shared machine and between the calls of a
# Python loop. Read by libgomp when the library loads it, so set first.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
lib, library_path = _open()
