"""Our own accept loop: back off when file descriptors run out, cap connections.

Why not ``loop.create_server``: neither event loop handles fd exhaustion
the way a server that must stay up needs.

- asyncio (CPython 3.11-3.13): on EMFILE each wake-up retries accept() up to
  the backlog count, hands every failure to the exception handler (a log
  record with a traceback each), then stops listening for a second
  (gh-151615).
- uvloop (libuv): on EMFILE libuv closes a spare descriptor it keeps, then
  accepts and at once closes every connection waiting in the backlog, so
  clients that arrive while fds are short are dropped rather than served a
  moment later; if the spare is gone the error reaches uvloop, which closes
  the listening server for good.

Here a wake-up accepts up to ACCEPT_BATCH connections (a connect storm is
taken a whole backlog per event-loop turn, so the backlog drains faster than
it fills); EMFILE, ENFILE, ENOBUFS or ENOMEM pause accepting for
BACKOFF_SECONDS: existing connections keep being served, waiting clients
stay in the backlog, and accepting resumes by itself. The pause is counted
and logged at most once a second.

``--max-connections``: a connection beyond the cap is accepted and closed at
once with a reset (SO_LINGER 0), rather than left in the backlog. Left
there, it would hold a backlog slot and keep the listening socket readable
(so the loop could not wait on it without spinning), and its client would
hang with no answer; a reset tells the client at once, frees the slot, and
leaves no TIME_WAIT state on the server. Refusals are counted and logged at
most once a second.

A listener hands each accepted socket to the loop's public
``connect_accepted_socket`` (with the TLS context and handshake timeout when
it has them), stepping that coroutine itself rather than wrapping it in a
Task: the CPU per accepted connection is what a connect storm is made of.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

from geanstalk.limits import BoundCounters, RateLimitedLog

log = logging.getLogger("geanstalk")

# Connections accepted per wake-up at most: as many as the listen backlog
# holds, so that one turn of the loop can empty a full backlog before the
# kernel starts dropping SYNs (each accept costs ~10 us, so existing
# connections wait at most ~10 ms for their turn during a storm).
ACCEPT_BATCH = 1024
BACKOFF_SECONDS = 0.1  # accepting pauses this long when fds run out
# accept() errors that mean "no resources now": pause instead of spinning.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LINGER_RESET = struct.pack("ii", 1, 0)


class _AcceptedSocket(socket.socket):
    """A socket.socket whose family and type read as plain ints.

    socket.socket turns them into enum members on every read, and the loop's
    connect_accepted_socket reads them three times: several microseconds
    per accepted connection, a large share of a connect storm's CPU.
    """

    __slots__ = ()
    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]


class _AcceptedFd:
    """An accepted descriptor as uvloop's connect_accepted_socket uses it.

    uvloop reads family, type and fileno(), hands the descriptor to libuv
    (which makes it non-blocking, sets TCP_NODELAY, and closes it with the
    transport), keeps this object while the transport lives, and calls its
    close() afterwards. A socket.socket would cost a microsecond more to
    make and a few dozen bytes more per connection, for nothing: only plain
    listeners on uvloop use this (the tests run every plain connection
    through it); TLS listeners and asyncio's loop get real sockets.
    """

    __slots__ = ("_fd", "family", "type")

    def __init__(self, family: int, type: int, proto: int, fd: int) -> None:
        self.family = family
        self.type = type
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        """The transport closed the descriptor already (libuv owns it)."""


def _step(coro: Coroutine[Any, Any, Any], listener: Listener | None, _fut: Any = None) -> None:
    """Run the connect coroutine to its next wait; done when it returns."""
    try:
        waited = coro.send(None)
    except StopIteration:
        if listener is not None:
            listener.pending -= 1
        return
    except (Exception, asyncio.CancelledError) as exc:
        # A TLS handshake that failed or timed out: the transport is closed.
        if listener is not None:
            listener.pending -= 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("connection not established: %r", exc)
        return
    if waited is None:  # a bare yield: go on at the next loop turn
        asyncio.get_running_loop().call_soon(_step, coro, listener)
    else:
        waited._asyncio_future_blocking = False
        waited.add_done_callback(lambda fut: _step(coro, listener, fut))


class Listener:
    """Accepts beanstalk connections on one listening socket.

    Stands in for the asyncio.Server that loop.create_server returns:
    close(), wait_closed(), is_serving(), sockets.

    ``admit()``, if given, is asked before each connection is handed on; False
    refuses it (--max-connections). ``ssl`` and ``ssl_handshake_timeout`` make
    it a TLS listener; ``pending`` counts the connections whose handshake has
    not finished yet (they are not in the server's connections until then),
    and ``max_pending``, if given, refuses a new one while that many are.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        admit: Callable[[], bool] | None = None,
        max_pending: int | None = None,
        counters: BoundCounters | None = None,
        batch: int = ACCEPT_BATCH,
        backoff: float = BACKOFF_SECONDS,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.ssl = ssl
        self.ssl_handshake_timeout = ssl_handshake_timeout
        self.admit = admit
        self.max_pending = max_pending
        self.counters = counters if counters is not None else BoundCounters()
        self.batch = batch
        self.backoff = backoff
        self.pending = 0
        self._serving = False
        self._closed = False
        self._paused: asyncio.TimerHandle | None = None
        self._fd = sock.fileno()
        self._family = sock.family
        self._type = sock.type
        # asyncio sets TCP_NODELAY on a transport's socket only if its proto
        # says TCP (the listening socket's may well say 0).
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._proto = socket.IPPROTO_TCP if inet else 0
        uvloop = type(loop).__module__.startswith("uvloop")
        self._wrap: Any = _AcceptedFd if uvloop and ssl is None else _AcceptedSocket
        self._refused_log = RateLimitedLog()
        self._pause_log = RateLimitedLog()
        sock.setblocking(False)

    # --- the asyncio.Server surface ----------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self.sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def is_serving(self) -> bool:
        return self._serving

    def start(self) -> None:
        if self._closed or self._serving:
            return
        self._serving = True
        self.loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        """Stop accepting and close the listening socket (connections stay)."""
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        elif self._serving:
            self.loop.remove_reader(self._fd)
        self._serving = False
        self.sock.close()

    async def wait_closed(self) -> None:
        return None

    async def start_serving(self) -> None:
        self.start()

    # --- accepting ------------------------------------------------------------------

    def _on_readable(self) -> None:
        accept = self.sock._accept  # type: ignore[attr-defined]
        admit = self.admit
        for _ in range(self.batch):
            try:
                fd, _addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    self._pause(exc)
                    return
                # ECONNABORTED, EPERM (a firewall), EPROTO ...: that one
                # connection is gone; the next may be fine.
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("accept(): %s", exc)
                continue
            if admit is not None and not admit():
                self._refuse(self._socket(fd), "--max-connections")
                continue
            if (
                self.ssl is not None
                and self.max_pending is not None
                and self.pending >= self.max_pending
            ):
                self._refuse(self._socket(fd), "--max-pending-handshakes")
                continue
            self._attach(self._wrap(self._family, self._type, self._proto, fd))

    def _socket(self, fd: int) -> socket.socket:
        return _AcceptedSocket(self._family, self._type, self._proto, fd)

    def _attach(self, conn: socket.socket) -> None:
        self.pending += 1
        try:
            if self.ssl is None:
                coro = self.loop.connect_accepted_socket(self.protocol_factory, conn)
            else:
                coro = self.loop.connect_accepted_socket(
                    self.protocol_factory,
                    conn,
                    ssl=self.ssl,
                    ssl_handshake_timeout=self.ssl_handshake_timeout,
                )
        except Exception:
            self.pending -= 1
            if isinstance(conn, _AcceptedFd):
                os.close(conn.fileno())
            else:
                conn.close()
            log.exception("cannot set up an accepted connection")
            return
        _step(coro, self)

    def _refuse(self, conn: socket.socket, why: str) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        conn.close()
        self.counters.connections_refused += 1
        self._refused_log.warning(
            "refused a connection (%s); %d refused so far",
            why,
            self.counters.connections_refused,
        )

    def _pause(self, exc: OSError) -> None:
        """Out of fds: stop watching the socket for a moment, then look again."""
        self.counters.accept_pauses += 1
        self._pause_log.warning(
            "accept(): %s; accepting paused for %d ms (%d pauses so far)",
            exc.strerror or exc,
            int(self.backoff * 1000),
            self.counters.accept_pauses,
        )
        self.loop.remove_reader(self._fd)
        self._paused = self.loop.call_later(self.backoff, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._closed:
            self.loop.add_reader(self._fd, self._on_readable)
