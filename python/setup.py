"""setup.py: the package gets a copy of include/fewmul.h (its cffi
declarations are read from it: $FEWMUL_HEADER, else ../include/fewmul.h
beside this file) and, with FEWMUL_LIBRARY set at install time, a copy of
that libfewmul.so, so that it needs no environment variable at run time
(python/README.md)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        header = os.environ.get("FEWMUL_HEADER") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "include", "fewmul.h")
        if not os.path.isfile(header):
            raise SystemExit("%s: no such file; set FEWMUL_HEADER to fewmul's include/fewmul.h"
                             % header)
        shutil.copyfile(header, os.path.join(self.build_lib, "fewmul", "fewmul.h"))
        library = os.environ.get("FEWMUL_LIBRARY")
        if library:
            if not os.path.isfile(library):
                raise SystemExit("FEWMUL_LIBRARY=%s: no such file" % library)
            shutil.copyfile(library, os.path.join(self.build_lib, "fewmul", "libfewmul.so"))


setup(cmdclass={"build_py": BuildWithLibrary})
