"""Fuzz: the protocol layer never raises, and how input is split never matters.

Arbitrary bytes (and byte soup made of real command fragments) are fed to a
Connection whole and in arbitrary pieces, each time on a fresh server with a
frozen clock; then other clients put jobs, which wakes a reserve that
blocked and lets the input queued behind it run. The reply streams must be
identical and nothing may escape.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_harness import Harness

FRAGMENTS = [
    b"put 0 0 60 3\r\nabc\r\n",
    b"put 1 0 1 2\r\n",
    b"put 0 0 1 70000\r\n",
    b"reserve-with-timeout 0\r\n",
    b"reserve\r\n",
    b"reserve-job 1\r\n",
    b"delete 1\r\n",
    b"release 1 0 0\r\n",
    b"bury 1 0\r\n",
    b"kick 3\r\n",
    b"kick-job 1\r\n",
    b"touch 1\r\n",
    b"peek 1\r\n",
    b"peek-ready\r\n",
    b"peek-buried\r\n",
    b"stats-job 1\r\n",
    b"stats-tube default\r\n",
    b"use t\r\n",
    b"watch t\r\n",
    b"ignore default\r\n",
    b"list-tubes\r\n",
    b"list-tubes-watched\r\n",
    b"list-tube-used\r\n",
    b"pause-tube t 0\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b" ",
    b"x" * 230,
    b"quit\r\n",
]

soup = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=25).map(
    b"".join
)


def run(data: bytes, cuts: list[int]) -> tuple[bytes, bool]:
    h = Harness()
    try:
        conn, transport = h.connect()
        h.server.stats_doc = lambda: b"---\nfrozen: 1\n"  # type: ignore[method-assign]
        last = 0
        for cut in [*sorted(set(cuts)), len(data)]:
            if transport.closed:
                break
            conn.data_received(data[last:cut])
            last = cut
        h.run_callbacks()
        # Another client's puts wake a blocked reserve; the rest then runs.
        for _ in range(3):
            producer, _ = h.connect()
            producer.data_received(b"put 0 0 60 1\r\np\r\nquit\r\n")
            h.run_callbacks()
        return bytes(transport.sent), transport.closed
    finally:
        h.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=soup, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_reply_stream_does_not_depend_on_the_split(data: bytes, cuts: list[int]) -> None:
    cuts = [c for c in cuts if c <= len(data)]
    assert run(data, cuts) == run(data, [])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_out_of_the_protocol(data: bytes) -> None:
    out, _ = run(data, list(range(0, len(data), 7)))
    assert b"INTERNAL_ERROR" not in out


def test_every_byte_split_of_a_session_gives_the_same_replies() -> None:
    session = b"".join(FRAGMENTS[:-1])
    whole = run(session, [])
    assert whole[0].startswith(b"INSERTED 1\r\n")
    assert run(session, list(range(len(session)))) == whole


def test_every_two_piece_split_of_a_session_gives_the_same_replies() -> None:
    """One cut anywhere: a body finished by a read that carries more commands
    is completed from the head of that read and the rest parsed in place."""
    session = b"".join(FRAGMENTS[:-1])
    whole = run(session, [])
    for cut in range(len(session)):
        assert run(session, [cut]) == whole, cut


def test_big_bodies_split_anywhere_give_the_same_replies() -> None:
    big = b"y" * 5000
    session = (
        b"put 0 0 60 5000\r\n" + big + b"\r\n"
        b"put 0 0 60 5000\r\n" + big + b"XX"  # EXPECTED_CRLF, then the rest parses on
        b"put 0 0 60 4\r\nabcd\r\n"
        b"reserve-with-timeout 0\r\ndelete 1\r\nreserve-with-timeout 0\r\n"
    )
    whole = run(session, [])
    assert whole[0].count(b"INSERTED") == 2 and b"EXPECTED_CRLF" in whole[0]
    for cut in [*range(0, len(session), 61), *range(5015, 5025), *range(10030, 10045)]:
        assert run(session, [cut]) == whole, cut
        assert run(session, [cut, cut + 4999]) == whole, cut
