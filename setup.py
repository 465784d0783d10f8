"""Build the compiled core when possible; install pure Python when not.

The extension is an optimisation, never a requirement: with
GEANSTALK_NO_EXTENSIONS=1, on a non-CPython interpreter, or when Cython or a C
compiler is missing, the package installs without it and ``geanstalk.core``
selects the pure-Python twin at import time.
"""

import os
import platform
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _want_extensions() -> bool:
    if os.environ.get("GEANSTALK_NO_EXTENSIONS"):
        return False
    return platform.python_implementation() == "CPython"


class OptionalBuildExt(build_ext):
    """A build_ext that warns instead of failing when the compiler is missing."""

    def run(self):
        try:
            super().run()
        except Exception as exc:
            print(f"geanstalk: compiled core not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"geanstalk: {ext.name} not built ({exc}); using pure Python", file=sys.stderr)


def _extensions():
    if not _want_extensions() or not os.path.exists("geanstalk/_core.pyx"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("geanstalk: Cython missing; using pure Python", file=sys.stderr)
        return []
    return cythonize(
        ["geanstalk/_core.pyx"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "freethreading_compatible": True,
        },
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
