"""Slow clients over TLS: the accept path's TLS hand-over keeps the same
bounds as plain connections (one line window of input for a client that
trickles bytes; a client that never reads its replies is cut off at the
output cap). In-process Runner, real sockets, a certificate made by the
openssl command for the test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from geanstalk.config import ServerConfig
from geanstalk.protocol import LINE_MAX
from geanstalk.runner import Runner
from tests.server.test_bounds import _Recording

T = TypeVar("T")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not on PATH")


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    d: Path = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            str(OPENSSL), "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return server, client


LOOPS = pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])


def _run(loop_kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())


async def _tls_runner(
    server_ctx: ssl.SSLContext, cfg: ServerConfig
) -> tuple[Runner, tuple[str, int]]:
    runner = Runner(cfg, [], install_signals=False, connection_factory=_Recording)
    await runner.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    await runner.add_listener(sock, ssl=server_ctx, ssl_handshake_timeout=10.0)
    return runner, sock.getsockname()


@LOOPS
def test_a_tls_client_trickling_bytes_costs_at_most_one_line_buffer(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], loop_kind: str
) -> None:
    server_ctx, client_ctx = contexts

    async def scenario() -> tuple[int, bytes]:
        runner, address = await _tls_runner(server_ctx, ServerConfig())
        try:
            reader, writer = await asyncio.open_connection(*address, ssl=client_ctx)
            for _ in range(3000):  # a line that never ends, one byte per TLS record
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0)
            writer.write(b"\r\nlist-tube-used\r\n")
            reply = await reader.readline() + await reader.readline()
            (conn,) = runner.server.connections  # type: ignore[union-attr]
            writer.close()
            return conn.most_held, reply  # type: ignore[attr-defined]
        finally:
            await runner.stop()

    most, reply = _run(loop_kind, scenario)
    assert reply == b"BAD_FORMAT\r\nUSING default\r\n"
    assert 0 < most <= LINE_MAX, most


@LOOPS
def test_a_tls_client_that_does_not_read_is_cut_off_at_the_output_cap(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    loop_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_ctx, client_ctx = contexts

    async def scenario() -> tuple[int, int]:
        cfg = ServerConfig(output_cap=256 * 1024)
        runner, address = await _tls_runner(server_ctx, cfg)
        try:
            raw = socket.create_connection(address)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader, writer = await asyncio.open_connection(
                sock=raw, ssl=client_ctx, server_hostname="127.0.0.1"
            )
            body = b"y" * 60000
            writer.write(b"put 0 0 100 %d\r\n%b\r\n" % (len(body), body))
            assert await reader.readline() == b"INSERTED 1\r\n"
            # The client now stops reading: 2000 peeks are 120 MB of replies.
            reader._transport.pause_reading()  # type: ignore[attr-defined]
            writer.write(b"peek 1\r\n" * 2000)
            server = runner.server
            assert server is not None
            for _ in range(1000):
                if not server.connections:
                    break
                await asyncio.sleep(0.02)
            left = len(server.connections)
            writer.close()
            return left, server.stats.total_connections if hasattr(
                server.stats, "total_connections"
            ) else 1
        finally:
            await runner.stop()

    left, _ = asyncio.run(scenario())
    assert left == 0
