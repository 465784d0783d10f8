"""`geanstalk dump` from beanstalkd, `geanstalk load` into geanstalk (and back), compared."""

from __future__ import annotations

import json
from pathlib import Path

import greenstalk
import pytest

from tests.admin.conftest import run_cli
from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, running

pytestmark = pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)

BINARY = bytes(range(256)) * 3


def fill(server: ServerProcess) -> greenstalk.Client:
    """Jobs in every state over three tubes; returns the client holding a reservation."""
    with greenstalk.Client(server.address, encoding=None) as gs:
        gs.use("alpha")
        gs.put(b"a-ready-1", priority=10, ttr=30)
        gs.put(b"", priority=20, ttr=31)  # empty body
        gs.put(BINARY, priority=2**32 - 1, ttr=32)
        gs.put(b"a-delayed", priority=5, delay=1000, ttr=33)
        for body, pri in ((b"a-buried-late", 7), (b"a-buried-early", 6)):
            job_id = gs.put(body, priority=pri, ttr=34)
            gs.reserve_job(job_id)
            gs.bury(greenstalk.Job(job_id, b""), priority=pri)
        gs.use("beta")
        gs.put(b"b-ready", priority=1, ttr=40)
        gs.put(b"b-delayed", priority=2, delay=2000, ttr=41)
        gs.use("gamma/1")
        gs.put("ünïcode".encode(), priority=3, ttr=50)
    holder = greenstalk.Client(server.address, encoding=None, use="gamma/1", watch="gamma/1")
    held = holder.put(b"g-reserved", priority=0, ttr=600)
    assert holder.reserve(timeout=0).id == held
    return holder


def contents(server: ServerProcess) -> dict[tuple[str, str], list[tuple[int, int, bytes]]]:
    """(tube, state) -> sorted (pri, ttr, body) of every job, found with peek by id."""
    found: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    with greenstalk.Client(server.address, encoding=None) as gs:
        probe = gs.put(b"probe")
        gs.delete(probe)
        for job_id in range(1, probe):
            try:
                stats = gs.stats_job(job_id)
                body = gs.peek(job_id).body
            except greenstalk.NotFoundError:
                continue
            key = (stats["tube"], stats["state"])
            found.setdefault(key, []).append((stats["pri"], stats["ttr"], body))
    return {k: sorted(v) for k, v in found.items()}


def counters(server: ServerProcess) -> dict[int, tuple[int, ...]]:
    out = {}
    with greenstalk.Client(server.address) as gs:
        for job_id in range(1, 20):
            try:
                s = gs.stats_job(job_id)
            except greenstalk.NotFoundError:
                continue
            out[job_id] = (s["reserves"], s["releases"], s["buries"], s["kicks"], s["timeouts"])
    return out


def test_dump_from_beanstalkd_load_into_geanstalk(tmp_path: Path) -> None:
    dump_file = tmp_path / "jobs.jsonl"
    with running("beanstalkd") as source:
        holder = fill(source)
        try:
            before = counters(source)
            result = run_cli(["dump", "-a", f"127.0.0.1:{source.port}", "-o", str(dump_file)])
            assert result.code == 0, result.err
            assert "ids change" in result.err and "reserved jobs" in result.err
            assert counters(source) == before  # dumping touched no job
            only_beta = run_cli(["dump", "beta", "-a", f"127.0.0.1:{source.port}"])
            expected = contents(source)
        finally:
            holder.close()
    records = [json.loads(line) for line in dump_file.read_text().splitlines()]
    assert len(records) == 10
    assert [json.loads(line)["tube"] for line in only_beta.text.splitlines()] == ["beta"] * 2
    delayed = {r["tube"]: r["delay"] for r in records if r["state"] == "delayed"}
    assert 900 <= delayed["alpha"] <= 1000 and 1900 <= delayed["beta"] <= 2000

    with running("geanstalk") as target:
        loaded = run_cli(["load", str(dump_file), "-a", f"127.0.0.1:{target.port}", "--json"])
        assert loaded.code == 0, loaded.err
        assert json.loads(loaded.out)["loaded"] == 10
        got = contents(target)
        with greenstalk.Client(target.address, encoding=None, use="alpha") as gs:
            # buried jobs come back in the order they were buried (dumped in id order)
            assert gs.peek_buried().body == b"a-buried-late"
            assert 900 <= gs.stats_job(gs.peek_delayed().id)["time-left"] <= 1000
    # the job that was reserved comes back ready; everything else as it was
    expected[("gamma/1", "ready")] = sorted(
        expected.pop(("gamma/1", "ready")) + expected.pop(("gamma/1", "reserved"))
    )
    assert got == expected


def test_dump_from_geanstalk_load_into_beanstalkd_with_tube_filter(tmp_path: Path) -> None:
    with running("geanstalk") as source:
        holder = fill(source)
        try:
            dumped = run_cli(["dump", "-a", f"127.0.0.1:{source.port}"])
            assert dumped.code == 0, dumped.err
            expected = contents(source)
        finally:
            holder.close()
    with running("beanstalkd") as target:
        loaded = run_cli(
            ["load", "--tube", "alpha", "--tube", "beta", "-a", f"127.0.0.1:{target.port}"],
            stdin=dumped.out,
        )
        assert loaded.code == 0, loaded.err
        assert loaded.text.strip() == "loaded 8 jobs"
        got = contents(target)
    assert got == {k: v for k, v in expected.items() if k[0] in ("alpha", "beta")}


def test_load_refuses_a_bad_line_before_putting_anything(tmp_path: Path) -> None:
    with running("geanstalk") as target:
        good = {"tube": "t", "state": "ready", "pri": 1, "delay": 0, "ttr": 5, "body_base64": ""}
        text = json.dumps(good) + "\n" + json.dumps({**good, "pri": -1}) + "\n"
        result = run_cli(["load", "-a", f"127.0.0.1:{target.port}"], stdin=text.encode())
        assert result.code == 1 and "stdin:2" in result.err
        with greenstalk.Client(target.address) as gs:
            assert gs.stats()["total-jobs"] == 0


def test_load_stops_at_a_refused_put_and_says_where(tmp_path: Path) -> None:
    with running("geanstalk", "-z", "10") as target:
        small = {"tube": "t", "state": "ready", "pri": 1, "delay": 0, "ttr": 5, "body_base64": ""}
        big = {**small, "body_base64": "eHh4eHh4eHh4eHh4eHh4eA=="}  # 16 bytes
        text = "".join(json.dumps(r) + "\n" for r in (small, small, big, small))
        result = run_cli(["load", "-a", f"127.0.0.1:{target.port}"], stdin=text.encode())
        assert result.code == 1
        assert "JOB_TOO_BIG at line 3; 2 jobs were loaded before it" in result.err
