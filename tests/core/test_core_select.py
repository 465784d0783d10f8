"""geanstalk.core picks the right implementation, and the package stays light."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import geanstalk
from geanstalk import core

try:
    from geanstalk import _core as COMPILED_MODULE
except ImportError:
    COMPILED_MODULE = None  # type: ignore[assignment]

REQUIRE_EXTENSIONS = bool(os.environ.get("GEANSTALK_REQUIRE_EXTENSIONS"))


def run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GEANSTALK_")}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_no_extensions_env_selects_the_pure_twin() -> None:
    out = run(
        "import geanstalk.core as c; print(c.IMPLEMENTATION, c.COMPILED)",
        GEANSTALK_NO_EXTENSIONS="1",
    )
    assert out == "geanstalk._core_py False"


def test_default_selects_compiled_when_built() -> None:
    out = run("import geanstalk.core as c; print(c.IMPLEMENTATION)")
    expected = "geanstalk._core" if COMPILED_MODULE is not None else "geanstalk._core_py"
    assert out == expected


@pytest.mark.skipif(not REQUIRE_EXTENSIONS, reason="GEANSTALK_REQUIRE_EXTENSIONS is not set")
def test_required_extension_is_what_core_picked() -> None:
    assert core.COMPILED is True
    assert core.IMPLEMENTATION == "geanstalk._core"
    assert geanstalk.JobHeap.__module__ == "geanstalk._core"


def test_public_api() -> None:
    from geanstalk._version import __version__
    from geanstalk.stats import VERSION

    assert geanstalk.__version__ == VERSION == __version__
    for name in ("Job", "JobHeap", "TubeHeap", "less", "COMPILED", "STATE_NAMES"):
        assert getattr(geanstalk, name) is getattr(core, name)
    states = (geanstalk.READY, geanstalk.DELAYED, geanstalk.RESERVED, geanstalk.BURIED)
    assert states == (0, 1, 2, 3)
    assert set(geanstalk.__all__) <= set(dir(geanstalk))


def test_import_does_not_pull_in_asyncio() -> None:
    out = run("import sys, geanstalk; print('asyncio' in sys.modules)")
    assert out == "False"


def test_both_modules_have_the_same_surface() -> None:
    if COMPILED_MODULE is None:
        pytest.skip("the compiled core is not built")
    from geanstalk import _core_py

    assert COMPILED_MODULE.__all__ == _core_py.__all__
    for cls in ("Job", "JobHeap", "JobTable", "TubeHeap"):
        public = {n for n in dir(getattr(_core_py, cls)) if not n.startswith("_")}
        compiled = {n for n in dir(getattr(COMPILED_MODULE, cls)) if not n.startswith("_")}
        assert public == compiled, cls
