"""Fixtures for the server's own tests (the harness is in server_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_harness import Harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
