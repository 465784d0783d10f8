"""`geanstalk import-binlog`: real beanstalkd 1.12 logs brought across, job for job.

Every log here is written by beanstalkd itself (-b, with a small -s so it
rotates), then beanstalkd is stopped, the directory imported, and geanstalk
started on the result beside beanstalkd restarted on a copy of the original:
both must answer the same for every job id.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import greenstalk
import pytest

from geanstalk import beanstalkd_binlog as bb
from tests.admin.conftest import run_cli
from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, geanstalk_command, running

reference = pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)

TUBES = ("default", "alpha", "beta-2", "gamma_(x)")
# stats-job fields that must be equal after the import (file, age and
# time-left are compared separately; buries is one apart for buried jobs)
SAME = ("id", "tube", "state", "pri", "delay", "ttr", "reserves", "timeouts", "releases", "kicks")


def snapshot_dir(path: Path) -> dict[str, tuple[int, int, str]]:
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(path.iterdir())
    }


def job_states(address: tuple[str, int], last_id: int) -> dict[int, tuple[dict, bytes]]:
    out = {}
    with greenstalk.Client(address, encoding=None) as gs:
        for job_id in range(1, last_id + 1):
            with contextlib.suppress(greenstalk.NotFoundError):
                out[job_id] = (gs.stats_job(job_id), gs.peek(job_id).body)
    return out


def beanstalkd_workload(directory: Path) -> tuple[dict[int, tuple[dict, bytes]], int, list[int]]:
    """Run beanstalkd -b directory through puts, deletes, buries, kicks, delays; stop it.

    Returns what it showed for every live job just before it stopped, the
    highest id it gave, and the ids in the order they were buried.
    """
    rng = random.Random(1012)
    with (
        running("beanstalkd", "-b", str(directory), "-s", "5000") as server,
        greenstalk.Client(server.address, encoding=None) as gs,
    ):
        ids: list[int] = []
        for i in range(80):
            gs.use(TUBES[i % len(TUBES)])
            size = rng.choice((0, 1, 50, 300, 900))
            body = bytes(rng.randrange(256) for _ in range(size))
            delay = 3600 + i if i % 9 == 4 else 0
            ids.append(
                gs.put(body, priority=rng.choice((0, 10, 1024, 2**32 - 1)), delay=delay, ttr=5 + i)
            )
        for job_id in ids[:40:3]:  # deletes, early ones first: old files empty out
            gs.delete(job_id)
        live = [j for j in ids if j not in ids[:40:3]]
        # buries with new priorities, in an order different from the ids
        buried = [j for j in reversed(live[5:40:4]) if gs.stats_job(j)["state"] == "ready"]
        for n, job_id in enumerate(buried):
            gs.reserve_job(job_id)
            gs.bury(greenstalk.Job(job_id, b""), priority=100 + n)
        gs.use("alpha")
        gs.kick(2)  # alpha has no buried job here: its two soonest delayed ones
        gs.kick_job(buried[-1])
        # release with delay (journaled) and without (not journaled)
        gs.reserve_job(live[41])
        gs.release(greenstalk.Job(live[41], b""), priority=77, delay=7200)
        gs.reserve_job(live[42])
        gs.release(greenstalk.Job(live[42], b""), priority=78)
        gs.reserve_job(live[43])  # left reserved at the stop
        for job_id in live[60:70]:
            if gs.stats_job(job_id)["state"] == "ready":
                gs.delete(job_id)
        last = gs.put(b"last", priority=1)
        before = job_states(server.address, last)
    assert len(bb.list_files(str(directory))) >= 3, "the log should have rotated"
    return before, last, buried


@pytest.fixture(scope="module")
def beanstalkd_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, int, list[int]]:
    if BEANSTALKD is None:
        pytest.skip(SKIP_NO_REFERENCE)
    directory = tmp_path_factory.mktemp("beanstalkd-log")
    return (directory, *beanstalkd_workload(directory))


@reference
def test_import_matches_restarted_beanstalkd_job_for_job(
    beanstalkd_log: tuple[Path, dict, int, list[int]], tmp_path: Path
) -> None:
    source, before, last, bury_order = beanstalkd_log
    untouched = snapshot_dir(source)
    copy = tmp_path / "beanstalkd-copy"
    shutil.copytree(source, copy)
    dest = tmp_path / "geanstalk-log"

    result = run_cli(["import-binlog", str(source), str(dest), "--json"])
    assert result.code == 0, result.err
    assert snapshot_dir(source) == untouched  # never modified, not even the lock file
    summary = __import__("json").loads(result.out)
    assert summary["next_id"] == last + 1 and summary["damage"] == []

    with (
        running("geanstalk", "-b", str(dest)) as ours,
        running("beanstalkd", "-b", str(copy)) as ref,
    ):
        mine = job_states(ours.address, last + 5)
        theirs = job_states(ref.address, last + 5)
        assert sorted(mine) == sorted(theirs) == sorted(before)
        assert summary["jobs"] == len(before)
        states = {s["state"] for s, _ in mine.values()}
        assert states == {"ready", "delayed", "buried"}
        for job_id, (stats, body) in mine.items():
            ref_stats, ref_body = theirs[job_id]
            assert body == ref_body == before[job_id][1]
            assert {k: stats[k] for k in SAME} == {k: ref_stats[k] for k in SAME}, job_id
            # buries: as beanstalkd showed before the stop; 1.12 adds one per replay
            assert stats["buries"] == before[job_id][0]["buries"]
            assert ref_stats["buries"] == stats["buries"] + (stats["state"] == "buried")
            assert abs(stats["age"] - ref_stats["age"]) <= 60
            if stats["state"] == "delayed":
                assert abs(stats["time-left"] - ref_stats["time-left"]) <= 60
                assert stats["time-left"] > 3000
        with (
            greenstalk.Client(ours.address, encoding=None) as a,
            greenstalk.Client(ref.address, encoding=None) as b,
        ):
            for tube in TUBES:
                a.use(tube)
                b.use(tube)
                for peek in ("peek_ready", "peek_delayed"):
                    got = [getattr(c, peek)().id if _has(c, peek) else None for c in (a, b)]
                    assert got[0] == got[1], (tube, peek)
                # kick takes buried jobs in the order they were buried, as
                # beanstalkd did before it stopped (1.12 itself, restarted,
                # follows its replay order instead: docs/COMPAT.md)
                kicked = []
                while _has(a, "peek_buried"):
                    kicked.append(a.peek_buried().id)
                    assert a.kick(1) == 1
                expected = [
                    j
                    for j in bury_order
                    if before[j][0]["tube"] == tube and before[j][0]["state"] == "buried"
                ]
                assert kicked == expected, tube
                assert b.kick(100) == len(expected)
            # new jobs go on from the same id
            assert a.put(b"new") == b.put(b"new") == last + 1


def _has(client: greenstalk.Client, peek: str) -> bool:
    try:
        getattr(client, peek)()
    except greenstalk.NotFoundError:
        return False
    return True


def small_log(directory: Path) -> None:
    with (
        running("beanstalkd", "-b", str(directory)) as server,
        greenstalk.Client(server.address, use="t") as gs,
    ):
        gs.put("hello", priority=3)
        gs.put("world", priority=4)


@reference
def test_damage_is_reported_with_file_and_offset(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    small_log(source)
    path = source / "binlog.1"
    data = bytearray(path.read_bytes())
    first = 4 + 4 + 1 + 80 + 7  # version, name length, "t", Jobrec, "hello\r\n"
    assert data[first : first + 5] == b"\x01\x00\x00\x00t"
    data[first : first + 4] = struct.pack("<i", 999)
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))

    dest = tmp_path / "dest"
    refused = run_cli(["import-binlog", str(source), str(dest)])
    assert refused.code == 1
    assert f"{path}: offset {first}: tube name length 999 out of range" in refused.err
    assert not [n for n in os.listdir(dest) if n.startswith("binlog")] if dest.exists() else True

    forced = run_cli(["import-binlog", "--force", "--json", str(source), str(dest)])
    assert forced.code == 0, forced.err
    assert '"jobs": 1' in forced.text
    with running("geanstalk", "-b", str(dest)) as server, greenstalk.Client(server.address) as gs:
        assert gs.peek(1).body == "hello"
        with pytest.raises(greenstalk.NotFoundError):
            gs.peek(2)

    # a file cut in the middle of a body
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "binlog.1").write_bytes(bytes(data[: first - 3]))
    result = run_cli(["import-binlog", str(cut), str(tmp_path / "dest2")])
    assert result.code == 1
    assert f"{cut / 'binlog.1'}: offset 4: unexpected end of file" in result.err


@reference
def test_refusals(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    small_log(source)
    dest = tmp_path / "dest"
    assert run_cli(["import-binlog", str(source), str(dest)]).code == 0
    again = run_cli(["import-binlog", str(source), str(dest)])
    assert again.code == 1 and "already holds binlog files" in again.err
    assert run_cli(["import-binlog", str(source), str(source)]).code == 1
    assert run_cli(["import-binlog", str(tmp_path / "nothing"), str(dest)]).code == 1
    assert run_cli(["import-binlog", str(source)]).code == 2
    # beanstalkd still running on the source
    with running("beanstalkd", "-b", str(source)):
        busy = run_cli(["import-binlog", str(source), str(tmp_path / "d3")])
    assert busy.code == 1 and "still running" in busy.err


@reference
def test_serve_refuses_a_beanstalkd_directory(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    small_log(source)
    before = snapshot_dir(source)
    proc = subprocess.run(
        geanstalk_command("-l", "127.0.0.1", "-p", "0", "-b", str(source)),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert b"geanstalk import-binlog" in proc.stderr and b"beanstalkd binlog" in proc.stderr
    assert snapshot_dir(source) == before


def test_version_5_records_are_read(tmp_path: Path) -> None:
    """Logs of beanstalkd before 1.10: size_t name lengths, microsecond times."""
    rec5 = struct.Struct("<QI4xQQi4xQQ5IB")
    body = b"ab\r\n"
    full = (
        struct.pack("<Q", 1)
        + b"t"
        + rec5.pack(3, 9, 0, 5_000_000, len(body), 10, 0, 1, 0, 0, 0, 0, bb.READY)
        + body
    )
    short = struct.pack("<Q", 0) + rec5.pack(
        3, 9, 0, 5_000_000, len(body), 10, 0, 1, 0, 0, 1, 0, bb.BURIED
    )
    (tmp_path / "binlog.2").write_bytes(struct.pack("<i", 5) + full + short + bytes(200))
    log = bb.read_directory(str(tmp_path))
    assert log.damage == [] and log.max_id == 3
    job = log.jobs[3]
    assert (job.tube, job.priority, job.ttr_ns, job.state, job.buries, job.body) == (
        "t",
        9,
        5_000_000_000,
        bb.BURIED,
        1,
        b"ab",
    )
    assert bb.looks_like_beanstalkd(str(tmp_path))


def test_a_missing_file_in_the_middle_is_damage(tmp_path: Path) -> None:
    empty = struct.pack("<i", 7) + bytes(100)
    for number in (1, 2, 5):
        (tmp_path / f"binlog.{number}").write_bytes(empty)
    log = bb.read_directory(str(tmp_path))
    assert [str(d) for d in log.damage] == [
        f"{tmp_path / 'binlog.3'}: offset 0: file missing between binlog.2 and binlog.5",
        f"{tmp_path / 'binlog.4'}: offset 0: file missing between binlog.2 and binlog.5",
    ]
    assert len(log.files) == 3 and log.jobs == {}


@reference
def test_a_log_that_beanstalkd_compacted_is_imported(tmp_path: Path) -> None:
    """Jobs copied forward by beanstalkd's compaction, their first files deleted."""
    source = tmp_path / "src"
    source.mkdir()
    with (
        running("beanstalkd", "-b", str(source), "-s", "5000") as server,
        greenstalk.Client(server.address, encoding=None) as gs,
    ):
        a = gs.put(b"A" * 50, priority=5)
        b = gs.put(b"B" * 50, priority=6, ttr=7)
        gs.reserve_job(b)
        gs.bury(greenstalk.Job(b, b""), priority=9)
        for _ in range(300):  # churn: files fill and empty, a and b are copied forward
            gs.delete(gs.put(b"x" * 900))
        gs.reserve_job(a)
        gs.bury(greenstalk.Job(a, b""), priority=7)
        gs.kick(1)  # b was buried first
        assert gs.stats()["binlog-records-migrated"] > 0
        last = gs.put(b"last")
        gs.delete(last)
        before = job_states(server.address, last)
    assert "binlog.1" not in os.listdir(source)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    dest = tmp_path / "dest"
    assert run_cli(["import-binlog", str(source), str(dest)]).code == 0
    with (
        running("geanstalk", "-b", str(dest)) as ours,
        running("beanstalkd", "-b", str(copy)) as ref,
    ):
        mine = job_states(ours.address, last)
        theirs = job_states(ref.address, last)
        assert sorted(mine) == sorted(theirs) == sorted(before) == [a, b]
        for job_id in (a, b):
            assert mine[job_id][1] == theirs[job_id][1]
            assert {k: mine[job_id][0][k] for k in SAME} == {k: theirs[job_id][0][k] for k in SAME}
            assert mine[job_id][0]["buries"] == before[job_id][0]["buries"] == 1
        assert (mine[a][0]["state"], mine[b][0]["state"], mine[b][0]["kicks"]) == (
            "buried",
            "ready",
            1,
        )
        with (
            greenstalk.Client(ours.address) as x,
            greenstalk.Client(ref.address) as y,
        ):
            assert x.put("new") == y.put("new") == last + 1


@reference
def test_jobs_above_the_default_size_limit_come_with_a_hint(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with (
        running("beanstalkd", "-z", "100000", "-b", str(source)) as server,
        greenstalk.Client(server.address, encoding=None) as gs,
    ):
        gs.put(b"y" * 70000)
    result = run_cli(["import-binlog", str(source), str(tmp_path / "dest")])
    assert result.code == 0
    assert f"geanstalk serve -b {tmp_path / 'dest'} -z 70000" in result.text
    with (
        running("geanstalk", "-b", str(tmp_path / "dest"), "-z", "70000") as ours,
        greenstalk.Client(ours.address, encoding=None) as gs,
    ):
        assert gs.peek(1).body == b"y" * 70000
