"""Fixtures for the binlog tests: a private event loop and logs opened in tmp dirs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geanstalk.binlog import Binlog


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(params=[None, 0], ids=["body-cache-default", "body-cache-0"])
def body_cache(request: pytest.FixtureRequest) -> int | None:
    """Every log test runs with bodies cached as usual and with none cached
    (each body read back from the log whenever it is asked for)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def open_log(
    loop: asyncio.AbstractEventLoop, tmp_path: Any, body_cache: int | None
) -> Iterator[Callable[..., tuple[Binlog, list[Any], int]]]:
    """open_log(fsync_ms=None, file_size=...) -> (log, recovered jobs, next id); closed at teardown."""
    opened: list[Binlog] = []

    def _open(
        fsync_ms: int | None = None, file_size: int = 10485760, directory: str | None = None
    ) -> tuple[Binlog, list[Any], int]:
        log = Binlog.open(directory or str(tmp_path), fsync_ms, file_size, loop, body_cache)
        opened.append(log)
        jobs, next_id = log.recover()
        return log, jobs, next_id

    yield _open
    for log in opened:
        loop.run_until_complete(log.close())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stress runs (hundreds of kill -9) only when asked for with `-m stress`."""
    if "stress" in (config.option.markexpr or ""):
        return
    here = str(Path(__file__).parent)
    skip = pytest.mark.skip(reason="stress run: select it with -m stress")
    for item in items:
        if "stress" in item.keywords and str(item.path).startswith(here):
            item.add_marker(skip)
