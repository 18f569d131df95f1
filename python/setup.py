"""setup.py: with FEWMUL_LIBRARY set at install time, a copy of that
libfewmul.so goes into the installed package, which then needs no
environment variable at run time (python/README.md)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        library = os.environ.get("FEWMUL_LIBRARY")
        if library:
            if not os.path.isfile(library):
                raise SystemExit("FEWMUL_LIBRARY=%s: no such file" % library)
            shutil.copyfile(library, os.path.join(self.build_lib, "fewmul", "libfewmul.so"))


setup(cmdclass={"build_py": BuildWithLibrary})
