"""TubeHeap beyond its contract suite (test_core_contracts.py): what it refuses to hold."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_only_job_heaps_go_in(impl: ModuleType) -> None:
    tubes = impl.TubeHeap()
    tubes.push("x", impl.JobHeap())
    with pytest.raises(TypeError):
        tubes.push("z", [])
    assert len(tubes) == 1 and "z" not in tubes
