"""The admin CLI against geanstalk and beanstalkd 1.12: every command, its output and exit code.

Jobs are set up and checked with greenstalk (an independent client), so a
mistake in the CLI's own protocol client cannot hide itself.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import greenstalk
import pytest

from tests.admin.conftest import Result, run_cli
from tests.servers import ServerProcess, free_port, geanstalk_command

Cli = Callable[..., Result]


@pytest.fixture
def gs(server: ServerProcess) -> Iterator[greenstalk.Client]:
    with greenstalk.Client(server.address, encoding=None, use="default") as client:
        yield client


def put(gs: greenstalk.Client, tube: str, body: bytes, **kw: int) -> int:
    gs.use(tube)
    return gs.put(body, **kw)


def js(result: Result) -> object:
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_put_from_stdin_then_job_shows_stats_and_exact_bytes(
    cli: Cli, gs: greenstalk.Client
) -> None:
    body = bytes(range(256)) + b"\r\n\x00end"
    put_result = cli("put", "mail", "--pri", "7", "--delay", "30", "--ttr", "9", stdin=body)
    assert put_result.code == 0, put_result.err
    job_id = int(put_result.out)
    stats = gs.stats_job(job_id)
    assert (stats["tube"], stats["pri"], stats["delay"], stats["ttr"]) == ("mail", 7, 30, 9)
    shown = js(cli("job", str(job_id), "--json"))
    assert shown["id"] == job_id
    assert shown["stats"]["state"] == "delayed" and shown["stats"]["pri"] == 7
    assert base64.b64decode(shown["body_base64"]) == body
    assert shown["body"] is None  # not UTF-8
    text = cli("job", str(job_id))
    assert text.code == 0
    assert b"tube:      mail" in text.out and text.out.endswith(body + b"\n")


def test_put_with_body_and_peek_each_state(cli: Cli, gs: greenstalk.Client) -> None:
    ready = int(cli("put", "t1", "--body", "héllo", "--pri", "3").out)
    delayed = int(cli("put", "t1", "--body", "later", "--delay", "100").out)
    buried = put(gs, "t1", b"dead")
    gs.watch("t1")
    gs.ignore("default")
    job = gs.reserve(timeout=0)
    assert job.id == ready  # pri 3 first
    gs.release(job, priority=3)
    gs.reserve_job(buried)
    gs.bury(greenstalk.Job(buried, b""))
    for state, want_id, body in (
        ("ready", ready, "héllo"),
        ("delayed", delayed, "later"),
        ("buried", buried, "dead"),
    ):
        peeked = js(cli("peek", "t1", state, "--json"))
        assert (peeked["id"], peeked["stats"]["state"], peeked["body"]) == (want_id, state, body)
    missing = cli("peek", "empty-tube", "ready")
    assert missing.code == 1 and "no ready job" in missing.err


def test_stats_server_and_tube(cli: Cli, gs: greenstalk.Client) -> None:
    put(gs, "s1", b"a", priority=5)
    put(gs, "s1", b"b", priority=2000)
    server = js(cli("stats", "--json"))
    assert server["current-jobs-ready"] == 2 and server["current-jobs-urgent"] == 1
    assert server["cmd-put"] == 2 and isinstance(server["version"], str)
    tube = js(cli("stats", "--tube", "s1", "--json"))
    assert (tube["name"], tube["current-jobs-ready"], tube["total-jobs"]) == ("s1", 2, 2)
    text = cli("stats", "--tube", "s1")
    assert text.code == 0 and "current-jobs-urgent: 1" in " ".join(text.text.split())
    assert cli("stats", "--tube", "nope").code == 1


def test_tubes_table_sort_filter(cli: Cli, gs: greenstalk.Client) -> None:
    for _ in range(3):
        put(gs, "mail-a", b"x", priority=10)
    put(gs, "mail-b", b"y", delay=100)
    put(gs, "other", b"z")
    rows = js(cli("tubes", "--json"))
    by_name = {r["tube"]: r for r in rows}
    assert set(by_name) == {"default", "mail-a", "mail-b", "other"}
    assert by_name["mail-a"] == {
        "tube": "mail-a",
        "ready": 3,
        "urgent": 3,
        "reserved": 0,
        "delayed": 0,
        "buried": 0,
        "waiting": 0,
        "paused": 0,
        "total": 3,
    }
    assert by_name["mail-b"]["delayed"] == 1
    assert [r["tube"] for r in js(cli("tubes", "mail-*", "--json"))] == ["mail-a", "mail-b"]
    by_ready = js(cli("tubes", "--sort", "ready", "--reverse", "--json"))
    assert by_ready[0]["tube"] == "mail-a"
    table = cli("tubes", "mail-*")
    lines = table.text.splitlines()
    assert lines[0].split() == [
        "tube",
        "ready",
        "urgent",
        "reserved",
        "delayed",
        "buried",
        "waiting",
        "paused",
        "total",
    ]
    assert lines[1].split() == ["mail-a", "3", "3", "0", "0", "0", "0", "0", "3"]


def test_bury_kick_kick_job_pause(cli: Cli, gs: greenstalk.Client) -> None:
    ids = [put(gs, "k", b"%d" % i, priority=100 + i) for i in range(4)]
    result = js(cli("bury", "k", "3", "--json"))
    assert result["buried"] == ids[:3]  # in priority order, each reserved then buried
    for job_id in ids[:3]:
        stats = gs.stats_job(job_id)
        assert (stats["state"], stats["pri"], stats["buries"]) == (
            "buried",
            100 + ids.index(job_id),
            1,
        )
    assert gs.stats_job(ids[3])["state"] == "ready"
    assert js(cli("kick", "k", "2", "--json")) == {"tube": "k", "kicked": 2}
    assert [gs.stats_job(i)["state"] for i in ids[:3]] == ["ready", "ready", "buried"]
    assert cli("kick-job", str(ids[2])).code == 0
    assert gs.stats_job(ids[2])["state"] == "ready"
    assert cli("kick-job", str(ids[2])).code == 1  # not buried or delayed any more
    assert cli("pause", "k", "60").code == 0
    assert gs.stats_tube("k")["pause"] == 60
    assert cli("pause", "k", "0").code == 0
    assert gs.stats_tube("k")["pause"] == 0
    # bury never takes a job a worker holds
    gs.watch("k")
    gs.ignore("default")
    held = gs.reserve(timeout=0)
    result = js(cli("bury", "k", "10", "--json"))
    assert held.id not in result["buried"] and len(result["buried"]) == 3
    assert gs.stats_job(held.id)["state"] == "reserved"


def test_delete_by_id_and_by_state(cli: Cli, gs: greenstalk.Client) -> None:
    keep = put(gs, "d", b"keep", delay=100)
    ids = [put(gs, "d", b"go") for _ in range(3)]
    assert cli("delete", str(ids[0])).code == 0
    with pytest.raises(greenstalk.NotFoundError):
        gs.stats_job(ids[0])
    assert cli("delete", str(ids[0])).code == 1
    refused = cli("delete", "d", "--state", "ready", "--all")  # no terminal, no --yes
    assert refused.code == 1 and "not confirmed" in refused.err
    assert gs.stats_tube("d")["current-jobs-ready"] == 2
    assert cli("delete", "d", "--state", "ready").code == 2  # --all is required
    done = js(cli("delete", "d", "--state", "ready", "--all", "--yes", "--json"))
    assert sorted(done["deleted"]) == ids[1:]
    assert gs.stats_job(keep)["state"] == "delayed"


def test_move_keeps_priority_ttr_delay_and_buried_state(cli: Cli, gs: greenstalk.Client) -> None:
    put(gs, "src", b"r1", priority=5, ttr=30)
    put(gs, "src", b"r2", priority=6, ttr=31)
    d = put(gs, "src", b"d1", priority=7, delay=1000, ttr=32)
    b = put(gs, "src", b"b1", priority=8, ttr=33)
    gs.reserve_job(b)
    gs.bury(greenstalk.Job(b, b""), priority=8)
    assert len(js(cli("move", "src", "dst", "--state", "ready", "--json"))["moved"]) == 2
    moved = js(cli("move", "src", "dst", "--state", "delayed", "--json"))["moved"]
    assert [m["old"] for m in moved] == [d]
    new_delayed = gs.stats_job(moved[0]["new"])
    assert (new_delayed["tube"], new_delayed["state"], new_delayed["pri"], new_delayed["ttr"]) == (
        "dst",
        "delayed",
        7,
        32,
    )
    assert 900 <= new_delayed["time-left"] <= 1000
    moved = js(cli("move", "src", "dst", "--state", "buried", "--json"))["moved"]
    new_buried = gs.stats_job(moved[0]["new"])
    assert (new_buried["state"], new_buried["pri"], new_buried["ttr"]) == ("buried", 8, 33)
    assert gs.peek(moved[0]["new"]).body == b"b1"
    left = gs.stats_tube("src")
    assert [left[f"current-jobs-{s}"] for s in ("ready", "delayed", "buried", "reserved")] == [
        0
    ] * 4
    stats = gs.stats_tube("dst")
    assert (stats["current-jobs-ready"], stats["current-jobs-delayed"]) == (2, 1)
    gs.use("dst")
    assert gs.peek_ready().body == b"r1"
    assert cli("move", "a", "a", "--state", "ready").code == 2


def test_tail_prints_and_acts(cli: Cli, gs: greenstalk.Client) -> None:
    ids = [put(gs, "tl", b"job-%d" % i) for i in range(3)]
    out = cli("tail", "tl", "--action", "delete", "-n", "2")
    assert out.code == 0
    assert b"job-0" in out.out and b"job-1" in out.out and b"job-2" not in out.out
    for job_id in ids[:2]:
        with pytest.raises(greenstalk.NotFoundError):
            gs.stats_job(job_id)
    seen = js(cli("tail", "tl", "--action", "bury", "-n", "1", "--json"))
    assert (seen["id"], seen["body"]) == (ids[2], "job-2")
    assert gs.stats_job(ids[2])["state"] == "buried"
    put(gs, "tl", b"again")
    out = cli("tail", "tl", "--action", "release", "-n", "1")
    assert out.code == 0 and b"again" in out.out
    assert gs.stats_tube("tl")["current-jobs-ready"] == 1


def test_exit_codes(cli: Cli) -> None:
    port = free_port()
    unreachable = run_cli(["stats", "-a", f"127.0.0.1:{port}"])
    assert unreachable.code == 3 and "cannot connect" in unreachable.err
    # the address also comes before the command, and from BEANSTALKD_ADDR
    assert run_cli(["-a", f"127.0.0.1:{port}", "tubes"]).code == 3
    assert cli("job", "999999").code == 1
    assert cli("stats", "--no-such-flag").code == 2
    assert cli("peek", "t", "sideways").code == 2
    assert run_cli(["stats", "-a", "127.0.0.1:notaport"]).code == 2


def test_address_from_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEANSTALKD_ADDR", f"127.0.0.1:{server.port}")
    result = run_cli(["stats", "--json"])
    assert result.code == 0 and json.loads(result.out)["pid"] == server.pid


def test_unix_socket_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "g.sock"
    proc = subprocess.Popen(geanstalk_command("-l", f"unix:{path}"), stderr=subprocess.DEVNULL)
    try:
        # The socket file exists from bind(), before listen(): wait for a
        # connection to be accepted, not for the file.
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                    break
                except OSError:
                    time.sleep(0.01)
        result = run_cli(["put", "sock", "--body", "via unix", "-a", f"unix:{path}"])
        assert result.code == 0, result.err
        shown = run_cli(["job", result.text.strip(), "--json", "-a", f"unix:{path}"])
        assert json.loads(shown.out)["body"] == "via unix"
        assert run_cli(["stats", "-a", f"unix:{tmp_path / 'none'}"]).code == 3
    finally:
        proc.terminate()
        proc.wait(10)
