"""The server as a process: flags, sockets, signals, limits, start-up time."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from geanstalk.core import COMPILED
from geanstalk.stats import VERSION
from tests.servers import (
    BEANSTALKD,
    SKIP_NO_REFERENCE,
    free_port,
    geanstalk_command,
    recv_until,
    running,
    wait_for_port,
)

CORE = "compiled core" if COMPILED else "pure-Python core"


def cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geanstalk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_version_flag_prints_the_version() -> None:
    for args in (("serve", "-v"), ("serve", "--version"), ("-v",)):
        r = cli(*args)
        assert (r.returncode, r.stdout) == (0, f"geanstalk {VERSION} ({CORE})\n")


def test_help_flag() -> None:
    r = cli("serve", "-h")
    assert r.returncode == 0
    assert "-l ADDR" in r.stderr and "--no-uvloop" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-x",), "unknown flag: -x"),
        (("-p",), "flag requires an argument: -p"),
        (("-z", "abc"), "invalid size: abc"),
        (("-f", "3x"), "invalid size: 3x"),
        (("--bogus",), "unknown flag: --bogus"),
        (("--port",), "flag requires an argument: --port"),
        (("-s", ""), "invalid size: "),
        (("stray",), "unknown argument: stray"),
    ],
)
def test_bad_flags_exit_non_zero_with_a_message(args: tuple[str, ...], message: str) -> None:
    r = cli("serve", *args)
    assert r.returncode == 5
    assert message in r.stderr
    assert "Use:" in r.stderr


def test_unknown_subcommand() -> None:
    r = cli("frobnicate")
    assert r.returncode != 0
    assert "unknown command: frobnicate" in r.stderr


def test_geanstalkd_entry_point_takes_flags_without_subcommand() -> None:
    code = "import sys; from geanstalk.cli import beanstalkd_main; sys.exit(beanstalkd_main())"
    r = subprocess.run(
        [sys.executable, "-c", code, "-v"], capture_output=True, text=True, timeout=20
    )
    assert (r.returncode, r.stdout) == (0, f"geanstalk {VERSION} ({CORE})\n")


def test_binlog_dir_that_does_not_exist_is_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as d:
        missing = os.path.join(d, "nope")
        r = cli("serve", "-l", "127.0.0.1", "-p", str(free_port()), "-b", missing)
        assert r.returncode != 0
        assert missing in r.stderr


@contextlib.contextmanager
def process(*args: str, stderr: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        geanstalk_command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_unix_socket_replaces_a_leftover_socket_file() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()  # leaves the file behind, as a crashed server would
        with process("-l", f"unix:{path}"):
            deadline = time.monotonic() + 10
            while True:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(path)
                    break
                except OSError:
                    s.close()
                    assert time.monotonic() < deadline, "unix socket never accepted"
                    time.sleep(0.01)
            with s:
                s.sendall(b"put 0 0 10 2\r\nhi\r\nreserve\r\n")
                assert recv_until(s, 2) == b"INSERTED 1\r\nRESERVED 1 2\r\nhi\r\n"


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_literal_address() -> None:
    port = free_port()
    with process("-l", "::1", "-p", str(port)):
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.create_connection(("::1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "::1 never accepted"
                time.sleep(0.01)
        with s:
            s.sendall(b"list-tube-used\r\n")
            assert recv_until(s) == b"USING default\r\n"


def test_long_flags_and_max_job_size() -> None:
    port = free_port()
    with process("--listen", "127.0.0.1", "--port", str(port), "--max-job-size=3", "--no-uvloop"):
        wait_for_port(port, 10)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"put 0 0 1 3\r\nabc\r\nput 0 0 1 4\r\nabcd\r\n")
            assert recv_until(s, 2) == b"INSERTED 1\r\nJOB_TOO_BIG\r\n"


def test_sigusr1_enters_drain_mode() -> None:
    with running("geanstalk") as server:
        s = server.connect()
        s.sendall(b"put 0 0 1 1\r\na\r\n")
        assert recv_until(s) == b"INSERTED 1\r\n"
        server.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while True:
            s.sendall(b"stats\r\n")
            if b"\ndraining: true\n" in recv_until(s):
                break
            assert time.monotonic() < deadline, "never entered drain mode"
            time.sleep(0.01)
        s.sendall(b"put 0 0 1 1\r\nb\r\nreserve\r\n")
        assert recv_until(s, 2) == b"DRAINING\r\nRESERVED 1 1\r\na\r\n"


def test_sigterm_stops_gracefully_with_exit_0() -> None:
    with running("geanstalk") as server:
        s = server.connect()
        s.sendall(b"put 0 0 100 1\r\na\r\nreserve\r\n")
        assert recv_until(s, 2) == b"INSERTED 1\r\nRESERVED 1 1\r\na\r\n"
        server.signal(signal.SIGTERM)
        assert server.proc is not None
        assert server.proc.wait(10) == 0
        s.settimeout(5)
        assert s.recv(100) == b""  # the server closed the connection


def test_a_client_that_does_not_read_is_disconnected_at_the_output_cap() -> None:
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "stderr")
        with running("geanstalk", "-V", stderr_path=log) as server:
            other = server.connect()
            greedy = server.connect()
            greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            body = b"x" * 60000
            greedy.sendall(b"put 0 0 100 %d\r\n%b\r\n" % (len(body), body))
            assert recv_until(greedy) == b"INSERTED 1\r\n"
            # 1000 peeks of a 60 kB job: 60 MB of replies nobody reads.
            greedy.sendall(b"peek 1\r\n" * 1000)
            deadline = time.monotonic() + 20
            while True:
                other.sendall(b"stats\r\n")
                if b"\ncurrent-connections: 1\n" in recv_until(other):
                    break
                assert time.monotonic() < deadline, "greedy client never disconnected"
                time.sleep(0.05)
            # The other connection is unaffected.
            other.sendall(b"stats-job 1\r\n")
            assert recv_until(other).startswith(b"OK ")
            greedy.close()
        with open(log, encoding="utf-8") as f:
            assert "replies not read" in f.read()


def test_start_up_time_is_measured() -> None:
    """Exec to first accepted connection; reported, not asserted (no timed asserts)."""
    port = free_port()
    start = time.perf_counter()
    with process("-l", "127.0.0.1", "-p", str(port)) as proc:
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None
                time.sleep(0.001)
        accepted = time.perf_counter() - start
        with s:
            s.sendall(b"list-tube-used\r\n")
            assert recv_until(s) == b"USING default\r\n"
    print(f"\nstart-up: exec to accepted connection {accepted * 1000:.1f} ms")


def test_sigterm_with_a_binlog_syncs_and_keeps_the_job() -> None:
    with tempfile.TemporaryDirectory() as d:
        with running("geanstalk", "-b", d, "-f", "10000") as server:
            s = server.connect()
            s.sendall(b"put 0 0 100 3\r\nabc\r\n")
            assert recv_until(s) == b"INSERTED 1\r\n"
            server.signal(signal.SIGTERM)
            assert server.proc is not None
            assert server.proc.wait(10) == 0
        with running("geanstalk", "-b", d) as server:
            s = server.connect()
            s.sendall(b"peek 1\r\n")
            assert recv_until(s) == b"FOUND 1 3\r\nabc\r\n"


def test_binlog_size_flag_shows_in_stats_without_a_binlog() -> None:
    with running("geanstalk", "-s", "123456") as server:
        s = server.connect()
        s.sendall(b"stats\r\n")
        assert b"\nbinlog-max-size: 123456\n" in recv_until(s)


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="-u needs root to switch users"
)
def test_user_flag_drops_privileges_and_still_serves_with_a_binlog() -> None:
    """-u switches user after binding; the server's code was loaded before the
    switch, so it serves even where that user cannot read the Python install."""
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    # pytest's tmp_path sits under directories only root may enter.
    binlog = tempfile.mkdtemp(prefix="geanstalk-u-")
    try:
        os.chown(binlog, nobody.pw_uid, nobody.pw_gid)
        with running("geanstalk", "-u", "nobody", "-b", binlog) as server:
            with server.connect() as s:
                s.sendall(b"put 0 0 10 2\r\nhi\r\nstats-job 1\r\n")
                reply = recv_until(s, 2)
            assert reply.startswith(b"INSERTED 1\r\nOK ")
            assert b"\nstate: ready\n" in reply
            assert _uid_of(server.pid) == nobody.pw_uid
            assert server.stop() == 0
        assert any(name.startswith("binlog.") for name in os.listdir(binlog))
    finally:
        shutil.rmtree(binlog, ignore_errors=True)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "beanstalkd", marks=pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
        ),
        "geanstalk",
    ],
)
def test_big_pipelined_puts_keep_every_body_exact(kind: str) -> None:
    """Hundreds of distinct bodies in one write arrive in many reads, most of
    them split mid-body; each body must come back byte for byte."""
    rng = random.Random(7)
    bodies = [rng.randbytes(rng.randint(3000, 9000)) for _ in range(300)]
    stream = b"".join(b"put 0 0 60 %d\r\n%b\r\n" % (len(b), b) for b in bodies)
    with running(kind) as server, server.connect() as s:
        s.sendall(b"use big-bodies\r\nwatch big-bodies\r\nignore default\r\n")
        assert recv_until(s, 3) == b"USING big-bodies\r\nWATCHING 2\r\nWATCHING 1\r\n"
        s.sendall(stream)
        inserted = recv_until(s, len(bodies), timeout=30).split(b"\r\n")[:-1]
        assert len(inserted) == len(bodies) and all(x.startswith(b"INSERTED ") for x in inserted)
        for jid, body in zip((int(x.split()[1]) for x in inserted), bodies, strict=True):
            s.sendall(b"reserve-with-timeout 0\r\n")
            assert recv_until(s) == b"RESERVED %d %d\r\n%b\r\n" % (jid, len(body), body)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), "event loop: uvloop"), (("--no-uvloop",), "event loop: asyncio (--no-uvloop)")],
)
def test_verbose_logs_which_event_loop_runs(flags: tuple[str, ...], expected: str) -> None:
    if not flags:
        pytest.importorskip("uvloop")
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "stderr")
        with running("geanstalk", "-V", *flags, stderr_path=log) as server:
            server.connect().close()
        with open(log, encoding="utf-8") as f:
            assert expected in f.read()
