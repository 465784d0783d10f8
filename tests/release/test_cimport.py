"""Another project can cimport the core from an installed geanstalk.

The wheel ships _core.pxd (and _core.pyi): this builds a tiny Cython
extension against the INSTALLED package's .pxd, in a scratch directory, and
drives a JobHeap from C through it. .ci/test-installed runs it against the
manylinux wheel with GEANSTALK_REQUIRE_CIMPORT=1, so there it cannot skip.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import geanstalk
from geanstalk import core

REQUIRED = bool(os.environ.get("GEANSTALK_REQUIRE_CIMPORT"))

USER_PYX = """\
# cython: language_level=3
from geanstalk._core cimport Job, JobHeap, job_less


def drain(JobHeap heap):
    '''Pop every job; the ids in order, checked against job_less from C.'''
    cdef Job prev = None
    cdef Job job
    out = []
    while len(heap):
        job = heap.pop()
        if prev is not None and job_less(job, prev):
            raise AssertionError("heap order broken")
        prev = job
        out.append(job.id)
    return out


def first_priority(JobHeap heap):
    cdef Job job = heap.peek()
    return job._priority
"""

SETUP_PY = """\
import os

import geanstalk
from Cython.Build import cythonize
from setuptools import setup

# Where the installed package lies (site-packages for a wheel; an editable
# install keeps it in its source tree, off sys.path).
root = os.path.dirname(os.path.dirname(geanstalk.__file__))
setup(
    name="user_of_core",
    ext_modules=cythonize(["user_of_core.pyx"], language_level=3, include_path=[root]),
)
"""


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def test_a_cython_extension_cimports_the_installed_core(tmp_path: pathlib.Path) -> None:
    if not core.COMPILED:
        _skip_or_fail("the compiled core is not in use")
    if importlib.util.find_spec("Cython") is None:
        _skip_or_fail("Cython is not installed")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        _skip_or_fail("no C compiler on PATH")
    package = pathlib.Path(geanstalk.__file__).parent
    assert (package / "_core.pxd").is_file(), "the install ships no _core.pxd"
    assert (package / "_core.pyi").is_file(), "the install ships no _core.pyi"

    (tmp_path / "user_of_core.pyx").write_text(USER_PYX)
    (tmp_path / "setup.py").write_text(SETUP_PY)
    # Run from the scratch directory with the install's site-packages only:
    # the .pxd must be found where pip put it, not in a source tree.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import user_of_core as u, geanstalk as g;"
            "h = g.JobHeap();"
            "[h.push(g.Job(i, priority=p)) for i, p in [(1, 5), (2, 1), (3, 5), (4, 0)]];"
            "print(u.first_priority(h), u.drain(h))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split("\n")[0] == "0 [4, 2, 1, 3]"
