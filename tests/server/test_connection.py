"""Connection behaviour in process: the reply gate, half-close, quit, limits."""

from __future__ import annotations

from collections.abc import Callable

from server_harness import Harness, talk

from geanstalk.core import Job


class LaggingJournal:
    """A journal whose records become durable only when the test says so."""

    def __init__(self) -> None:
        self.seq = 0
        self.synced = 0
        self.waiters: list[tuple[int, Callable[[], None]]] = []
        self.records: list[tuple[str, int]] = []

    def _append(self, kind: str, job: Job) -> None:
        self.seq += 1
        self.records.append((kind, job.id))

    def put(self, job: Job) -> None:
        self._append("put", job)

    def update(self, job: Job) -> None:
        self._append("update", job)

    def delete(self, job: Job) -> None:
        self._append("delete", job)

    def pending(self) -> int:
        return self.seq

    def durable(self) -> int:
        return self.synced

    def wait_durable(self, seq: int, callback: Callable[[], None]) -> None:
        self.waiters.append((seq, callback))

    def sync(self) -> None:
        self.synced = self.seq
        ready = [cb for seq, cb in self.waiters if seq <= self.synced]
        self.waiters = [(s, cb) for s, cb in self.waiters if s > self.synced]
        for cb in ready:
            cb()

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        self.sync()


def test_replies_wait_for_the_journal_and_keep_their_order() -> None:
    journal = LaggingJournal()
    h = Harness(journal=journal)
    try:
        c, t = h.connect()
        assert talk(c, t, b"put 0 0 60 1\r\na\r\n") == b""
        assert journal.records == [("put", 1)]
        # A later reply that journals nothing still queues behind the held one.
        assert talk(c, t, b"list-tube-used\r\n") == b""
        journal.sync()
        assert t.take() == b"INSERTED 1\r\nUSING default\r\n"
        # Nothing pending: replies go straight out.
        assert talk(c, t, b"list-tube-used\r\n") == b"USING default\r\n"
        # What is not journaled (reserve, touch, plain release) is not held.
        assert talk(c, t, b"reserve\r\ntouch 1\r\nrelease 1 0 0\r\n") == (
            b"RESERVED 1 1\r\na\r\nTOUCHED\r\nRELEASED\r\n"
        )
        assert journal.records == [("put", 1)]
        # A batch's replies leave together, once its last record is durable.
        assert talk(c, t, b"reserve\r\nbury 1 0\r\n") == b""
        assert journal.records[-1] == ("update", 1)
        journal.sync()
        assert t.take() == b"RESERVED 1 1\r\na\r\nBURIED\r\n"
    finally:
        h.close()


def test_a_job_handed_to_a_waiter_is_not_revealed_before_it_is_durable() -> None:
    journal = LaggingJournal()
    h = Harness(journal=journal)
    try:
        w, wt = h.connect()
        assert talk(w, wt, b"reserve\r\n") == b""
        p, pt = h.connect()
        talk(p, pt, b"put 0 0 60 1\r\na\r\n")
        assert (wt.take(), pt.take()) == (b"", b"")
        journal.sync()
        assert (wt.take(), pt.take()) == (b"RESERVED 1 1\r\na\r\n", b"INSERTED 1\r\n")
    finally:
        h.close()


def test_half_close_while_blocked_answers_then_runs_the_rest_then_closes(
    harness: Harness,
) -> None:
    c, t = harness.connect()
    assert talk(c, t, b"reserve\r\nreserve\r\nlist-tube-used\r\n") == b""
    assert c.eof_received() is True
    harness.run_callbacks()
    assert t.take() == b"TIMED_OUT\r\nTIMED_OUT\r\nUSING default\r\n"
    assert t.closed


def test_half_close_with_nothing_pending_closes(harness: Harness) -> None:
    c, t = harness.connect()
    assert talk(c, t, b"list-tube-used\r\nlist-tu") == b"USING default\r\n"
    c.eof_received()
    assert t.closed


def test_quit_closes_after_earlier_replies_and_ignores_the_rest(harness: Harness) -> None:
    c, t = harness.connect()
    assert talk(c, t, b"list-tube-used\r\nquit\r\nlist-tube-used\r\n") == b"USING default\r\n"
    assert t.closed


def test_output_over_the_cap_disconnects_and_releases_reservations(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"put 0 0 60 1\r\na\r\nreserve\r\n")
    t.unsent = harness.server.output_cap + 1  # the peer stopped reading
    c.pause_writing()  # as a transport does once past its high-water mark
    talk(c, t, b"list-tube-used\r\n")
    assert t.aborted
    assert harness.server.storage.jobs[1].reserver is None
    assert harness.server.stats.cur_conns == 0


def test_input_behind_a_blocked_reserve_is_kept_across_chunks(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"reserve\r\n")
    for chunk in (b"list-tube", b"-used\r\nuse a", b"\r\n", b"list-tube-used\r\n"):
        c.data_received(chunk)
    p, pt = harness.connect()
    talk(p, pt, b"put 0 0 60 1\r\na\r\n")
    harness.run_callbacks()
    assert t.take() == b"RESERVED 1 1\r\na\r\nUSING default\r\nUSING a\r\nUSING a\r\n"


def test_input_behind_a_blocked_reserve_is_bounded(harness: Harness) -> None:
    c, t = harness.connect()
    talk(c, t, b"reserve\r\n")
    c.data_received(b"list-tube-used\r\n" * 5000)
    assert not t.reading
    p, pt = harness.connect()
    talk(p, pt, b"put 0 0 60 1\r\na\r\n")
    harness.run_callbacks()
    out = t.take()
    assert out.startswith(b"RESERVED 1 1\r\na\r\nUSING default\r\n")
    assert out.count(b"USING default\r\n") == 5000
    assert t.reading


def test_unexpected_error_answers_internal_error_and_the_connection_lives(
    harness: Harness,
) -> None:
    c, t = harness.connect()

    def broken(jid: int) -> None:
        raise RuntimeError("boom")

    harness.server.kick_job = broken  # type: ignore[method-assign]
    assert talk(c, t, b"kick-job 1\r\nlist-tube-used\r\n") == (
        b"INTERNAL_ERROR\r\nUSING default\r\n"
    )


def test_graceful_stop_sends_held_replies_then_closes() -> None:
    from geanstalk.runner import shutdown

    class Listener:
        closed = False

        def close(self) -> None:
            self.closed = True

    journal = LaggingJournal()
    h = Harness(journal=journal)
    try:
        c, t = h.connect()
        assert talk(c, t, b"put 0 0 60 1\r\na\r\n") == b""
        listener = Listener()
        h.loop.run_until_complete(shutdown(h.server, [listener]))
        assert listener.closed
        assert t.take() == b"INSERTED 1\r\n"
        assert t.closed
        assert h.server.connections == set()
        # Nothing a client sends after the stop began is executed.
        c.data_received(b"put 0 0 60 1\r\nb\r\n")
        assert journal.records == [("put", 1)]
    finally:
        h.close()
