"""Bodies in the log (-b): the bounded cache, read-back, damage, compaction racing reads.

The unit tests drive a Binlog and its BodyStore on a private loop; the
server tests send real bytes to `geanstalk serve -b DIR --body-cache N`.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from geanstalk import bodystore as bodystore_module
from geanstalk.binlog import Binlog
from geanstalk.cli import UsageError, parse_args
from geanstalk.core import READY
from tests.binlog.binlog_helpers import make_job, settle
from tests.binlog.test_binlog_server import Client, split_replies, start
from tests.servers import recv_until


def body_for(job_id: int, size: int = 300) -> bytes:
    """A body that says whose it is, so a body handed to the wrong job shows."""
    head = b"job-%d:" % job_id
    return head + bytes((job_id * 7 + k) % 256 for k in range(size - len(head)))


def fetched(loop: asyncio.AbstractEventLoop, log: Binlog, job: Any) -> bytes:
    """The body through the asynchronous path (a helper thread), as a reply would get it."""
    done: asyncio.Future[bytes] = loop.create_future()

    def landed(body: bytes | None, err: BaseException | None) -> None:
        if err is not None:
            done.set_exception(err)
        else:
            done.set_result(body)  # type: ignore[arg-type]

    log.bodies.fetch(job, landed)
    return loop.run_until_complete(asyncio.wait_for(done, 10))


# --- the cache -----------------------------------------------------------------------


def test_the_cache_stays_within_its_limit_and_evicts_the_oldest(loop, tmp_path) -> None:
    limit = 10 * (300 + bodystore_module.ENTRY_COST)
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=limit)
    log.recover()
    jobs = [make_job(i, body=body_for(i)) for i in range(1, 41)]
    for job in jobs:
        log.put(job)
        assert log.bodies.size <= limit
    assert [bool(j.body) for j in jobs] == [False] * 30 + [True] * 10
    settle(loop, log)
    for job in jobs:  # evicted or not, every body comes back
        assert log.bodies.load(job) == body_for(job.id)
        assert fetched(loop, log, job) == body_for(job.id)
    for job in jobs:
        log.delete(job)
    assert log.bodies.size == 0 and log.bodies.stats()["body-cache-bodies"] == 0
    loop.run_until_complete(log.close())


def test_cache_0_keeps_no_body_and_reads_every_one_back(loop, tmp_path) -> None:
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=0)
    log.recover()
    jobs = [make_job(i, body=body_for(i)) for i in range(1, 6)]
    for job in jobs:
        log.put(job)
    assert all(j.body == b"" for j in jobs)
    # Not written yet: a read first hands the buffered records to the kernel.
    got = [log.bodies.get(j) or fetched(loop, log, j) for j in jobs]
    assert got == [body_for(j.id) for j in jobs]
    stats = log.bodies.stats()
    assert stats["body-cache-bytes"] == 0 and stats["body-cache-misses"] == 5
    loop.run_until_complete(log.close())


def test_empty_bodies_need_no_read(loop, tmp_path) -> None:
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=0)
    log.recover()
    job = make_job(1, body=b"")
    log.put(job)
    assert log.bodies.get(job) == b""
    assert log.bodies.stats()["body-reads"] == 0
    loop.run_until_complete(log.close())


def test_a_restart_fills_the_cache_with_the_oldest_bodies(loop, tmp_path) -> None:
    log = Binlog.open(str(tmp_path), None, 4096, loop, body_cache=0)
    log.recover()
    for i in range(1, 31):
        log.put(make_job(i, body=body_for(i)))
    settle(loop, log)
    loop.run_until_complete(log.close())
    limit = 12 * (300 + bodystore_module.ENTRY_COST)
    log = Binlog.open(str(tmp_path), None, 4096, loop, body_cache=limit)
    jobs, _ = log.recover()
    assert [j.id for j in jobs if j.body] == list(range(1, 13))
    assert all(j.body == body_for(j.id) for j in jobs if j.body)
    loop.run_until_complete(log.close())


def test_body_cache_option_takes_units() -> None:
    assert parse_args(["--body-cache", "0"])[0].body_cache == 0
    assert parse_args(["--body-cache=64MiB"])[0].body_cache == 64 << 20
    assert parse_args(["--body-cache", "256M"])[0].body_cache == 256 << 20
    assert parse_args(["--body-cache", "2G"])[0].body_cache == 2 << 30
    assert parse_args([])[0].body_cache is None
    for bad in ("x", "-1", "12T", "1.5G"):
        with pytest.raises(UsageError):
            parse_args(["--body-cache", bad])


# --- compaction racing reads ------------------------------------------------------------


def test_a_read_in_flight_while_compaction_moves_the_job_and_deletes_its_file(
    loop, tmp_path, monkeypatch
) -> None:
    """The read started on the old file; the file goes; the read still gets the right bytes."""
    log = Binlog.open(str(tmp_path), None, 2048, loop, body_cache=0)
    log.recover()
    pinned = make_job(1, body=body_for(1, 200))
    log.put(pinned)
    settle(loop, log)
    assert pinned.file == 1
    gate = threading.Event()
    real_pread = os.pread
    calls: list[int] = []

    def slow_first_pread(fd: int, n: int, offset: int) -> bytes:
        calls.append(fd)
        if len(calls) == 1:
            gate.wait(10)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(bodystore_module.os, "pread", slow_first_pread)
    monkeypatch.setattr(log.bodies, "_nowait", False)  # every read goes to a thread
    result: list[Any] = []
    log.bodies.fetch(pinned, lambda body, err: result.append((body, err)))
    for i in range(100, 400):  # churn until compaction moved the job and file 1 went
        job = make_job(i, body=b"c" * 100)
        log.put(job)
        log.delete(job)
        if i % 20 == 0:
            loop.run_until_complete(asyncio.sleep(0.001))
    while log.stats()["binlog-oldest-index"] == 1:
        loop.run_until_complete(asyncio.sleep(0.001))
    assert pinned.file > 1 and not (tmp_path / "binlog.1").exists()
    assert result == []
    gate.set()
    settle(loop, log)
    while not result:
        loop.run_until_complete(asyncio.sleep(0.001))
    assert result == [(body_for(1, 200), None)]
    assert fetched(loop, log, pinned) == body_for(1, 200)
    loop.run_until_complete(log.close())


def test_a_read_right_after_compaction_moved_the_job_gets_the_copy_not_yet_written(
    loop, tmp_path
) -> None:
    """The copy is still in the write buffer when the read comes: it is written first."""
    log = Binlog.open(str(tmp_path), None, 2048, loop, body_cache=0)
    log.recover()
    pinned = [make_job(i, body=body_for(i, 150)) for i in range(1, 4)]
    for job in pinned:
        log.put(job)
    settle(loop, log)
    seen: list[tuple[int, bytes]] = []

    def probe() -> None:
        # Runs every loop iteration: the first one after a move reads at once.
        for job in pinned:
            if job.file != files[job.id]:
                files[job.id] = job.file
                seen.append((job.id, log.bodies.get(job) or log.bodies.load(job)))
        if len(seen) < len(pinned) * 2:
            loop.call_soon(probe)

    files = {j.id: j.file for j in pinned}
    loop.call_soon(probe)
    i = 100
    while len(seen) < len(pinned) * 2:  # each pinned job moved at least twice
        job = make_job(i, body=b"c" * 100)
        log.put(job)
        log.delete(job)
        i += 1
        loop.run_until_complete(asyncio.sleep(0))
    assert all(body == body_for(jid, 150) for jid, body in seen)
    loop.run_until_complete(log.close())


# --- damage -----------------------------------------------------------------------------


def test_a_damaged_body_is_an_error_naming_file_and_offset_never_a_wrong_body(
    loop, tmp_path, caplog
) -> None:
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=0)
    log.recover()
    jobs = [make_job(i, body=body_for(i)) for i in range(1, 4)]
    for job in jobs:
        log.put(job)
    settle(loop, log)
    _, offset, size = log.locate(jobs[1])  # type: ignore[misc]
    with open(tmp_path / "binlog.1", "r+b") as fh:
        fh.seek(offset + size - 5)
        byte = fh.read(1)
        fh.seek(offset + size - 5)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(Exception, match=rf"binlog\.1: corrupt record at offset {offset}"):
        log.bodies.get(jobs[1])
    with pytest.raises(Exception, match=rf"binlog\.1: corrupt record at offset {offset}"):
        fetched(loop, log, jobs[1])
    assert f"corrupt record at offset {offset}" in caplog.text
    assert log.bodies.get(jobs[0]) == body_for(1)
    assert fetched(loop, log, jobs[2]) == body_for(3)
    assert log.bodies.stats()["body-read-errors"] == 2
    loop.run_until_complete(log.close())


def test_server_answers_internal_error_for_a_damaged_body_and_serves_the_others(
    tmp_path,
) -> None:
    directory = str(tmp_path / "log")
    os.mkdir(directory)
    err = str(tmp_path / "stderr")
    server = start(directory, "--body-cache", "0", stderr=err)
    try:
        c = Client(server)
        ids = [c.put(body_for(i)) for i in range(1, 4)]
        # Where job 2's body lies: after the header and job 1's record.
        data = Path(directory, "binlog.1").read_bytes()
        at = data.index(body_for(2)) + 100
        with open(Path(directory, "binlog.1"), "r+b") as fh:
            fh.seek(at)
            fh.write(bytes([data[at] ^ 0x40]))
        record_at = data.rindex(b"job-1:") + len(body_for(1))
        assert c(b"peek %d\r\n" % ids[1]) == [b"INTERNAL_ERROR\r\n"]
        replies = c(b"reserve-with-timeout 0\r\n", b"reserve-with-timeout 0\r\n")
        assert replies[0] == b"RESERVED %d 300\r\n%s\r\n" % (ids[0], body_for(1))
        assert replies[1] == b"INTERNAL_ERROR\r\n"
        # The damaged job is buried, out of the way; the next one is served.
        assert c.stats_job(ids[1])["state"] == "buried"  # type: ignore[index]
        assert c.one(b"reserve-with-timeout 0\r\n") == b"RESERVED %d 300\r\n%s\r\n" % (
            ids[2],
            body_for(3),
        )
        assert c.one(b"peek %d\r\n" % ids[0]) == b"FOUND %d 300\r\n%s\r\n" % (ids[0], body_for(1))
        c.close()
    finally:
        server.stop()
    text = Path(err).read_text()
    assert f"binlog.1: corrupt record at offset {record_at}" in text, text


# --- through the server -----------------------------------------------------------------


def test_pipelined_replies_that_wait_for_reads_stay_in_order(tmp_path) -> None:
    directory = str(tmp_path)
    server = start(directory, "--body-cache", "0")
    try:
        c = Client(server)
        ids = [c.put(body_for(i, 100 + i)) for i in range(1, 41)]
        commands = []
        expected = []
        for n, jid in enumerate(ids):
            body = body_for(n + 1, 101 + n)
            commands.append(b"peek %d\r\n" % jid)
            expected.append(b"FOUND %d %d\r\n%s\r\n" % (jid, len(body), body))
            commands.append(b"stats-job 999999\r\n")
            expected.append(b"NOT_FOUND\r\n")
            if n % 3 == 0:
                commands.append(b"reserve-job %d\r\n" % jid)
                expected.append(b"RESERVED %d %d\r\n%s\r\n" % (jid, len(body), body))
                commands.append(b"delete %d\r\n" % jid)
                expected.append(b"DELETED\r\n")
        commands.append(b"peek-ready\r\n")
        body = body_for(2, 102)
        expected.append(b"FOUND %d %d\r\n%s\r\n" % (ids[1], len(body), body))
        c.sock.sendall(b"".join(commands))
        data = recv_until(c.sock, len(commands), timeout=20)
        assert split_replies(data, len(commands)) == expected
        c.close()
    finally:
        server.stop()


def test_a_blocked_reserve_woken_by_a_put_gets_the_body(tmp_path) -> None:
    server = start(str(tmp_path), "--body-cache", "0")
    try:
        worker = Client(server)
        worker.sock.sendall(b"reserve\r\n")
        producer = Client(server)
        jid = producer.put(body_for(9))
        reply = recv_until(worker.sock, 1, timeout=10)
        assert reply == b"RESERVED %d 300\r\n%s\r\n" % (jid, body_for(9))
        worker.close()
        producer.close()
    finally:
        server.stop()


def test_compaction_under_reserve_delete_load_with_a_tiny_cache(tmp_path) -> None:
    """Small files, a 16 KiB cache, long-lived jobs pinning old files: compaction runs
    while workers put, reserve, release and delete; every body a worker gets is its job's."""
    server = start(str(tmp_path), "-s", "4096", "--body-cache", "16384", "-f", "0")
    try:
        c = Client(server)
        backlog = {}
        for i in range(60):  # long-lived jobs in the oldest files
            body = body_for(1000 + i, 200 + i * 7)
            backlog[c.put(body, pri=5)] = body
        stop = threading.Event()
        failures: list[str] = []
        left: dict[int, bytes] = {}

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            w = Client(server)
            mine: dict[int, bytes] = {}  # each worker has a tube of its own
            try:
                tube = b"w%d" % seed
                assert w(b"use %s\r\n" % tube, b"watch %s\r\n" % tube, b"ignore default\r\n")
                while not stop.is_set():
                    body = body_for(seed * 100000 + rng.randrange(99999), rng.randrange(50, 900))
                    mine[w.put(body, pri=rng.choice([1, 10]))] = body
                    reply = w.one(b"reserve-with-timeout 0\r\n")
                    head, _, rest = reply.partition(b"\r\n")
                    words = head.split()
                    if words[0] != b"RESERVED":
                        failures.append(f"reserve answered {reply[:60]!r}")
                        return
                    got_id = int(words[1])
                    if rest[:-2] != mine[got_id]:
                        failures.append(f"job {got_id}: wrong body")
                        return
                    if rng.random() < 0.3:
                        assert w.one(b"release %d 10 0\r\n" % got_id) == b"RELEASED\r\n"
                    else:
                        assert w.one(b"delete %d\r\n" % got_id) == b"DELETED\r\n"
                        del mine[got_id]
                left.update(mine)
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                w.close()

        threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in (1, 2, 3)]
        for t in threads:
            t.start()
        migrated = 0
        while migrated < 150 and not failures and any(t.is_alive() for t in threads):
            stats = c.one(b"stats\r\n")
            migrated = int(stats.split(b"binlog-records-migrated: ")[1].split(b"\n")[0])
        stop.set()
        for t in threads:
            t.join(20)
        assert failures == []
        assert migrated >= 150
        # What is left is intact: the pinned backlog and each worker's released jobs.
        for jid, body in {**backlog, **left}.items():
            assert c.one(b"peek %d\r\n" % jid) == b"FOUND %d %d\r\n%s\r\n" % (jid, len(body), body)
        c.close()
    finally:
        server.stop()


def test_state_of_jobs_read_ahead_is_untouched(loop, tmp_path) -> None:
    """Read-ahead only fills bodies: ids, states and order stay as they were."""
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=0)
    log.recover()
    jobs = [make_job(i, body=body_for(i)) for i in range(1, 20)]
    for job in jobs:
        log.put(job)
    settle(loop, log)
    loop.run_until_complete(log.close())
    log = Binlog.open(str(tmp_path), None, 1 << 20, loop, body_cache=1 << 20)
    back, _ = log.recover()
    assert [(j.id, j.state) for j in back] == [(j.id, READY) for j in jobs]
    assert [log.bodies.load(j) for j in back] == [body_for(j.id) for j in jobs]
    loop.run_until_complete(log.close())


def test_the_cache_figures_go_to_the_log_at_V_and_not_into_stats(tmp_path) -> None:
    err = str(tmp_path / "stderr")
    directory = str(tmp_path / "log")
    os.mkdir(directory)
    server = start(directory, "-V", "--body-cache", "1M", stderr=err)
    try:
        c = Client(server)
        jid = c.put(body_for(1))
        assert c.one(b"peek %d\r\n" % jid).startswith(b"FOUND")
        stats = c.one(b"stats\r\n")
        assert b"cache" not in stats and b"body" not in stats
        c.close()
    finally:
        assert server.stop() == 0
    text = Path(err).read_text()
    assert "body cache: 1 bodies" in text and "of 1048576 bytes; hit rate 100.0%" in text, text


def test_max_memory_counts_only_the_bodies_in_memory(tmp_path) -> None:
    """--max-memory with -b: a body evicted from the cache no longer counts, so
    put/delete rounds far beyond the bound never answer OUT_OF_MEMORY."""
    server = start(str(tmp_path), "--max-memory", "300000", "--body-cache", "20000")
    try:
        c = Client(server)
        for _ in range(4):
            ids = [c.put(body_for(i, 1000)) for i in range(150)]
            for jid in ids:
                assert c.one(b"delete %d\r\n" % jid) == b"DELETED\r\n"
        c.close()
    finally:
        server.stop()
