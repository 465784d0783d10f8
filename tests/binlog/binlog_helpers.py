"""Helpers shared by the binlog tests: plain jobs, settling the loop, reopening a log."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from geanstalk.binlog import Binlog
from geanstalk.core import READY, Job

# The body each job was made with, by id(job): with a small body cache the
# log drops a body from memory as soon as it is journaled.
_SENT: dict[int, bytes] = {}

# --body-cache values every log test runs with: the default, and none at all.
BODY_CACHES = pytest.mark.parametrize(
    "body_cache", [None, 0], ids=["body-cache-default", "body-cache-0"]
)


def tube(name: bytes = b"default") -> SimpleNamespace:
    """What the server passes as job.tube: an object with a bytes name."""
    return SimpleNamespace(name=name)


def make_job(
    job_id: int,
    *,
    priority: int = 100,
    ttr: int = 10,
    body: bytes = b"body",
    state: int = READY,
    delay: int = 0,
    tube_name: bytes = b"default",
) -> Any:
    now = time.monotonic()
    job = Job(
        job_id,
        priority=priority,
        runnable_at=now + delay if delay else None,
        ttr=ttr,
        body=body,
        delay=delay,
        created_at=now,
    )
    job.state = state
    job.tube = tube(tube_name)
    _SENT[id(job)] = body
    return job


def sent_body(job: Any) -> bytes:
    """The body make_job gave job (whether or not the log still holds it in memory)."""
    return _SENT[id(job)]


def body_of(log: Binlog, job: Any) -> bytes:
    """A journaled job's body: from memory, or read back from the log."""
    return log.bodies.load(job)


def settle(loop: asyncio.AbstractEventLoop, log: Binlog, timeout: float = 10.0) -> None:
    """Run the loop until every record is durable and no compaction step is left."""

    async def wait() -> None:
        while log.busy() or log.durable() < log.pending():
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(wait(), timeout))


def dir_bytes(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, n))
        for n in os.listdir(directory)
        if n.startswith("binlog.")
    )


def reopen(
    loop: asyncio.AbstractEventLoop,
    log: Binlog,
    open_log: Callable[..., tuple[Binlog, list[Any], int]],
    directory: str,
    **kw: Any,
) -> tuple[Binlog, list[Any], int]:
    """Close log (a clean stop) and open the directory again."""
    loop.run_until_complete(log.close())
    return open_log(directory=directory, **kw)
