"""Resource bounds over real sockets: --max-memory, --max-connections, file
descriptors running out, --idle-timeout, and slow clients.

Servers run as child processes (tests/servers.py) except where a test must
look inside a connection (the slow-loris test runs the Runner in-process on
a real socket). Waits are bounded loops that poll the server's own answers;
nothing asserts how long something took, only CPU seconds spent (a loose
bound that a spinning accept loop would blow by far).
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geanstalk.config import ServerConfig
from geanstalk.limits import BoundCounters, RateLimitedLog
from geanstalk.protocol import LINE_MAX, Connection
from geanstalk.runner import Runner
from geanstalk.storage import JOB_OVERHEAD
from tests.servers import ServerProcess, recv_until, running

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _stat(sock: socket.socket, key: str) -> int:
    sock.sendall(b"stats\r\n")
    doc = recv_until(sock).decode()
    m = re.search(rf"\n{re.escape(key)}: (\d+)\n", doc)
    assert m, doc
    return int(m.group(1))


def _ask(sock: socket.socket, command: bytes, lines: int = 1) -> bytes:
    sock.sendall(command)
    return recv_until(sock, lines)


def _closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the server closed (EOF or reset); False if it sends data instead."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def stderr_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "stderr")


def _log(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- --max-memory ------------------------------------------------------------------


BODY = 1000
PER_JOB = BODY + JOB_OVERHEAD


def test_out_of_memory_at_the_bound_then_puts_succeed_after_deletes(stderr_path: str) -> None:
    body = b"m" * BODY
    put = b"put 0 0 60 %d\r\n%b\r\n" % (BODY, body)
    with running(
        "geanstalk", "--max-memory", str(10 * PER_JOB + 100), stderr_path=stderr_path
    ) as server:
        s = server.connect()
        for jid in range(1, 11):
            assert _ask(s, put) == b"INSERTED %d\r\n" % jid
        # The eleventh does not fit: its body is read and thrown away, the
        # command after it in the same write runs, nothing is stored.
        assert _ask(s, put + b"list-tube-used\r\n", 2) == b"OUT_OF_MEMORY\r\nUSING default\r\n"
        assert _stat(s, "current-jobs-ready") == 10
        assert _stat(s, "total-jobs") == 10
        # As 1.12 when it cannot allocate: cmd-put counts it, no id is taken.
        assert _stat(s, "cmd-put") == 11
        # A body too big is still JOB_TOO_BIG (decided first), and an empty
        # body's overhead alone does not fit either.
        assert _ask(s, b"put 0 0 60 70000\r\n" + b"x" * 70000 + b"\r\n") == b"JOB_TOO_BIG\r\n"
        assert _ask(s, b"put 0 0 60 0\r\n\r\n") == b"OUT_OF_MEMORY\r\n"
        # Everything else keeps working while full.
        other = server.connect()
        assert _ask(other, b"reserve-with-timeout 0\r\n").startswith(b"RESERVED 1 1000\r\n")
        assert _ask(other, b"delete 1\r\n") == b"DELETED\r\n"
        assert _ask(s, b"peek-ready\r\n").startswith(b"FOUND 2 ")
        # One job deleted: one put fits again, with the next id.
        assert _ask(s, put) == b"INSERTED 11\r\n"
        assert _ask(s, put) == b"OUT_OF_MEMORY\r\n"
        for jid in (2, 3):
            assert _ask(other, b"delete %d\r\n" % jid) == b"DELETED\r\n"
        assert _ask(s, put + put) == b"INSERTED 12\r\nINSERTED 13\r\n"
        s.close()
        other.close()
    log = _log(stderr_path)
    assert "refused: job memory" in log and "--max-memory" in log


def test_without_max_memory_puts_are_not_bounded() -> None:
    with running("geanstalk") as server:
        s = server.connect()
        body = b"n" * 60000
        out = _ask(s, b"put 0 0 60 60000\r\n%b\r\n" % body * 40, 40)
        assert out.count(b"INSERTED") == 40


def test_process_stays_under_the_bound_plus_a_constant() -> None:
    """Fill to the bound with 4 KiB bodies: RSS grows by about the bound, no more."""
    bound = 24 << 20
    body = b"r" * 4096
    batch = b"put 0 0 60 4096\r\n%b\r\n" % body * 200
    with running("geanstalk", "--max-memory", str(bound)) as server:
        s = server.connect()
        assert _ask(s, b"stats\r\n").startswith(b"OK ")
        before = _rss(server.pid)
        stored = 0
        while True:
            out = _ask(s, batch, 200)
            stored += out.count(b"INSERTED")
            if b"OUT_OF_MEMORY" in out:
                break
            assert stored < 100_000, "never answered OUT_OF_MEMORY"
        grown = _rss(server.pid) - before
        assert _stat(s, "current-jobs-ready") == stored
        assert stored * (4096 + JOB_OVERHEAD) <= bound
        # docs/SECURITY.md: the bound plus 10% and 8 MiB (buffers, allocator slack).
        assert grown <= bound * 1.1 + (8 << 20), (grown, bound)
        s.close()


# --- --max-connections ----------------------------------------------------------------


def _served_connection(server: ServerProcess) -> socket.socket:
    """A connection the server answers, retried while it refuses them."""
    for _ in range(200):
        try:
            s = server.connect()
            if _ask(s, b"list-tube-used\r\n") == b"USING default\r\n":
                return s
            s.close()
        except ConnectionResetError:
            pass
        time.sleep(0.02)
    raise AssertionError("the server never served a new connection")


def test_max_connections_resets_the_one_too_many_and_serves_the_rest(stderr_path: str) -> None:
    with running("geanstalk", "--max-connections", "3", stderr_path=stderr_path) as server:
        # (The start-up probe's connection may not be closed yet server-side.)
        held = [_served_connection(server) for _ in range(3)]
        total = _stat(held[0], "total-connections")
        for _ in range(20):
            try:
                s = server.connect()
            except ConnectionResetError:
                continue  # reset before connect() even returned
            assert _closed_by_server(s)
            s.close()
        # The three are served as before; the refused never counted.
        assert _stat(held[0], "current-connections") == 3
        assert _stat(held[0], "total-connections") == total
        # One goes: a new one is served (once the server has seen the close).
        held.pop().close()
        held.append(_served_connection(server))
        for s in held:
            s.close()
    lines = [ln for ln in _log(stderr_path).splitlines() if "refused a connection" in ln]
    # 20 refusals in well under a few seconds: logged at most once a second.
    assert 1 <= len(lines) <= 5, lines
    assert "--max-connections" in lines[0]


# --- file descriptors exhausted ---------------------------------------------------------


@pytest.mark.parametrize("loop_flags", [(), ("--no-uvloop",)], ids=["uvloop", "asyncio"])
def test_fd_exhaustion_pauses_accepting_serves_the_others_and_recovers(
    stderr_path: str, loop_flags: tuple[str, ...]
) -> None:
    with running("geanstalk", *loop_flags, stderr_path=stderr_path) as server:
        first = server.connect()
        assert _ask(first, b"use fds\r\n") == b"USING fds\r\n"
        for _ in range(200):  # the start-up probe's connection gone server-side too
            if _stat(first, "current-connections") == 1:
                break
            time.sleep(0.02)
        fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)[1]
        # Room for exactly two more connections.
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (fds + 2, hard))
        served = [server.connect() for _ in range(2)]
        for s in served:
            assert _ask(s, b"list-tube-used\r\n") == b"USING default\r\n"
        # These connect (the kernel's backlog takes them) but cannot be accepted.
        waiting = [server.connect() for _ in range(5)]
        for s in waiting:
            s.sendall(b"list-tube-used\r\n")
        cpu0 = _cpu_seconds(server.pid)
        t0 = time.monotonic()
        # Existing connections keep being served meanwhile.
        while time.monotonic() - t0 < 2.0:
            assert _ask(first, b"list-tube-used\r\n") == b"USING fds\r\n"
            time.sleep(0.1)
        cpu = _cpu_seconds(server.pid) - cpu0
        # A spinning accept loop burns a whole core: ~2 s here.
        assert cpu < 0.5, f"server used {cpu:.2f} s of CPU in 2 s with fds exhausted"
        for s in waiting:
            s.settimeout(0.05)
            with pytest.raises(TimeoutError):
                s.recv(100)
        # Free descriptors: the waiting clients are accepted and answered.
        for s in served:
            s.close()
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (fds + 7, hard))
        for s in waiting:
            assert recv_until(s, timeout=10) == b"USING default\r\n"
            s.close()
        assert _ask(first, b"list-tube-used\r\n") == b"USING fds\r\n"
        first.close()
    lines = [ln for ln in _log(stderr_path).splitlines() if "accepting paused" in ln]
    assert lines and "Too many open files" in lines[0]
    # Paused every 100 ms for about two seconds, logged at most once a second.
    assert len(lines) <= 6, lines


# --- --idle-timeout ---------------------------------------------------------------------


def test_idle_timeout_closes_only_idle_connections(stderr_path: str) -> None:
    with running("geanstalk", "--idle-timeout", "1", stderr_path=stderr_path) as server:
        admin = server.connect()
        idle = server.connect()
        assert _ask(idle, b"use quiet\r\n") == b"USING quiet\r\n"
        holder = server.connect()
        assert _ask(holder, b"put 0 0 120 1\r\nx\r\n") == b"INSERTED 1\r\n"
        assert _ask(holder, b"reserve\r\n").startswith(b"RESERVED 1 1")
        waiter = server.connect()
        assert _ask(waiter, b"watch empty\r\n") == b"WATCHING 2\r\n"
        assert _ask(waiter, b"ignore default\r\n") == b"WATCHING 1\r\n"
        waiter.sendall(b"reserve\r\n")  # blocks: nothing in "empty"
        idle.settimeout(0.2)
        rounds = 0
        while True:  # the admin connection talks all along
            assert _ask(admin, b"list-tube-used\r\n") == b"USING default\r\n"
            try:
                assert idle.recv(1) == b""
                break
            except TimeoutError:
                rounds += 1
                assert rounds < 100, "the idle connection was never closed"
        # Two more timeouts: the holder holds a job, the waiter is blocked in
        # reserve, the admin talks: all three are still served.
        for _ in range(10):
            assert _ask(admin, b"list-tube-used\r\n") == b"USING default\r\n"
            time.sleep(0.2)
        assert _ask(holder, b"list-tube-used\r\n") == b"USING default\r\n"
        assert _ask(admin, b"use empty\r\nput 0 0 10 2\r\nhi\r\n", 2) == (
            b"USING empty\r\nINSERTED 2\r\n"
        )
        assert recv_until(waiter) == b"RESERVED 2 2\r\nhi\r\n"
        # Once the holder lets its job go and falls silent, it is closed too.
        assert _ask(holder, b"delete 1\r\n") == b"DELETED\r\n"
        assert _closed_by_server(holder)
        for s in (admin, idle, holder, waiter):
            s.close()
    assert "--idle-timeout" in _log(stderr_path)


def test_without_idle_timeout_a_silent_connection_stays() -> None:
    with running("geanstalk") as server:
        s = server.connect()
        time.sleep(1.5)
        assert _ask(s, b"list-tube-used\r\n") == b"USING default\r\n"
        s.close()


# --- slow clients -------------------------------------------------------------------------


class _Recording(Connection):
    """Notes the most input the connection ever held between reads."""

    __slots__ = ("most_held",)

    def __init__(self, server: object) -> None:
        super().__init__(server)  # type: ignore[arg-type]
        self.most_held = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.most_held = max(self.most_held, len(self._buf))


async def _trickle(port: int, data: bytes) -> socket.socket:
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    for i in range(len(data)):
        await loop.sock_sendall(s, data[i : i + 1])
        if i % 8 == 0:
            await asyncio.sleep(0)  # let the server read what came so far
    return s


def test_a_client_sending_one_byte_at_a_time_costs_at_most_one_line_buffer() -> None:
    async def scenario() -> tuple[int, bytes, int]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        runner = Runner(
            ServerConfig(), [sock], install_signals=False, connection_factory=_Recording
        )
        await runner.start()
        loop = asyncio.get_running_loop()
        try:
            # A line that never ends: 5000 bytes, one per send.
            s = await _trickle(port, b"x" * 5000)
            await loop.sock_sendall(s, b"\r\nlist-tube-used\r\n")
            reply = b""
            while reply.count(b"\r\n") < 2:
                reply += await loop.sock_recv(s, 100)
            (conn,) = runner.server.connections  # type: ignore[union-attr]
            most = conn.most_held  # type: ignore[attr-defined]
            s.close()
            return most, reply, len(conn._buf)  # type: ignore[attr-defined]
        finally:
            await runner.stop()

    most, reply, left = asyncio.run(scenario())
    assert reply == b"BAD_FORMAT\r\nUSING default\r\n"
    assert most <= LINE_MAX, most
    assert left == 0


# --- the counters and the rate-limited log ----------------------------------------------------


def test_rate_limited_log_writes_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    rl = RateLimitedLog(1.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="geanstalk"):
        assert rl.warning("hit %d", 1)
        assert not rl.warning("hit %d", 2)
        assert not rl.warning("hit %d", 3)
        now[0] += 1.0
        assert rl.warning("hit %d", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "hit 1",
        "hit 4 (2 more since the last such line)",
    ]


def test_bound_counters_start_at_zero() -> None:
    assert BoundCounters().as_dict() == {
        "accept_pauses": 0,
        "connections_refused": 0,
        "idle_closed": 0,
        "puts_out_of_memory": 0,
    }


def test_client_libraries_see_out_of_memory_and_recover() -> None:
    import greenstalk
    import pystalk

    body = "g" * BODY
    with running("geanstalk", "--max-memory", str(2 * PER_JOB + 10)) as server:
        with greenstalk.Client(server.address) as g:
            assert g.put(body) == 1
            assert g.put(body) == 2
            with pytest.raises(greenstalk.OutOfMemoryError):
                g.put(body)
            g.delete(1)
            assert g.put(body) == 3
        p = pystalk.BeanstalkClient(*server.address)
        with pytest.raises(pystalk.BeanstalkError) as err:
            p.put_job(body)
        assert err.value.message in (b"OUT_OF_MEMORY", "OUT_OF_MEMORY")
        p.delete_job(2)
        assert p.put_job(body) == (b"INSERTED", 4)  # pystalk returns (status, id)


def test_jobs_restored_then_forgotten_leave_the_job_memory_as_it_was() -> None:
    """A standby follows a journal with restore() and forget(): both count."""
    from geanstalk.core import Job
    from geanstalk.journal import NullJournal
    from geanstalk.storage import StorageService

    storage = StorageService(NullJournal())
    storage.max_memory = 10 * PER_JOB
    for jid in (1, 2, 3):
        job = Job(jid, 0, None, 60, b"f" * BODY, 0, time.time())
        job.tube = b"default"
        storage.restore(job)
    assert storage.job_memory() == 3 * PER_JOB
    storage.forget(2)
    assert storage.job_memory() == 2 * PER_JOB
    assert storage.memory_allows(BODY)
    storage.max_memory = 3 * PER_JOB - 1
    assert not storage.memory_allows(BODY)


def test_a_binlog_over_the_bound_is_recovered_whole_and_refuses_puts(tmp_path: Path) -> None:
    binlog = str(tmp_path / "binlog")
    os.mkdir(binlog)
    log = str(tmp_path / "stderr")
    body = b"k" * BODY
    with running("geanstalk", "-b", binlog, "-f", "0") as server:
        s = server.connect()
        assert _ask(s, b"put 0 0 60 %d\r\n%b\r\n" % (BODY, body) * 5, 5).count(b"INSERTED") == 5
        s.close()
    # Restarted with room for two: all five come back, puts are refused.
    bound = str(2 * PER_JOB)
    with running("geanstalk", "-b", binlog, "--max-memory", bound, stderr_path=log) as server:
        s = server.connect()
        # Only stats is answered while the log loads: a put waits for it.
        assert _ask(s, b"put 0 0 60 1\r\nx\r\n") == b"OUT_OF_MEMORY\r\n"
        assert _stat(s, "current-jobs-ready") == 5
        for jid in (1, 2, 3, 4):
            assert _ask(s, b"delete %d\r\n" % jid) == b"DELETED\r\n"
        assert _ask(s, b"put 0 0 60 1\r\nx\r\n") == b"INSERTED 6\r\n"
        s.close()
    assert "over --max-memory" in _log(log)
