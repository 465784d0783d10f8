"""Put keeps a plain tuple per job and makes its JobImage only on first need.

These tests drive each way out of that tuple (an update, a compaction copy,
a delete, a second put of the same id) and check that recovery gives back
every journaled field exactly. The log's clocks are pinned so that wall
times are exact: wall = monotonic + OFFSET.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import geanstalk.binlog as binlog_module
from geanstalk.binlog import Binlog
from geanstalk.binlog_format import JOB_FIXED
from geanstalk.core import BURIED, DELAYED, READY, RESERVED
from tests.binlog.binlog_helpers import BODY_CACHES, body_of, make_job, reopen, sent_body, settle

OFFSET = 1000.0
U32 = 2**32 - 1
SMALL_FILE = 600

# time.time() - time.monotonic() is exactly OFFSET; monotonic() never moves,
# which only makes the -f timer wait its full interval.
_CLOCK = SimpleNamespace(time=lambda: 5000.0 + OFFSET, monotonic=lambda: 5000.0)


def _pin_clock(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(binlog_module, "time", _CLOCK)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _pin_clock(monkeypatch)
    yield


def counters(job: Any) -> tuple[int, ...]:
    return (job.reserves, job.timeouts, job.releases, job.buries, job.kicks)


def expected(job: Any) -> tuple[Any, ...]:
    """What recovery must give back for a job whose last change was journaled."""
    state = READY if job.state == RESERVED else job.state
    runnable_at = job.runnable_at + OFFSET if state == DELAYED else None
    return (
        job.id,
        job.tube.name,
        sent_body(job),
        job.priority,
        job.ttr,
        job.delay,
        state,
        job.created_at + OFFSET,
        runnable_at,
        tuple(min(c, U32) for c in counters(job)),
    )


def observed(job: Any, log: Binlog) -> tuple[Any, ...]:
    return (
        job.id,
        job.tube,
        body_of(log, job),
        job.priority,
        job.ttr,
        job.delay,
        job.state,
        job.created_at,
        job.runnable_at,
        counters(job),
    )


def distinct_job(job_id: int, state: int = READY, **kw: Any) -> Any:
    """A job whose every field differs from its neighbours', so a swap shows."""
    job = make_job(
        job_id,
        priority=1000 + job_id,
        ttr=20 + job_id,
        delay=7 + job_id if state == DELAYED else 0,
        body=b"body-%d-" % job_id + bytes([job_id % 256]) * 13,
        tube_name=b"tube%d" % job_id,
        state=state,
        **kw,
    )
    job.reserves, job.timeouts, job.releases, job.buries, job.kicks = (
        job_id * 10 + k for k in range(1, 6)
    )
    return job


def churn(loop: asyncio.AbstractEventLoop, log: Binlog, first_id: int, count: int) -> int:
    """Put and delete short-lived neighbours until compaction has had reasons to run."""
    for i in range(first_id, first_id + count):
        job = make_job(i, body=b"n" * 120)
        log.put(job)
        log.delete(job)
        if i % 20 == 0:
            settle(loop, log)
    settle(loop, log)
    return first_id + count


def recovered(loop, log, open_log, directory) -> tuple[Binlog, dict[int, Any], list[Any]]:
    again, jobs, _ = reopen(loop, log, open_log, directory, file_size=SMALL_FILE)
    return again, {j.id: j for j in jobs}, jobs


def test_put_then_updates_then_recovery(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=SMALL_FILE)
    buried = distinct_job(1)
    kicked = distinct_job(2, state=BURIED)
    delayed = distinct_job(3)
    untouched = distinct_job(4, state=DELAYED)
    for job in (buried, kicked, delayed, untouched):
        log.put(job)
    buried.state, buried.buries, buried.priority = BURIED, buried.buries + 1, 7
    log.update(buried)
    kicked.state, kicked.kicks = READY, kicked.kicks + 1
    log.update(kicked)
    delayed.state, delayed.releases, delayed.delay = DELAYED, delayed.releases + 1, 33
    delayed.runnable_at = delayed.created_at + 33
    delayed.priority, delayed.reserves = 3, delayed.reserves + 1
    log.update(delayed)
    settle(loop, log)
    record_bytes = sum(
        JOB_FIXED + len(j.tube.name) + len(sent_body(j))
        for j in (buried, kicked, delayed, untouched)
    )
    assert log.live_bytes() == record_bytes
    again, back, _ = recovered(loop, log, open_log, str(tmp_path))
    for job in (buried, kicked, delayed, untouched):
        assert observed(back[job.id], again) == expected(job)


def test_delete_and_reput_after_update_release_the_record_bytes(loop, open_log) -> None:
    log, _, _ = open_log()
    jobs = [distinct_job(i) for i in range(1, 5)]
    for job in jobs:
        log.put(job)
    jobs[0].state = BURIED
    log.update(jobs[0])
    jobs[1].priority = 1
    log.put(jobs[1])  # a second put of the same id replaces its anchor
    one = JOB_FIXED + len(jobs[0].tube.name) + len(sent_body(jobs[0]))
    assert log.live_bytes() == 4 * one
    for job in jobs:
        log.delete(job)
    settle(loop, log)
    assert log.live_bytes() == 0


def pinned_history(loop, log) -> list[Any]:
    """Long-lived jobs in every state, put (never updated) into the first file."""
    pinned = [
        distinct_job(9, state=BURIED),
        distinct_job(5, state=DELAYED),
        distinct_job(12),
        distinct_job(3, state=BURIED),
        distinct_job(7, state=RESERVED),
        distinct_job(1, state=BURIED),
    ]
    for job in pinned:
        log.put(job)
    settle(loop, log)
    return pinned


def test_put_then_compaction_then_recovery(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=SMALL_FILE)
    pinned = pinned_history(loop, log)
    assert {j.file for j in pinned} == {1, 2}
    churn(loop, log, 100, 400)
    stats = log.stats()
    assert stats["binlog-records-migrated"] >= len(pinned)
    assert stats["binlog-oldest-index"] > 2
    again, back, order = recovered(loop, log, open_log, str(tmp_path))
    assert sorted(back) == sorted(j.id for j in pinned)
    for job in pinned:
        assert observed(back[job.id], again) == expected(job)
        assert back[job.id].file > 2
    # Copies keep the journal order of the original put: buried jobs in put order.
    assert [j.id for j in order if j.state == BURIED] == [9, 3, 1]


def test_put_then_compaction_then_update_then_recovery(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(file_size=SMALL_FILE)
    pinned = pinned_history(loop, log)
    next_id = churn(loop, log, 100, 400)
    assert all(j.file > 2 for j in pinned)
    by_id = {j.id: j for j in pinned}
    by_id[3].state, by_id[3].kicks = READY, by_id[3].kicks + 1  # kick
    log.update(by_id[3])
    by_id[12].state, by_id[12].buries = BURIED, by_id[12].buries + 1  # bury
    log.update(by_id[12])
    by_id[7].state, by_id[7].releases, by_id[7].delay = DELAYED, by_id[7].releases + 1, 90
    by_id[7].runnable_at = by_id[7].created_at + 90  # release with a delay
    log.update(by_id[7])
    log.delete(by_id[1])
    del by_id[1]
    churn(loop, log, next_id, 400)  # the updated images are copied again
    again, back, order = recovered(loop, log, open_log, str(tmp_path))
    assert sorted(back) == sorted(by_id)
    for job in by_id.values():
        assert observed(back[job.id], again) == expected(job)
    assert [j.id for j in order if j.state == BURIED] == [9, 12]


def test_counters_at_the_32_bit_limit_survive_put_compaction_and_update(
    loop, open_log, tmp_path
) -> None:
    """Job itself refuses counters past 2**32-1, so the top of the range is the edge case."""
    log, _, _ = open_log(file_size=SMALL_FILE)
    big = distinct_job(1)
    big.reserves, big.kicks = U32, U32 - 1
    fresh = distinct_job(2)
    log.put(big)
    log.put(fresh)
    settle(loop, log)
    next_id = churn(loop, log, 100, 400)
    assert big.file > 1 and fresh.file > 1
    fresh.timeouts, fresh.state = U32, BURIED
    log.update(fresh)
    churn(loop, log, next_id, 400)
    again, back, _ = recovered(loop, log, open_log, str(tmp_path))
    assert counters(back[1]) == (U32, big.timeouts, big.releases, big.buries, U32 - 1)
    assert counters(back[2])[1] == U32
    for job in (big, fresh):
        assert observed(back[job.id], again) == expected(job)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "bury", "kick", "delay", "reserve", "delete", "churn"]),
        st.integers(0, 40),
    ),
    max_size=80,
)


@BODY_CACHES
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_every_field_survives_any_mix_of_puts_updates_and_compaction(
    tmp_path_factory, body_cache, ops
) -> None:
    """Property: exact fields and buried order after random histories with compaction."""
    directory = str(tmp_path_factory.mktemp("lazy"))
    loop = asyncio.new_event_loop()
    with pytest.MonkeyPatch.context() as mp:
        _pin_clock(mp)
        try:
            log = Binlog.open(directory, None, SMALL_FILE, loop, body_cache)
            log.recover()
            jobs: dict[int, Any] = {}
            journaled: dict[int, tuple[Any, ...]] = {}
            buried: list[int] = []
            next_id = 1
            for op, pick in ops:
                ids = sorted(jobs)
                target = jobs[ids[pick % len(ids)]] if ids else None
                if op == "churn":
                    next_id = churn(loop, log, next_id + 10_000, 30) - 10_000
                    continue
                if op == "put" or target is None:
                    state = (READY, DELAYED, BURIED)[pick % 3]
                    target = distinct_job(next_id, state=state)
                    next_id += 1
                    jobs[target.id] = target
                    log.put(target)
                elif op == "delete":
                    log.delete(target)
                    del jobs[target.id], journaled[target.id]
                    if target.id in buried:
                        buried.remove(target.id)
                    continue
                elif op == "reserve":  # not journaled: recovery gives the last journaled state
                    target.state, target.reserves = RESERVED, target.reserves + 1
                    continue
                else:
                    if op == "bury":
                        target.state, target.buries = BURIED, target.buries + 1
                    elif op == "kick":
                        target.state, target.kicks = READY, target.kicks + pick
                    else:
                        target.state, target.priority, target.delay = DELAYED, pick, pick
                        target.runnable_at = target.created_at + pick
                        target.releases += 1
                    log.update(target)
                journaled[target.id] = expected(target)
                if target.id in buried:
                    buried.remove(target.id)
                if target.state == BURIED:
                    buried.append(target.id)
            settle(loop, log)
            loop.run_until_complete(log.close())
            log = Binlog.open(directory, None, SMALL_FILE, loop, body_cache)
            back, _ = log.recover()
            assert {j.id: observed(j, log) for j in back} == journaled
            assert [j.id for j in back if j.state == BURIED] == buried
            loop.run_until_complete(log.close())
        finally:
            loop.close()
