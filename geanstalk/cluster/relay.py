"""A standby passes each beanstalk client connection to the leader, byte for byte.

Why a relay and not a redirect: the beanstalk protocol has no redirect, and
clients with a single address (most of them) must work against any node.
The relay does not parse the protocol: every reply still comes from the
leader, so a relayed client sees exactly what a direct one sees.

Bounds: each direction stops reading from its source once the other side's
write buffer passes ``high_water`` (asyncio's pause_writing/resume_writing),
so a fast producer or a slow reader holds at most about ``high_water`` plus
one read in the relay, whatever it sends. A client's half-close reaches the
leader as a half-close (the leader answers what it has, then closes), and
the leader's close or half-close reaches the client the same way.

Leadership: the relay asks ``leader_address()`` (the node owns the watch of
the leader key) for every new connection, and the node calls ``refresh()``
when the leader changes: connections relayed to any other address are
closed, as a leader's own connections drop when it dies, so clients
reconnect as they do after a beanstalkd restart. A connection whose leader
connection dies is closed too. While no leader is known a new client waits
(bounded by ``leader_wait``) and is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger("geanstalk.cluster.relay")

Address = tuple[str, int]
LeaderAddress = Callable[[], "Address | None"]

DEFAULT_HIGH_WATER = 256 * 1024
CONNECT_TIMEOUT = 5.0
LEADER_WAIT = 5.0
# A closing connection flushes what it holds; past this it is aborted.
CLOSE_GRACE = 5.0
_LEADER_POLL = 0.05


def parse_advertise(text: str) -> Address:
    """``host:port`` (``[v6]:port`` too) as the leader key carries it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"advertise address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class Relay:
    """The relayed connections of one standby; see the module docstring."""

    def __init__(
        self,
        leader_address: LeaderAddress,
        *,
        own_address: Address | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
        connect_timeout: float = CONNECT_TIMEOUT,
        leader_wait: float = LEADER_WAIT,
        close_grace: float = CLOSE_GRACE,
    ) -> None:
        self.leader_address = leader_address
        # A node never relays to itself (a stale leader key naming this node).
        self.own_address = own_address
        self.high_water = high_water
        self.connect_timeout = connect_timeout
        self.leader_wait = leader_wait
        self.close_grace = close_grace
        self.connections: set[RelayedConnection] = set()
        self.accepted = 0
        self.closed = False

    def protocol(self) -> RelayedConnection:
        """A protocol for one accepted client connection (a listener's factory)."""
        return RelayedConnection(self)

    def current_leader(self) -> Address | None:
        address = self.leader_address()
        if address is None or address == self.own_address:
            return None
        return address

    async def wait_leader(self) -> Address | None:
        """The leader's address, waiting up to leader_wait while none is known."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.leader_wait
        while not self.closed:
            address = self.current_leader()
            if address is not None:
                return address
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(_LEADER_POLL)
        return None

    def refresh(self) -> int:
        """Close the connections relayed to anyone but the current leader; how many."""
        leader = self.current_leader()
        stale = [
            c
            for c in self.connections
            if c.leader is not None and c.leader != leader and not c.closing
        ]
        for conn in stale:
            conn.close()
        if stale:
            log.info("leader is now %s: closed %d relayed connections", leader, len(stale))
        return len(stale)

    def close_all(self) -> None:
        """Stop relaying: every connection closes (this node leads, or stops)."""
        for conn in list(self.connections):
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.close_all()


class RelayedConnection(asyncio.Protocol):
    """One client connection and, once it is made, its connection to the leader."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.leader: Address | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._client_eof = False
        self._upstream_eof = False
        self._closed = False
        self._client_lost = False
        self._upstream_lost = False
        self._connecting: asyncio.Task[None] | None = None
        self._abort_handle: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """Closed, or closing: its transports may still be flushing."""
        return self._closed

    # --- the client's side ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        transport = cast(asyncio.Transport, transport)
        self.client = transport
        relay = self.relay
        if relay.closed:
            transport.abort()
            return
        relay.connections.add(self)
        relay.accepted += 1
        transport.set_write_buffer_limits(high=relay.high_water)
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            return
        if self._closed:
            return
        # Not connected to the leader yet: hold a bounded amount.
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.relay.high_water:
            _pause(self.client)

    def eof_received(self) -> bool:
        self._client_eof = True
        upstream = self.upstream
        if upstream is not None:
            _write_eof(upstream)
        if self._upstream_eof:
            self.close()
        # Keep the transport open: the leader's replies still have to come back.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_lost = True
        self.close()
        self._forget_if_done()

    def pause_writing(self) -> None:
        # The client reads its replies slower than the leader sends them.
        _pause(self.upstream)

    def resume_writing(self) -> None:
        _resume(self.upstream)

    # --- the leader's side --------------------------------------------------------

    async def _connect(self) -> None:
        relay = self.relay
        leader = await relay.wait_leader()
        if self._closed:
            return
        if leader is None:
            log.info("no leader known after %.1fs: closing a relayed client", relay.leader_wait)
            self.close()
            return
        self.leader = leader
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _Upstream(self), leader[0], leader[1]),
                relay.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("cannot reach the leader at %s:%d: %s", leader[0], leader[1], exc)
            self.close()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.abort()
            return
        self.upstream = transport
        transport.set_write_buffer_limits(high=self.relay.high_water)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending, self._pending = self._pending, []
        self._pending_size = 0
        if pending:
            transport.write(b"".join(pending))
        if self._client_eof:
            _write_eof(transport)
        else:
            _resume(self.client)
        # A leader change while we were connecting: this leader may be stale.
        if self.leader != self.relay.current_leader():
            self.close()

    def upstream_data(self, data: bytes) -> None:
        client = self.client
        if client is not None and not self._closed:
            client.write(data)

    def upstream_eof(self) -> None:
        self._upstream_eof = True
        if self.client is not None:
            _write_eof(self.client)
        if self._client_eof:
            self.close()

    def upstream_lost(self) -> None:
        # The leader closed, died or was closed: nothing more will come.
        self._upstream_lost = True
        self.close()
        self._forget_if_done()

    # --- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Close both sides; what is buffered is flushed for up to close_grace."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        task = self._connecting
        if task is not None and not task.done():
            task.cancel()
        live = False
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                transport.close()
                live = True
        if live:
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(self.relay.close_grace, self._abort)

    def _abort(self) -> None:
        self._abort_handle = None
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()
        self.relay.connections.discard(self)

    def _forget_if_done(self) -> None:
        if self._client_lost and (self.upstream is None or self._upstream_lost):
            if self._abort_handle is not None:
                self._abort_handle.cancel()
                self._abort_handle = None
            self.relay.connections.discard(self)


class _Upstream(asyncio.Protocol):
    """The connection to the leader; it forwards every event to its RelayedConnection."""

    def __init__(self, conn: RelayedConnection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.upstream_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.conn.upstream_data(data)

    def eof_received(self) -> bool:
        self.conn.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost()

    def pause_writing(self) -> None:
        # The leader takes the client's bytes slower than the client sends them.
        _pause(self.conn.client)

    def resume_writing(self) -> None:
        _resume(self.conn.client)


def _pause(transport: Any) -> None:
    if transport is not None and not transport.is_closing():
        transport.pause_reading()


def _resume(transport: Any) -> None:
    if transport is not None and not transport.is_closing():
        transport.resume_reading()


def _write_eof(transport: asyncio.Transport) -> None:
    if transport.is_closing():
        return
    if transport.can_write_eof():
        transport.write_eof()
    else:
        transport.close()
