"""Files on disk: rotation at -s, stats, and compaction that really reclaims space."""

from __future__ import annotations

import asyncio
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from geanstalk.binlog import Binlog
from geanstalk.binlog_format import HEADER_SIZE
from geanstalk.core import BURIED, DELAYED, READY
from tests.binlog.binlog_helpers import (
    BODY_CACHES,
    body_of,
    dir_bytes,
    make_job,
    reopen,
    sent_body,
    settle,
)

STATS_KEYS = [
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
]


def binlog_files(directory) -> list[int]:
    return sorted(int(n.split(".")[1]) for n in os.listdir(directory) if n.startswith("binlog."))


def test_stats_keys_and_values(loop, open_log) -> None:
    log, _, _ = open_log(file_size=12345)
    stats = log.stats()
    assert list(stats) == STATS_KEYS
    assert stats == dict(zip(STATS_KEYS, [1, 1, 0, 0, 12345], strict=True))
    job = make_job(1)
    log.put(job)
    log.delete(job)
    assert log.stats()["binlog-records-written"] == 2


def test_files_rotate_at_the_size_limit(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=1000)
    for i in range(1, 60):
        log.put(make_job(i, body=b"x" * 100))
    settle(loop, log)
    numbers = binlog_files(tmp_path)
    assert len(numbers) > 5 and numbers == list(range(1, len(numbers) + 1))
    for n in numbers:
        assert os.path.getsize(tmp_path / f"binlog.{n}") <= 1000
    stats = log.stats()
    assert (stats["binlog-oldest-index"], stats["binlog-current-index"]) == (1, numbers[-1])
    _, jobs, next_id = reopen(loop, log, open_log, str(tmp_path), file_size=1000)
    assert [j.id for j in jobs] == list(range(1, 60)) and next_id == 60
    assert {j.file for j in jobs} == set(numbers)


def test_a_record_larger_than_a_file_gets_a_file_of_its_own(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=200)
    log.put(make_job(1, body=b"a"))
    log.put(make_job(2, body=b"b" * 1000))
    log.put(make_job(3, body=b"c"))
    settle(loop, log)
    assert binlog_files(tmp_path) == [1, 2, 3]
    assert os.path.getsize(tmp_path / "binlog.2") > 1000
    again, jobs, _ = reopen(loop, log, open_log, str(tmp_path), file_size=200)
    got = [(j.id, j.file, len(body_of(again, j))) for j in jobs]
    assert got == [(1, 1, 1), (2, 2, 1000), (3, 3, 1)]


def test_deletes_shrink_the_directory(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=4096)
    jobs = [make_job(i, body=b"x" * 300) for i in range(1, 201)]
    for job in jobs:
        log.put(job)
    settle(loop, log)
    full = dir_bytes(tmp_path)
    assert full > 200 * 300
    for job in jobs[:-3]:
        log.delete(job)
    settle(loop, log)
    assert dir_bytes(tmp_path) < 3 * 4096
    assert log.disk_bytes() == dir_bytes(tmp_path)
    _, back, _ = reopen(loop, log, open_log, str(tmp_path), file_size=4096)
    assert [j.id for j in back] == [198, 199, 200]


def test_long_lived_jobs_are_migrated_so_old_files_go(loop, open_log, tmp_path) -> None:
    """A few jobs that never go away must not pin the oldest files forever."""
    log, _, _ = open_log(file_size=2048)
    pinned = [make_job(i, body=b"p" * 40) for i in range(1, 6)]
    for job in pinned:
        log.put(job)
    for i in range(100, 2100):
        job = make_job(i, body=b"c" * 100)
        log.put(job)
        if i % 3 == 0:
            job.state, job.runnable_at = DELAYED, job.created_at + 30
            log.update(job)
        log.delete(job)
        if i % 50 == 0:
            settle(loop, log)
            assert dir_bytes(tmp_path) <= 2 * log.live_bytes() + 2 * 2048 + HEADER_SIZE
    settle(loop, log)
    stats = log.stats()
    assert stats["binlog-records-migrated"] >= 5
    assert stats["binlog-oldest-index"] > 1
    assert min(binlog_files(tmp_path)) == stats["binlog-oldest-index"]
    assert dir_bytes(tmp_path) == log.disk_bytes()
    again, back, _ = reopen(loop, log, open_log, str(tmp_path), file_size=2048)
    assert [j.id for j in back] == [1, 2, 3, 4, 5]
    assert all(body_of(again, j) == b"p" * 40 for j in back)


def test_churn_with_a_thousand_live_jobs_stays_bounded(loop, open_log, tmp_path) -> None:
    rng = random.Random(4)
    size = 64 * 1024
    log, _, _ = open_log(file_size=size)
    live: dict[int, object] = {}
    worst = 0.0
    for i in range(1, 20001):
        job = make_job(i, body=rng.randbytes(rng.randrange(0, 200)))
        log.put(job)
        live[i] = job
        if len(live) > 1000:
            victim = live.pop(rng.choice(list(live)))
            log.delete(victim)
        if rng.random() < 0.3:
            other = live[rng.choice(list(live))]
            other.state, other.releases = DELAYED, other.releases + 1
            other.runnable_at = other.created_at + 5
            log.update(other)
        if i % 500 == 0:
            settle(loop, log)
            worst = max(worst, (dir_bytes(tmp_path) - size) / log.live_bytes())
    assert worst <= 2.2, worst
    _, back, _ = reopen(loop, log, open_log, str(tmp_path), file_size=size)
    assert sorted(j.id for j in back) == sorted(live)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "bury", "kick", "delay", "delete", "settle"]), st.integers(0, 30)
    ),
    max_size=120,
)


@BODY_CACHES
@settings(max_examples=60, deadline=None)
@given(ops=OPS, file_size=st.sampled_from([300, 700, 4096]), fsync_ms=st.sampled_from([None, 0, 5]))
def test_recovery_equals_the_model_after_any_history(
    tmp_path_factory, body_cache, ops, file_size, fsync_ms
) -> None:
    """Property: whatever was journaled, recover() gives back the last state of each live job."""
    directory = str(tmp_path_factory.mktemp("prop"))
    loop = asyncio.new_event_loop()
    try:
        log = Binlog.open(directory, fsync_ms, file_size, loop, body_cache)
        log.recover()
        jobs: dict[int, object] = {}
        model: dict[int, tuple] = {}
        order: list[int] = []  # bury order
        next_id = 1
        for op, pick in ops:
            ids = sorted(jobs)
            target = jobs[ids[pick % len(ids)]] if ids else None
            if op == "put" or target is None:
                job = make_job(
                    next_id,
                    priority=pick,
                    body=bytes([pick]) * pick * 7,
                    tube_name=b"t%d" % (pick % 3),
                )
                next_id += 1
                log.put(job)
                jobs[job.id] = job
            elif op == "bury":
                target.state, target.buries = BURIED, target.buries + 1
                log.update(target)
            elif op == "kick":
                target.state, target.kicks, target.runnable_at = READY, target.kicks + 1, None
                log.update(target)
            elif op == "delay":
                target.state, target.priority = DELAYED, pick
                target.runnable_at = target.created_at + pick
                log.update(target)
            elif op == "delete":
                log.delete(target)
                del jobs[target.id]
                model.pop(target.id, None)
                if target.id in order:
                    order.remove(target.id)
                continue
            else:
                settle(loop, log)
                continue
            job = target if op != "put" and target is not None else job
            model[job.id] = (
                job.state,
                job.priority,
                job.buries,
                job.kicks,
                sent_body(job),
                job.tube.name,
            )
            if job.id in order:
                order.remove(job.id)
            if job.state == BURIED:
                order.append(job.id)
        settle(loop, log)
        loop.run_until_complete(log.close())
        log = Binlog.open(directory, fsync_ms, file_size, loop, body_cache)
        back, back_next = log.recover()
        got = {
            j.id: (j.state, j.priority, j.buries, j.kicks, body_of(log, j), j.tube) for j in back
        }
        assert got == model
        assert [j.id for j in back if j.state == BURIED] == order
        assert back_next == next_id
        loop.run_until_complete(log.close())
    finally:
        loop.close()
