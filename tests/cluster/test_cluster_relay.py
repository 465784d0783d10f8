"""The standby's relay, over real sockets, with geanstalk servers standing in as leaders."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from geanstalk.cluster.relay import parse_advertise
from tests.cluster import relay_harness
from tests.cluster.relay_harness import RelayThread
from tests.servers import ServerProcess, geanstalk_server, recv_until


@pytest.fixture(params=["uvloop", "asyncio"], autouse=True)
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on uvloop (serve's default) and on asyncio's loop (--no-uvloop)."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setattr(relay_harness, "DEFAULT_LOOP", request.param)
    return request.param


@pytest.fixture
def leader_a() -> Iterator[ServerProcess]:
    with geanstalk_server().start() as server:
        yield server


@pytest.fixture
def leader_b() -> Iterator[ServerProcess]:
    with geanstalk_server().start() as server:
        yield server


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask(sock: socket.socket, command: bytes, lines: int = 1) -> bytes:
    sock.sendall(command)
    return recv_until(sock, lines)


def read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(15)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def stats_pid(sock: socket.socket) -> int:
    reply = ask(sock, b"stats\r\n")
    line = next(ln for ln in reply.split(b"\n") if ln.startswith(b"pid: "))
    return int(line.split()[1])


def test_parse_advertise() -> None:
    assert parse_advertise("127.0.0.1:11300") == ("127.0.0.1", 11300)
    assert parse_advertise("node-2.example:11301") == ("node-2.example", 11301)
    assert parse_advertise("[::1]:11300") == ("::1", 11300)
    for bad in ("127.0.0.1", ":11300", "host:0", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            parse_advertise(bad)


def test_leader_change_closes_relayed_clients(
    leader_a: ServerProcess, leader_b: ServerProcess
) -> None:
    with RelayThread(leader_a.address) as relay:
        old = connect(relay.address)
        assert stats_pid(old) == leader_a.pid
        assert ask(old, b"put 0 0 60 2\r\nhi\r\n") == b"INSERTED 1\r\n"

        assert relay.set_leader(leader_b.address) == 1
        # The old connection ends (as a dead leader's own connections would)...
        assert read_to_eof(old) == b""
        old.close()
        # ...and a new one reaches the new leader.
        with connect(relay.address) as new:
            assert stats_pid(new) == leader_b.pid
            assert ask(new, b"peek-ready\r\n") == b"NOT_FOUND\r\n"
        # The same leader again closes nothing.
        assert relay.set_leader(leader_b.address) == 0


def test_leader_death_closes_relayed_clients(leader_a: ServerProcess) -> None:
    with RelayThread(leader_a.address) as relay, connect(relay.address) as sock:
        assert ask(sock, b"use t\r\n") == b"USING t\r\n"
        leader_a.kill()
        assert read_to_eof(sock) == b""
        assert relay.run(lambda: len(relay.relay.connections)) in (0, 1)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """size bytes, or fewer if the connection ends first."""
    sock.settimeout(60)
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            break
        got += n
    return bytes(buf[:got])


def test_big_pipelined_bodies_pass_unchanged(leader_a: ServerProcess) -> None:
    """Megabytes each way in single writes, read back while still sending."""
    count, size = 160, 60_000
    bodies = [os.urandom(size // 2).hex().encode() for _ in range(count)]
    puts = b"".join(b"put %d 0 60 %d\r\n%s\r\n" % (i, size, b) for i, b in enumerate(bodies))
    inserted = b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(count))
    relay = RelayThread(leader_a.address, high_water=64 * 1024)
    with relay, connect(relay.address) as sock:
        replies: list[bytes] = []
        reader = threading.Thread(target=lambda: replies.append(read_exactly(sock, len(inserted))))
        reader.start()
        sock.sendall(puts)  # 9.6 MB in one write
        reader.join(90)
        assert replies == [inserted]
        # Replies of 2.4 MB per write: a server drops a reader more than its
        # output cap (4 MB) behind, and one write's commands are answered at once.
        batch = 40
        for first in range(0, count, batch):
            sock.sendall(b"reserve-with-timeout 5\r\n" * batch)
            expect = b"".join(
                b"RESERVED %d %d\r\n%s\r\n" % (i + 1, size, bodies[i])
                for i in range(first, first + batch)
            )
            assert read_exactly(sock, len(expect)) == expect


def test_slow_reader_holds_the_leader_back(leader_a: ServerProcess) -> None:
    """A client that does not read its replies fills bounded buffers, not the relay's memory."""
    high_water = 64 * 1024
    relay = RelayThread(leader_a.address, client_sndbuf=16 * 1024, high_water=high_water)
    with relay, connect(relay.address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        body = os.urandom(30_000)
        assert ask(sock, b"put 0 0 60 %d\r\n%s\r\n" % (len(body), body)) == b"INSERTED 1\r\n"
        # About 3 MB of replies, not read for now (under the leader's own
        # 4 MB cap for a slow reader, past which it would drop the relay).
        peeks = 100
        sock.sendall(b"peek 1\r\n" * peeks)

        def relay_paused() -> tuple[bool, int] | None:
            (conn,) = relay.relay.connections
            assert conn.client is not None and conn.upstream is not None
            if conn.upstream.is_reading():
                return None
            return True, conn.client.get_write_buffer_size()

        # Bounded wait until the relay stops reading from the leader.
        state = None
        for _ in range(400):
            state = relay.run(relay_paused)
            if state is not None:
                break
            threading.Event().wait(0.025)
        assert state is not None, "the relay never paused reading from the leader"
        # What it holds for the client: the high-water mark plus at most one read.
        assert state[1] <= high_water + 512 * 1024
        got = recv_until(sock, peeks, 60)
    assert got == b"FOUND 1 %d\r\n%s\r\n" % (len(body), body) * peeks


def test_half_close_reaches_the_leader(leader_a: ServerProcess) -> None:
    with RelayThread(leader_a.address) as relay, connect(relay.address) as sock:
        sock.sendall(b"use half\r\nput 0 0 60 3\r\nabc\r\nput 0 0 60 3\r\ndef\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"USING half\r\nINSERTED 1\r\nINSERTED 2\r\n"
    with connect(leader_a.address) as direct:
        assert ask(direct, b"stats-tube half\r\n").count(b"current-jobs-ready: 2") == 1


def test_no_leader_known_closes_the_client_then_relays_once_known(
    leader_a: ServerProcess,
) -> None:
    with RelayThread(None, leader_wait=0.2) as relay:
        with connect(relay.address) as sock:
            sock.sendall(b"stats\r\n")
            assert read_to_eof(sock) == b""
        relay.set_leader(leader_a.address)
        with connect(relay.address) as sock:
            assert stats_pid(sock) == leader_a.pid


def test_a_client_waits_for_a_leader_to_be_known(leader_a: ServerProcess) -> None:
    with RelayThread(None, leader_wait=30) as relay, connect(relay.address) as sock:
        sock.sendall(b"put 0 0 60 4\r\nwait\r\n")
        relay.set_leader(leader_a.address)
        assert recv_until(sock) == b"INSERTED 1\r\n"


def test_never_relays_to_itself(leader_a: ServerProcess) -> None:
    """A stale leader key naming this very node must not make it relay in a loop."""
    own = ("127.0.0.1", leader_a.port)
    with RelayThread(own, own_address=own, leader_wait=0.1) as relay:
        with connect(relay.address) as sock:
            sock.sendall(b"stats\r\n")
            assert read_to_eof(sock) == b""
        assert relay.relay.accepted == 1


def test_unreachable_leader_closes_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
    with RelayThread(dead) as relay, connect(relay.address) as sock:
        sock.sendall(b"stats\r\n")
        assert read_to_eof(sock) == b""
