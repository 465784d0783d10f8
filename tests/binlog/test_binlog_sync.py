"""The fsync policies (-f 0, -f N, -F), group commit, and stopping on I/O errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.binlog.binlog_helpers import make_job


@pytest.fixture
def fsyncs(monkeypatch) -> list[int]:
    """Every os.fsync call, counted; each takes a little while, as a disk does."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.002)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def wait_for(loop, log, seq: int) -> None:
    done = loop.create_future()
    log.wait_durable(seq, lambda: done.set_result(None))
    loop.run_until_complete(asyncio.wait_for(done, 10))


def test_f0_holds_records_until_an_fsync_covers_them(loop, open_log, monkeypatch) -> None:
    gate = threading.Event()
    real = os.fsync

    def slow(fd: int) -> None:
        gate.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow)
    log, _, _ = open_log(fsync_ms=0)
    log.put(make_job(1))
    seq = log.pending()
    fired: list[int] = []
    log.wait_durable(seq, lambda: fired.append(seq))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert log.durable() < seq and fired == []  # written, but not yet synced
    gate.set()
    wait_for(loop, log, seq)
    assert fired == [seq] and log.durable() >= seq


def test_group_commit_many_appends_few_fsyncs(loop, open_log, fsyncs) -> None:
    """50 clients putting concurrently share fsyncs instead of paying one each."""
    log, _, _ = open_log(fsync_ms=0)
    acked: list[int] = []

    async def client(first_id: int) -> None:
        for k in range(10):
            log.put(make_job(first_id + k))
            done = loop.create_future()
            log.wait_durable(log.pending(), lambda d=done: d.set_result(None))
            await done
            acked.append(first_id + k)

    async def main() -> None:
        await asyncio.gather(*(client(1 + 10 * c) for c in range(50)))

    loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert len(acked) == 500
    print("fsyncs for 500 acknowledged puts:", len(fsyncs))
    assert 1 <= len(fsyncs) <= 100, len(fsyncs)


def test_fN_acknowledges_after_write_and_syncs_at_most_every_N_ms(loop, open_log, fsyncs) -> None:
    log, _, _ = open_log(fsync_ms=60_000)
    for i in range(1, 101):
        log.put(make_job(i))
        wait_for(loop, log, log.pending())  # durable without waiting a minute
    loop.run_until_complete(asyncio.sleep(0.05))
    assert len(fsyncs) <= 2  # the first sync only (the file and the directory)
    before = len(fsyncs)
    loop.run_until_complete(log.close())
    assert len(fsyncs) > before  # close syncs what the timer has not


def test_F_never_fsyncs(loop, open_log, fsyncs) -> None:
    log, _, _ = open_log(fsync_ms=None, file_size=300)
    for i in range(1, 30):
        log.put(make_job(i, body=b"x" * 50))
        wait_for(loop, log, log.pending())
    assert log.stats()["binlog-current-index"] > 1
    loop.run_until_complete(log.close())
    assert fsyncs == []


def test_f0_rotated_files_are_synced_before_records_count_as_durable(
    loop, open_log, fsyncs, tmp_path
) -> None:
    log, _, _ = open_log(fsync_ms=0, file_size=300)
    for i in range(1, 30):
        log.put(make_job(i, body=b"x" * 50))
    wait_for(loop, log, log.pending())
    files = sum(1 for n in os.listdir(tmp_path) if n.startswith("binlog."))
    assert files > 3
    assert len(fsyncs) >= files  # every file (and the directory) was synced


def test_wait_durable_on_an_old_seq_calls_back_soon_not_inline(loop, open_log) -> None:
    log, _, _ = open_log(fsync_ms=0)
    log.put(make_job(1))
    wait_for(loop, log, log.pending())
    fired: list[str] = []
    log.wait_durable(log.pending(), lambda: fired.append("x"))
    assert fired == []
    loop.run_until_complete(asyncio.sleep(0))
    assert fired == ["x"]


def test_one_write_per_loop_iteration(loop, open_log, monkeypatch) -> None:
    log, _, _ = open_log(fsync_ms=None)
    loop.run_until_complete(asyncio.sleep(0))  # the new file's header
    writes: list[int] = []
    real = os.write

    def counting(fd: int, data) -> int:
        writes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", counting)
    for i in range(1, 101):
        log.put(make_job(i))
    assert writes == []  # buffered, nothing written inside the command
    loop.run_until_complete(asyncio.sleep(0))
    assert len(writes) == 1


IO_ERROR_CHILD = """
import asyncio, errno, os, sys, time
from types import SimpleNamespace
from geanstalk.binlog import Binlog
from geanstalk.core import Job
loop = asyncio.new_event_loop()
log = Binlog.open(sys.argv[1], 0, 10485760, loop)
log.recover()
loop.run_until_complete(asyncio.sleep(0.01))
def fail(*args):
    raise OSError(errno.ENOSPC if sys.argv[2] == "write" else errno.EIO, os.strerror(errno.ENOSPC if sys.argv[2] == "write" else errno.EIO))
setattr(os, sys.argv[2], fail)
job = Job(1, body=b"hello", created_at=time.monotonic())
job.tube = SimpleNamespace(name=b"default")
log.put(job)
log.wait_durable(log.pending(), lambda: print("REPLIED", flush=True))
loop.run_until_complete(asyncio.sleep(2))
print("STILL RUNNING", flush=True)
"""


@pytest.mark.parametrize(
    ("call", "message"), [("write", "No space left on device"), ("fsync", "Input/output error")]
)
def test_io_error_stops_the_process_before_any_reply(tmp_path, call, message) -> None:
    child = subprocess.run(
        [sys.executable, "-c", IO_ERROR_CHILD, str(tmp_path), call],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1
    assert child.stdout == ""  # neither the held reply nor a survivor
    assert f"binlog {call} failed" in child.stderr and message in child.stderr
