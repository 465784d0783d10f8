"""The differences from beanstalkd 1.12 that geanstalk keeps on purpose.

Each test asserts geanstalk's behaviour; the reference case is skipped with
the reason the behaviour differs (docs/COMPAT.md shows 1.12's side).
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.servers import ServerProcess, make_server, recv_until

KINDS = ["geanstalk", "beanstalkd"]

WHY = {
    "waiters": "1.12 hands released jobs to blocked reserves from a round-robin cursor "
    "that earlier reserves moved; geanstalk serves strict arrival order",
    "buries": "1.12 adds one to a buried job's buries at every replay; "
    "geanstalk keeps the true count",
    "buried_order": "1.12 rebuilds the buried list in replay order; "
    "geanstalk keeps the order of burying",
    "tube_order": "1.12's list-tubes after a restart follows its replay of every record; "
    "geanstalk's follows the tubes of the live jobs in its log",
}


def _only_geanstalk(kind: str, case: str) -> None:
    if kind != "geanstalk":
        pytest.skip(WHY[case])


def _cmd(s: socket.socket, data: bytes, replies: int = 1) -> bytes:
    s.sendall(data)
    return recv_until(s, replies)


def _wait_until_waiting(server: ServerProcess, n: int) -> None:
    with server.connect() as s:
        deadline = time.monotonic() + 10
        while b"current-waiting: %d\n" % n not in _cmd(s, b"stats-tube t\r\n"):
            assert time.monotonic() < deadline, "the reserves never blocked"
            time.sleep(0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_reserves_get_released_jobs_in_arrival_order(kind: str) -> None:
    _only_geanstalk(kind, "waiters")
    with make_server(kind).start() as server:
        producer, holder = server.connect(), server.connect()
        _cmd(producer, b"use t\r\n")
        _cmd(holder, b"watch t\r\nignore default\r\n", 2)
        for n, body in enumerate((b"c", b"b", b"a"), start=1):
            holder.sendall(b"reserve\r\n")
            _wait_until_waiting(server, 1)
            assert _cmd(producer, b"put 0 0 60 1\r\n%s\r\n" % body) == b"INSERTED %d\r\n" % n
            assert recv_until(holder, 1) == b"RESERVED %d 1\r\n%s\r\n" % (n, body)
        w1, w2 = server.connect(), server.connect()
        for i, w in enumerate((w1, w2), start=1):
            _cmd(w, b"watch t\r\nignore default\r\n", 2)
            w.sendall(b"reserve\r\n")
            _wait_until_waiting(server, i)
        holder.close()
        # Jobs come back in the holder's order (1, 2, 3); 1.12 gives w1 job 2, w2 job 1.
        assert recv_until(w1, 1) == b"RESERVED 1 1\r\nc\r\n"
        assert recv_until(w2, 1) == b"RESERVED 2 1\r\nb\r\n"
        for s in (producer, w1, w2):
            s.close()


def _restart_with_log(kind: str, directory: str, setup: bytes, replies: int) -> ServerProcess:
    server = make_server(kind, "-b", directory).start()
    with server.connect() as s:
        _cmd(s, setup, replies)
    server.kill()
    return make_server(kind, "-b", directory).start()


@pytest.mark.parametrize("kind", KINDS)
def test_a_buried_jobs_buries_count_survives_a_restart_unchanged(kind: str, tmp_path) -> None:
    _only_geanstalk(kind, "buries")
    setup = b"put 0 0 60 1\r\nA\r\nreserve-job 1\r\nbury 1 0\r\n"
    with _restart_with_log(kind, str(tmp_path), setup, 3) as server, server.connect() as s:
        assert b"\nburies: 1\n" in _cmd(s, b"stats-job 1\r\n")


@pytest.mark.parametrize("kind", KINDS)
def test_buried_jobs_keep_their_order_across_a_restart(kind: str, tmp_path) -> None:
    _only_geanstalk(kind, "buried_order")
    setup = (
        b"put 0 0 60 1\r\nA\r\nput 0 0 60 1\r\nB\r\n"
        b"reserve-job 2\r\nbury 2 0\r\nreserve-job 1\r\nbury 1 0\r\n"
    )
    with _restart_with_log(kind, str(tmp_path), setup, 6) as server, server.connect() as s:
        # B was buried first, so it is kicked first; 1.12 kicks A (replay order).
        assert _cmd(s, b"kick 1\r\npeek-ready\r\n", 2) == b"KICKED 1\r\nFOUND 2 1\r\nB\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_list_tubes_after_a_restart_follows_the_live_jobs(kind: str, tmp_path) -> None:
    _only_geanstalk(kind, "tube_order")
    setup = (
        b"use t\r\nput 0 0 60 1\r\nT\r\n"
        b"use x\r\nput 0 0 60 1\r\nX\r\nuse y\r\nput 0 0 60 1\r\nY\r\n"
        b"use z\r\nput 0 0 60 1\r\nZ\r\ndelete 2\r\nuse default\r\n"
    )
    with _restart_with_log(kind, str(tmp_path), setup, 10) as server, server.connect() as s:
        # Before the restart both servers list default, t, z, y (x went by
        # swap-removal); after it 1.12 still does, geanstalk lists its log's order.
        reply = _cmd(s, b"list-tubes\r\n")
        assert reply.split(b"\r\n", 1)[1] == b"---\n- default\n- t\n- y\n- z\n\r\n"
