"""accept.Listener on both event loops, in-process over real sockets: the
transports it makes are those the loop's own server would make (TCP_NODELAY
on, unix sockets too), and close() stops accepting."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from geanstalk.config import ServerConfig
from geanstalk.runner import Runner


def _run(loop_kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())


LOOPS = pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line)
    return await reader.readline()


@LOOPS
def test_tcp_connections_have_nodelay_and_are_served(loop_kind: str) -> None:
    async def main() -> None:
        sock = socket.socket()  # proto 0, as many embedders make them
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        runner = Runner(ServerConfig(), [sock], install_signals=False)
        await runner.start()
        try:
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            assert await _ask(reader, writer, b"list-tube-used\r\n") == b"USING default\r\n"
            (conn,) = runner.server.connections  # type: ignore[union-attr]
            s = conn.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert conn.peer.startswith("('127.0.0.1', ")
            writer.close()
        finally:
            await runner.stop()

    _run(loop_kind, main)


@LOOPS
def test_unix_socket_connections_are_served(loop_kind: str) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "g.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(16)
            runner = Runner(ServerConfig(), [sock], install_signals=False)
            await runner.start()
            try:
                reader, writer = await asyncio.open_unix_connection(path)
                assert await _ask(reader, writer, b"use u\r\n") == b"USING u\r\n"
                (conn,) = runner.server.connections  # type: ignore[union-attr]
                assert conn.peer == "unix"
                writer.close()
            finally:
                await runner.stop()

    _run(loop_kind, main)


@LOOPS
def test_a_closed_listener_accepts_nothing_more(loop_kind: str) -> None:
    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        address = sock.getsockname()
        runner = Runner(ServerConfig(), [sock], install_signals=False)
        await runner.start()
        try:
            (listener,) = runner.listeners
            assert listener.is_serving()
            listener.close()
            assert not listener.is_serving() and listener.sockets == ()
            with pytest.raises(OSError):
                await asyncio.open_connection(*address)
        finally:
            await runner.stop()

    _run(loop_kind, main)
