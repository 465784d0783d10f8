"""A TLS client sending one byte at a time costs the server at most one line
buffer, before auth and after (the plain listener's bound, kept over TLS).

Runs the Runner in-process so the test can look at what a connection holds;
the bytes still go over a real socket, one TLS record per byte.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from geanstalk import tls
from geanstalk.auth import AUTH_LINE_MAX, AuthGate
from geanstalk.config import ServerConfig
from geanstalk.protocol import LINE_MAX
from geanstalk.runner import Runner
from tests.tls.conftest import tokens_file

HELD: dict[str, int] = {"gate": 0, "connection": 0}


class RecordingGate(AuthGate):
    __slots__ = ()

    def feed(self, data: bytes) -> tuple[bool | None, bytes]:
        verdict, rest = super().feed(data)
        HELD["gate"] = max(HELD["gate"], len(self._buf))
        return verdict, rest


class RecordingConnection(tls.TLSConnection):
    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        HELD["connection"] = max(HELD["connection"], len(self._buf))


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for i in range(len(data)):
        writer.write(data[i : i + 1])  # one TLS record per byte
        await writer.drain()
        if i % 8 == 0:
            await asyncio.sleep(0)


def test_one_byte_at_a_time_over_tls_holds_at_most_a_line(pki, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tls, "AuthGate", RecordingGate)
    monkeypatch.setattr(tls, "TLSConnection", RecordingConnection)
    tokens = tokens_file(tmp_path, "a-token\n")
    config = ServerConfig(
        tls_listen=["127.0.0.1:0"],
        tls_cert=pki.server_pem,
        tls_key=pki.server_pem,
        auth_tokens=tokens,
        plain=False,
    )

    async def scenario() -> bytes:
        runner = Runner(config, [], install_signals=False)
        await runner.start()
        try:
            host, port = runner.tls.listeners[0].address[:2]
            ctx = ssl.create_default_context(cafile=pki.ca_pem)
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname="127.0.0.1"
            )
            await trickle(writer, b"auth a-token\r\n")
            assert await reader.readline() == b"AUTHENTICATED\r\n"
            await trickle(writer, b"x" * 3000)  # a line that never ends
            writer.write(b"\r\nlist-tube-used\r\n")
            reply = await reader.readline() + await reader.readline()
            writer.close()
            return reply
        finally:
            await runner.stop()

    reply = asyncio.run(scenario())
    assert reply == b"BAD_FORMAT\r\nUSING default\r\n"
    assert 0 < HELD["gate"] <= AUTH_LINE_MAX
    assert 0 < HELD["connection"] <= LINE_MAX


@pytest.fixture(autouse=True)
def _reset() -> None:
    HELD.update(gate=0, connection=0)
