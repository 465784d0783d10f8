"""Recovery of every journaled transition, with plain Jobs and no server."""

from __future__ import annotations

import os
import time

import pytest

from geanstalk.core import BURIED, DELAYED, READY, RESERVED
from tests.binlog.binlog_helpers import body_of, make_job, reopen, settle


def by_id(jobs: list) -> dict:
    return {j.id: j for j in jobs}


def test_empty_directory_starts_at_id_1(open_log, tmp_path) -> None:
    _log, jobs, next_id = open_log()
    assert (jobs, next_id) == ([], 1)
    assert sorted(os.listdir(tmp_path)) == ["binlog.1", "lock"]


def test_put_comes_back_with_every_field(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log(fsync_ms=0)
    job = make_job(1, priority=42, ttr=30, body=b"a\r\nb", tube_name=b"mail")
    job.reserves, job.timeouts, job.releases, job.buries, job.kicks = 1, 2, 3, 4, 5
    log.put(job)
    assert job.file == 1
    settle(loop, log)
    again, jobs, next_id = reopen(loop, log, open_log, str(tmp_path))
    (back,) = jobs
    assert next_id == 2
    assert (back.id, back.priority, back.ttr, body_of(again, back), back.tube) == (
        1,
        42,
        30,
        b"a\r\nb",
        b"mail",
    )
    assert back.state == READY and back.runnable_at is None
    assert (back.reserves, back.timeouts, back.releases, back.buries, back.kicks) == (1, 2, 3, 4, 5)
    assert back.file == 1


def test_times_are_stored_as_wall_clock(loop, open_log, tmp_path, monkeypatch) -> None:
    """Delays and age keep counting across downtime: the log holds wall-clock times."""
    log, _, _ = open_log()
    job = make_job(1, delay=500, state=DELAYED)
    wall_runnable = job.runnable_at - time.monotonic() + time.time()
    wall_created = job.created_at - time.monotonic() + time.time()
    log.put(job)
    log, jobs, _ = reopen(loop, log, open_log, str(tmp_path))
    (back,) = jobs
    assert back.state == DELAYED and back.delay == 500
    assert back.runnable_at == pytest.approx(wall_runnable, abs=0.5)
    assert back.created_at == pytest.approx(wall_created, abs=0.5)
    # the same absolute wall-clock deadline whenever recovery runs: a restart an
    # hour later finds the delay an hour further on
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    _, again, _ = reopen(loop, log, open_log, str(tmp_path))
    assert again[0].runnable_at == back.runnable_at


def test_bury_kick_and_release_with_delay(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log()
    buried, kicked, released = make_job(1), make_job(2), make_job(3)
    for job in (buried, kicked, released):
        log.put(job)
    buried.state, buried.buries = BURIED, 1
    log.update(buried)
    kicked.state, kicked.buries = BURIED, 1
    log.update(kicked)
    kicked.state, kicked.kicks = READY, 1
    log.update(kicked)
    released.state, released.priority, released.delay, released.releases = DELAYED, 7, 60, 1
    released.runnable_at = time.monotonic() + 60
    log.update(released)
    _, jobs, _ = reopen(loop, log, open_log, str(tmp_path))
    back = by_id(jobs)
    assert (back[1].state, back[1].buries) == (BURIED, 1)
    assert (back[2].state, back[2].buries, back[2].kicks) == (READY, 1, 1)
    assert (back[3].state, back[3].priority, back[3].delay, back[3].releases) == (DELAYED, 7, 60, 1)
    assert back[3].runnable_at == pytest.approx(time.time() + 60, abs=1)


def test_kick_of_a_delayed_job(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log()
    job = make_job(1, delay=100, state=DELAYED)
    log.put(job)
    job.state, job.runnable_at, job.kicks = READY, None, 1
    log.update(job)
    _, jobs, _ = reopen(loop, log, open_log, str(tmp_path))
    assert [(j.state, j.runnable_at, j.kicks) for j in jobs] == [(READY, None, 1)]


def test_delete_is_gone_but_its_id_is_remembered(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log()
    jobs = [make_job(i) for i in (1, 2, 3)]
    for job in jobs:
        log.put(job)
    log.delete(jobs[2])
    log.delete(jobs[0])
    _, back, next_id = reopen(loop, log, open_log, str(tmp_path))
    assert [j.id for j in back] == [2]
    assert next_id == 4


def test_next_id_survives_the_files_that_held_it(loop, open_log, tmp_path) -> None:
    """The highest id may only have lived in files compaction deleted."""
    log, _, _ = open_log(file_size=512)
    for i in range(1, 40):
        job = make_job(i, body=b"x" * 100)
        log.put(job)
        log.delete(job)
    settle(loop, log)
    assert not os.path.exists(tmp_path / "binlog.1")
    _, back, next_id = reopen(loop, log, open_log, str(tmp_path), file_size=512)
    assert (back, next_id) == ([], 40)


def test_reserved_job_comes_back_ready(loop, open_log, tmp_path) -> None:
    """A job reserved at the crash is ready again (reserve itself is not journaled)."""
    log, _, _ = open_log()
    job = make_job(1)
    log.put(job)
    job.state, job.reserves = RESERVED, 1
    log.update(job)  # e.g. a bury that the server journaled before changing state
    _, back, _ = reopen(loop, log, open_log, str(tmp_path))
    assert [(j.state, j.reserves) for j in back] == [(READY, 1)]


def test_buried_jobs_come_back_in_bury_order(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log()
    jobs = [make_job(i) for i in range(1, 7)]
    for job in jobs:
        log.put(job)
    for i in (5, 2, 6, 1):
        jobs[i - 1].state = BURIED
        log.update(jobs[i - 1])
    _, back, _ = reopen(loop, log, open_log, str(tmp_path))
    assert [j.id for j in back if j.state == BURIED] == [5, 2, 6, 1]


def test_bury_order_survives_compaction(loop, open_log, tmp_path) -> None:
    """Compaction copies jobs forward out of order; the recorded order must win."""
    log, _, _ = open_log(file_size=1024)
    keep = [make_job(i, body=b"k" * 50) for i in range(1, 9)]
    for job in keep:
        log.put(job)
    for job in reversed(keep):
        job.state = BURIED
        log.update(job)
    for i in range(100, 300):  # churn until the first file is compacted away
        job = make_job(i, body=b"c" * 200)
        log.put(job)
        log.delete(job)
        settle(loop, log)
    assert log.stats()["binlog-records-migrated"] > 0
    assert not os.path.exists(tmp_path / "binlog.1")
    _, back, _ = reopen(loop, log, open_log, str(tmp_path), file_size=1024)
    assert [j.id for j in back] == [8, 7, 6, 5, 4, 3, 2, 1]


def test_recovered_jobs_can_be_updated_and_deleted(loop, open_log, tmp_path) -> None:
    log, _, _ = open_log()
    for i in (1, 2):
        log.put(make_job(i))
    log, jobs, _ = reopen(loop, log, open_log, str(tmp_path))
    one, two = jobs
    one.state = BURIED
    log.update(one)
    log.delete(two)
    log.put(make_job(3))
    _, back, next_id = reopen(loop, log, open_log, str(tmp_path))
    assert [(j.id, j.state) for j in back] == [(1, BURIED), (3, READY)]
    assert next_id == 4


def test_appending_before_recover_is_refused(loop, tmp_path) -> None:
    from geanstalk.binlog import Binlog
    from geanstalk.errors import BinlogError

    log = Binlog.open(str(tmp_path), None, 4096, loop)
    with pytest.raises(BinlogError, match="recover"):
        log.put(make_job(1))
    loop.run_until_complete(log.close())
