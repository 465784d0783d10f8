"""Run every core test on both implementations, as aio-libs/multidict does.

The ``impl`` fixture yields the compiled module and the pure twin in turn. When
the extension is not built the compiled half is skipped, unless
GEANSTALK_REQUIRE_EXTENSIONS=1 (set by CI) turns that into a failure, so a
silently broken build cannot pass as green.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from geanstalk import _core_py

REQUIRE_EXTENSIONS = bool(os.environ.get("GEANSTALK_REQUIRE_EXTENSIONS"))


def load_compiled() -> ModuleType | None:
    """The compiled module, or None when it is not built (or not wanted)."""
    try:
        return importlib.import_module("geanstalk._core")
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        return None


COMPILED_MODULE = load_compiled()
IMPLEMENTATIONS = {"compiled": COMPILED_MODULE, "pure": _core_py}


@pytest.fixture(params=["compiled", "pure"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    module = IMPLEMENTATIONS[request.param]
    if module is None:
        pytest.skip("the compiled core is not built")
    return module


@pytest.fixture
def compiled() -> ModuleType:
    if COMPILED_MODULE is None:
        pytest.skip("the compiled core is not built")
    return COMPILED_MODULE
