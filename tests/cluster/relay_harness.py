"""A relay running on its own event loop in a thread, listening on a loopback port.

The relay tests use plain geanstalk servers as "leaders": the relay only
needs an address to pass bytes to, and the cluster node drives the same
Relay through leader_address() and refresh().
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from geanstalk.cluster.relay import Address, Relay
from tests.servers import free_port

T = TypeVar("T")
# Which loop a RelayThread runs when not told: "uvloop" (if installed) or "asyncio".
DEFAULT_LOOP = "uvloop"


def new_event_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """uvloop (as `geanstalk serve` runs by default) where installed, else asyncio's."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class RelayThread:
    """Relay(leader_address=lambda: self.leader, ...) serving 127.0.0.1:port."""

    def __init__(
        self,
        leader: Address | None,
        client_sndbuf: int | None = None,
        loop: str | None = None,
        **relay_options: Any,
    ) -> None:
        self.leader = leader
        # A small kernel send buffer towards clients, so that a test's slow
        # reader fills the relay's own buffer instead of the kernel's.
        self.client_sndbuf = client_sndbuf
        self.port = free_port()
        self.loop = new_event_loop(loop or DEFAULT_LOOP)
        self.relay = Relay(lambda: self.leader, **relay_options)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._listener: asyncio.AbstractServer | None = None

    @property
    def address(self) -> Address:
        return ("127.0.0.1", self.port)

    def start(self) -> RelayThread:
        self._thread.start()

        async def listen() -> None:
            self._listener = await self.loop.create_server(self._protocol, "127.0.0.1", self.port)

        self.call(listen())
        return self

    def _protocol(self) -> asyncio.Protocol:
        protocol = self.relay.protocol()
        if self.client_sndbuf is not None:
            made = protocol.connection_made
            size = self.client_sndbuf

            def connection_made(transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                made(transport)

            protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the relay's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Call fn on the relay's loop (where its state lives); its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def go() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(go)
        return done.result(timeout)

    def set_leader(self, leader: Address | None) -> int:
        """What the node does when the leader key changes; connections closed."""
        self.leader = leader
        return self.run(self.relay.refresh)

    def stop(self) -> None:
        async def close() -> None:
            self.relay.close()
            if self._listener is not None:
                self._listener.close()
                await self._listener.wait_closed()
            for _ in range(100):
                if not self.relay.connections:
                    break
                await asyncio.sleep(0.01)

        if self._thread.is_alive():
            self.call(close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> RelayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
