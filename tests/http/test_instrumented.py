"""The instrumented connection answers exactly as the plain one: the same
random command streams, cut at random places, give the same bytes back; and
every command it ran is in its histograms."""

from __future__ import annotations

import asyncio
import random

import pytest
from test_exposition import Transport

from geanstalk.instrumented import OP_NAMES, connection_class, instrument_storage
from geanstalk.metrics import Instruments, build_registry
from geanstalk.protocol import Connection
from geanstalk.server import Server

COMMANDS = [
    b"put 0 0 60 5\r\nhello\r\n",
    b"put 2000 0 1 3\r\nabc\r\n",
    b"put 1 5 60 2\r\nhi\r\n",
    b"put 0 0 60 70000\r\n" + b"x" * 70000 + b"\r\n",  # JOB_TOO_BIG
    b"put 0 0 60 2\r\nhiya\r\n",  # EXPECTED_CRLF
    b"put x\r\n",
    b"reserve-with-timeout 0\r\n",
    b"reserve-job 3\r\n",
    b"delete 1\r\n",
    b"delete 999\r\n",
    b"release 2 10 0\r\n",
    b"bury 3 5\r\n",
    b"kick 2\r\n",
    b"kick-job 3\r\n",
    b"touch 2\r\n",
    b"peek 1\r\n",
    b"peek-ready\r\n",
    b"peek-delayed\r\n",
    b"peek-buried\r\n",
    b"stats-job 2\r\n",
    b"stats-tube default\r\n",
    b"stats-tube other\r\n",
    b"use other\r\n",
    b"use default\r\n",
    b"watch other\r\n",
    b"ignore other\r\n",
    b"ignore default\r\n",
    b"list-tubes\r\n",
    b"list-tube-used\r\n",
    b"list-tubes-watched\r\n",
    b"pause-tube other 0\r\n",
    b"reservex\r\n",
    b"frobnicate\r\n",
    b"use " + b"a" * 300 + b"\r\n",
    b"\r\n",
]


def _pair() -> tuple[Server, Connection, Transport, Server, Connection, Transport, Instruments]:
    loop = asyncio.new_event_loop()
    plain_server = Server(loop, clock=lambda: 1000.0)
    plain = Connection(plain_server)
    pt = Transport()
    plain.connection_made(pt)
    server = Server(loop, clock=lambda: 1000.0)
    ins = Instruments(OP_NAMES)
    build_registry(server, instruments=ins)
    instrument_storage(server, ins)
    timed = connection_class(ins)(server)
    tt = Transport()
    timed.connection_made(tt)
    return plain_server, plain, pt, server, timed, tt, ins


@pytest.mark.parametrize("seed", range(12))
def test_same_bytes_as_the_plain_connection(seed: int) -> None:
    rng = random.Random(seed)
    chosen = [rng.choice(COMMANDS) for _ in range(300)]
    stream = b"".join(chosen)
    cuts = sorted(rng.sample(range(1, len(stream)), 40))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    _, plain, pt, server, timed, tt, ins = _pair()
    for chunk in chunks:
        plain.data_received(chunk)
        timed.data_received(chunk)
    assert bytes(tt.sent) == bytes(pt.sent)
    assert len(pt.sent) > 1000
    # Every command line was timed, malformed ones too (which cmd-* leaves
    # out), but a put whose body was refused, which stored nothing.
    ops = server.stats.ops
    for op, hist in ins.commands.items():
        if OP_NAMES[op] == "put":
            puts = sum(1 for c in chosen if c.startswith(b"put "))
            assert hist.count == puts - bytes(tt.sent).count(b"EXPECTED_CRLF\r\n")
        elif OP_NAMES[op] != "quit":
            assert hist.count >= ops[op], OP_NAMES[op]


def test_the_plain_class_is_untouched() -> None:
    _, _, _, _, timed, _, _ = _pair()
    assert type(timed).data_received is not Connection.data_received
    assert type(timed).data_received.__code__ is Connection.data_received.__code__
    assert (
        Connection.data_received.__globals__["_SPACED"]
        is not type(timed).data_received.__globals__["_SPACED"]
    )
    assert not hasattr(Connection, "_put_started")
