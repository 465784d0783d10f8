"""State transitions and their counters, driven in process with a hand-moved clock."""

from __future__ import annotations

import pytest
from server_harness import Harness, talk

from geanstalk.core import BURIED, DELAYED, READY, RESERVED
from geanstalk.errors import NotFound, NotIgnored


def counts(h: Harness) -> tuple[int, int, int, int, int]:
    s = h.server.storage
    return s.ready_ct, s.reserved_ct, s.delayed_ct, s.buried_ct, s.urgent_ct


def test_put_reserve_release_bury_kick_delete_keep_counters(harness: Harness) -> None:
    c, t = harness.connect()
    assert talk(c, t, b"put 1 0 60 1\r\na\r\nput 2000 0 60 1\r\nb\r\n") == (
        b"INSERTED 1\r\nINSERTED 2\r\n"
    )
    assert counts(harness) == (2, 0, 0, 0, 1)
    assert talk(c, t, b"reserve\r\n") == b"RESERVED 1 1\r\na\r\n"
    assert counts(harness) == (1, 1, 0, 0, 0)
    assert talk(c, t, b"release 1 5 10\r\n") == b"RELEASED\r\n"
    assert counts(harness) == (1, 0, 1, 0, 0)
    job = harness.server.storage.jobs[1]
    assert (job.state, job.priority, job.delay, job.releases) == (DELAYED, 5, 10, 1)
    assert talk(c, t, b"kick 10\r\n") == b"KICKED 1\r\n"
    assert (job.state, job.kicks) == (READY, 1)
    assert talk(c, t, b"reserve\r\nbury 1 7\r\n") == b"RESERVED 1 1\r\na\r\nBURIED\r\n"
    assert counts(harness) == (1, 0, 0, 1, 0)
    assert (job.state, job.priority, job.buries) == (BURIED, 7, 1)
    assert talk(c, t, b"kick-job 1\r\ndelete 1\r\ndelete 2\r\n") == (
        b"KICKED\r\nDELETED\r\nDELETED\r\n"
    )
    assert counts(harness) == (0, 0, 0, 0, 0)
    assert harness.server.storage.jobs == {}


def test_delay_expiry_is_driven_by_the_timer(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 5 60 1\r\nx\r\n")
    job = harness.server.storage.jobs[1]
    assert job.state == DELAYED
    assert harness.server.timers.armed_at == pytest.approx(harness.clock.now + 5)
    harness.advance(4.9)
    assert job.state == DELAYED
    harness.advance(0.2)
    assert job.state == READY
    assert harness.server.timers.armed_at == float("inf")


def test_ttr_expiry_needs_the_deadline_strictly_passed(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 0 2 1\r\nx\r\nreserve\r\n")
    job = harness.server.storage.jobs[1]
    harness.advance(2.0)
    assert job.state == RESERVED  # exactly at the deadline: not yet
    harness.advance(0.001)
    assert (job.state, job.timeouts, harness.server.storage.timeouts) == (READY, 1, 1)
    assert c.client.reserved == {}


def test_touch_moves_the_deadline(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 0 3 1\r\nx\r\nreserve\r\n")
    harness.advance(2.5)
    assert talk(c, t, b"touch 1\r\n") == b"TOUCHED\r\n"
    harness.advance(2.5)
    assert harness.server.storage.jobs[1].state == RESERVED
    harness.advance(1.0)
    assert harness.server.storage.jobs[1].state == READY


def test_blocked_reserve_gets_deadline_soon_one_second_before_ttr(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 0 5 1\r\nx\r\nreserve\r\n")
    assert talk(c, t, b"reserve\r\n") == b""
    harness.advance(3.9)
    assert t.take() == b""
    harness.advance(0.2)
    assert t.take() == b"DEADLINE_SOON\r\n"
    # A reserve inside the margin answers at once.
    assert talk(c, t, b"reserve\r\n") == b"DEADLINE_SOON\r\n"


def test_reserve_with_timeout_times_out_on_the_clock(harness: Harness) -> None:
    c, t = harness.connect()
    assert talk(c, t, b"reserve-with-timeout 2\r\nlist-tube-used\r\n") == b""
    harness.advance(1.9)
    assert t.take() == b""
    harness.advance(0.2)
    # The command queued behind the blocked reserve runs once it is answered.
    assert t.take() == b"TIMED_OUT\r\nUSING default\r\n"


def test_waiters_are_served_in_arrival_order(harness: Harness) -> None:
    conns = [harness.connect() for _ in range(3)]
    for c, t in conns:
        assert talk(c, t, b"reserve\r\n") == b""
    p, pt = harness.connect()
    talk(p, pt, b"put 0 0 60 1\r\na\r\nput 0 0 60 1\r\nb\r\nput 0 0 60 1\r\nc\r\n")
    assert [t.take() for _, t in conns] == [
        b"RESERVED 1 1\r\na\r\n",
        b"RESERVED 2 1\r\nb\r\n",
        b"RESERVED 3 1\r\nc\r\n",
    ]
    assert harness.server.lock.waiting == 0


def test_pause_holds_reserves_until_it_ends(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 0 60 1\r\nx\r\npause-tube default 3\r\n")
    assert talk(c, t, b"reserve\r\n") == b""
    harness.advance(2.9)
    assert t.take() == b""
    harness.advance(0.2)
    assert t.take() == b"RESERVED 1 1\r\nx\r\n"


def test_disconnect_releases_reservations_and_wakes_a_waiter(harness: Harness) -> None:
    a, at = harness.connect()
    b, bt = harness.connect()
    talk(a, at, b"put 0 0 60 1\r\nx\r\nreserve\r\n")
    assert talk(b, bt, b"reserve\r\n") == b""
    a.connection_lost(None)
    assert bt.take() == b"RESERVED 1 1\r\nx\r\n"
    assert harness.server.storage.jobs[1].reserves == 2


def test_tube_disappears_when_unused_and_default_never(harness: Harness) -> None:
    s = harness.server.storage
    c, t = harness.connect()
    talk(c, t, b"use a\r\nwatch b\r\nput 0 0 60 1\r\nx\r\n")
    assert [x.name for x in s.tube_list] == [b"default", b"a", b"b"]
    talk(c, t, b"use default\r\nignore b\r\n")
    assert set(s.tubes) == {b"default", b"a"}  # a still holds a job
    talk(c, t, b"delete 1\r\n")
    assert set(s.tubes) == {b"default"}
    c.connection_lost(None)
    assert set(s.tubes) == {b"default"}


def test_tube_list_order_is_the_references_swap_remove(harness: Harness) -> None:
    s = harness.server.storage
    c, t = harness.connect()
    talk(c, t, b"watch a\r\nwatch b\r\nwatch c\r\nignore a\r\n")
    assert [x.name for x in s.tube_list] == [b"default", b"c", b"b"]
    assert [x.name for x in c.client.watch] == [b"default", b"c", b"b"]


def test_storage_errors_are_the_services_exceptions(harness: Harness) -> None:
    c, _ = harness.connect()
    s = harness.server.storage
    with pytest.raises(NotFound):
        s.delete(c.client, 99)
    with pytest.raises(NotIgnored):
        s.ignore(c.client, b"default")
    with pytest.raises(NotFound):
        s.pause_tube(b"nope", 1)


def test_restore_takes_wall_clock_times_and_continues_ids(harness: Harness) -> None:
    import time

    from geanstalk.core import Job

    ready = Job(7, 3, None, 60, b"r", 0, time.time() - 100)
    ready.state = READY
    ready.tube = b"t"
    delayed = Job(9, 3, time.time() + 30, 60, b"d", 40, time.time())
    delayed.state = DELAYED
    delayed.tube = b"t"
    buried = Job(8, 3, None, 60, b"b", 0, time.time())
    buried.state = BURIED
    buried.buries = 2
    buried.tube = b"t"
    harness.server.restore([ready, delayed, buried], 10)
    s = harness.server.storage
    assert s.next_id == 10
    assert counts(harness) == (1, 0, 1, 1, 1)
    assert buried.buries == 2
    assert s.tubes[b"t"].buried[8] is buried
    assert 99 <= harness.clock.now - ready.created_at <= 101
    assert 29 <= delayed.runnable_at - harness.clock.now <= 31
    assert harness.server.timers.armed_at == delayed.runnable_at
