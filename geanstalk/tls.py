"""TLS listeners: contexts, handshakes, reload on SIGHUP, and the auth gate.

Only the standard library's ssl does cryptography here. A TLS listener
accepts sockets itself and hands each one to the loop's
connect_accepted_socket with the current SSLContext, rather than giving
the context to create_server, for three reasons: a failed handshake comes
back as an exception this module can log with its reason (create_server
drops it silently); the number of handshakes in flight can be bounded by
simply not accepting while the bound is reached (the kernel's backlog holds
the rest); and a reload only has to swap the context that the next accept
will use, while established connections keep the one they were made with.

Nothing of the server's state exists for a TLS connection until its
handshake is done and, with ``--auth-tokens``, its first line carried a
right token: until then the connection is a TLSGate, which knows bytes and
nothing else. Only then is the connection built (TLSConnection, a
Connection with the one difference TLS needs), so it counts in ``stats``
from that moment on, and the plain listener's command path is untouched.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geanstalk.auth import (
    AUTHENTICATED,
    DEFAULT_AUTH_TIMEOUT,
    UNAUTHORIZED,
    AuthConfigError,
    AuthGate,
    TokenSet,
    load_tokens,
)
from geanstalk.protocol import Connection

if TYPE_CHECKING:
    import socket

    from geanstalk.server import Server

log = logging.getLogger("geanstalk")

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_PENDING_HANDSHAKES = 1024
# Accepting stops for this long (doubling up to the maximum) when the
# process is out of file descriptors, instead of spinning on the error.
ACCEPT_BACKOFF_MIN = 0.05
ACCEPT_BACKOFF_MAX = 1.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class TLSConfigError(Exception):
    """A certificate, key, CA or token file cannot be used (the message says why)."""


def make_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2 and 1.3 only; client certificates required with a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Renegotiation is a way to make a server redo expensive work at will.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except OSError as exc:
        raise TLSConfigError(f"cannot read certificate {cert} or key {key}: {exc}") from exc
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"certificate {cert} and key {key} are not a usable pair: {exc.reason or exc}"
        ) from exc
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except FileNotFoundError as exc:
            raise TLSConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"client CA file {client_ca} is not usable: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def describe_handshake_error(exc: BaseException) -> str:
    """Why a handshake failed, in words for the log (never raises)."""
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or ""
        library = getattr(exc, "library", None) or ""
        if reason:
            return f"{library}: {reason}" if library else str(reason)
        return str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc):
        return "handshake timed out"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "handshake timed out"
    if isinstance(exc, ConnectionResetError):
        return "peer closed the connection during the handshake"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def describe_name(name: Any) -> str:
    """An X.509 name from getpeercert() as "CN=...,O=..." (never raises)."""
    try:
        parts = []
        for rdn in name:
            for key, value in rdn:
                parts.append(f"{_SHORT.get(key, key)}={value}")
        return ",".join(parts)
    except (TypeError, ValueError):
        return repr(name)


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


class Credentials:
    """The files a TLS listener serves with, and their reload.

    ``context`` and ``tokens`` are read at every accept, so a successful
    reload applies to the next handshake; a failed one changes nothing.
    """

    def __init__(
        self,
        cert: str,
        key: str,
        client_ca: str | None = None,
        tokens_path: str | None = None,
    ) -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self.tokens_path = tokens_path
        self.context, self.tokens = self._load()
        self.reloads = 0
        self.failed_reloads = 0

    def _load(self) -> tuple[ssl.SSLContext, TokenSet | None]:
        context = make_context(self.cert, self.key, self.client_ca)
        tokens = None
        if self.tokens_path is not None:
            try:
                tokens = load_tokens(self.tokens_path)
            except AuthConfigError as exc:
                raise TLSConfigError(str(exc)) from exc
        return context, tokens

    def reload(self) -> bool:
        """SIGHUP: load every file again; all or nothing."""
        try:
            context, tokens = self._load()
        except TLSConfigError as exc:
            self.failed_reloads += 1
            log.error("tls: reload failed, still serving the previous files: %s", exc)
            return False
        self.context, self.tokens = context, tokens
        self.reloads += 1
        log.warning("tls: reloaded certificate %s%s", self.cert, self._extras())
        return True

    def _extras(self) -> str:
        extras = ""
        if self.client_ca is not None:
            extras += f", client CA {self.client_ca}"
        if self.tokens is not None:
            extras += f", {len(self.tokens)} tokens"
        return extras


class TLSConnection(Connection):
    """A Connection over TLS: the same commands, no half-close.

    TLS has no half-closed state: once the client's close_notify came the
    transport shuts down after flushing, whatever the protocol answers, and
    asyncio warns about a protocol that asks to stay open. So this one
    answers what the plain connection would, then lets the transport close.
    """

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class TLSGate(asyncio.Protocol):
    """A TLS connection before it is a Connection: handshake done, auth pending.

    Built by the listener at accept time (before the handshake); the loop
    calls connection_made once the handshake is done.
    """

    def __init__(self, listener: TLSListener) -> None:
        self.listener = listener
        self.transport: Any = None
        self.peer = "?"
        self._gate: AuthGate | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        listener = self.listener
        peer = transport.get_extra_info("peername")
        self.peer = str(peer) if peer else "?"
        if log.isEnabledFor(logging.INFO):
            self._log_session(transport)
        tokens = listener.credentials.tokens
        if tokens is None:
            self._hand_over(b"")
            return
        self._gate = AuthGate(tokens)
        listener.gates.add(self)
        self._timer = listener.loop.call_later(listener.auth_timeout, self._auth_timed_out)

    def _log_session(self, transport: Any) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else "?"
        cipher = transport.get_extra_info("cipher")
        cert = transport.get_extra_info("peercert")
        if cert:
            log.info(
                "tls %s: %s %s, client certificate subject %s, issuer %s",
                self.peer,
                version,
                cipher[0] if cipher else "?",
                describe_name(cert.get("subject", ())),
                describe_name(cert.get("issuer", ())),
            )
        else:
            log.info("tls %s: %s %s", self.peer, version, cipher[0] if cipher else "?")

    def data_received(self, data: bytes) -> None:
        gate = self._gate
        if self._done or gate is None:
            return
        verdict, rest = gate.feed(data)
        if verdict is None:
            return
        if verdict:
            self.transport.write(AUTHENTICATED)
            self._hand_over(rest)
        else:
            self._refuse("wrong token or no auth command first")

    def eof_received(self) -> bool:
        if not self._done:
            self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._finish()

    def _auth_timed_out(self) -> None:
        self._timer = None
        if not self._done:
            log.info("tls %s: no auth within %g s; closing", self.peer, self.listener.auth_timeout)
            self.listener.auth_timeouts += 1
            self._finish()
            self.transport.close()

    def _refuse(self, why: str) -> None:
        # The token is not logged, not even in part.
        log.info("tls %s: unauthorized (%s); closing", self.peer, why)
        self.listener.auth_refused += 1
        self._finish()
        self.transport.write(UNAUTHORIZED)
        self.transport.close()

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.gates.discard(self)
        self.listener.settled()

    def _hand_over(self, rest: bytes) -> None:
        """The connection is the server's from here on: build it, give it the
        transport and whatever followed the auth line."""
        self._finish()
        listener = self.listener
        conn = listener.make_connection(listener.server)
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        if rest:
            conn.data_received(rest)


class TLSListener:
    """Accepts on one listening socket and runs the TLS handshakes.

    At most ``max_pending`` connections are between accept and being a
    server connection (handshake, then auth with tokens) at any time;
    while that many are, this listener does not accept.
    """

    def __init__(
        self,
        sock: socket.socket,
        server: Server,
        credentials: Credentials,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
        max_pending: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        make_connection: Callable[[Server], Connection] = TLSConnection,
    ) -> None:
        if max_pending < 1:
            raise TLSConfigError("--max-pending-handshakes must be at least 1")
        self.sock = sock
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.credentials = credentials
        self.handshake_timeout = handshake_timeout
        self.auth_timeout = auth_timeout
        self.max_pending = max_pending
        self.make_connection = make_connection
        self.pending = 0
        self.gates: set[TLSGate] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        # Counters, for logs, tests and metrics.
        self.handshakes_done = 0
        self.handshakes_failed = 0
        self.auth_refused = 0
        self.auth_timeouts = 0
        self.limit_reached = 0
        self._slot_freed: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_limit_log = 0.0
        self._last_accept_error_log = 0.0

    @property
    def address(self) -> Any:
        return self.sock.getsockname()

    def start(self) -> None:
        self._task = self.loop.create_task(self._accept_loop())

    def close(self) -> None:
        """Stop accepting; drop handshakes and auth in progress (they are
        not the server's connections yet, so the graceful stop owes them nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for task in list(self.handshakes):
            task.cancel()
        for gate in list(self.gates):
            gate._finish()
            if gate.transport is not None:
                gate.transport.close()
        self.sock.close()

    async def wait_closed(self) -> None:
        tasks = [t for t in (self._task, *self.handshakes) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- accepting ---------------------------------------------------------------

    async def _accept_loop(self) -> None:
        loop = self.loop
        backoff = ACCEPT_BACKOFF_MIN
        while not self._closed:
            while self.pending >= self.max_pending:
                self._limit_hit()
                self._slot_freed.clear()
                await self._slot_freed.wait()
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._accept_error(exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                # Anything else (ECONNABORTED, a client gone before accept):
                # that connection only.
                continue
            backoff = ACCEPT_BACKOFF_MIN
            self.pending += 1
            task = loop.create_task(self._handshake(conn, addr))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    def _limit_hit(self) -> None:
        self.limit_reached += 1
        now = time.monotonic()
        if now - self._last_limit_log >= 1.0:
            self._last_limit_log = now
            log.warning(
                "tls: %d connections in handshake or auth (--max-pending-handshakes); "
                "not accepting until one finishes",
                self.pending,
            )

    def _accept_error(self, exc: OSError, backoff: float) -> None:
        now = time.monotonic()
        if now - self._last_accept_error_log >= 1.0:
            self._last_accept_error_log = now
            log.error("tls: accept failed: %s; retrying in %g s", exc.strerror, backoff)

    async def _handshake(self, sock: socket.socket, addr: Any) -> None:
        sock.setblocking(False)
        gate: TLSGate | None = None

        def factory() -> TLSGate:
            nonlocal gate
            gate = TLSGate(self)
            return gate

        try:
            await self.loop.connect_accepted_socket(
                factory,
                sock,
                ssl=self.credentials.context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except asyncio.CancelledError:
            self._failed(gate)
            raise
        except Exception as exc:
            self.handshakes_failed += 1
            log.info("tls %s: handshake failed: %s", addr, describe_handshake_error(exc))
            self._failed(gate)
            return
        # The socket belongs to the transport now (which closes it); the gate
        # settles the slot: in connection_made without tokens, else on its
        # verdict or at close.
        self.handshakes_done += 1

    def _failed(self, gate: TLSGate | None) -> None:
        """The handshake did not finish. The transport closes the socket
        (closing it here could close a reused descriptor under uvloop); the
        slot is freed here unless the gate got the connection and owns it."""
        if gate is None or gate.transport is None:
            self.settled()

    def settled(self) -> None:
        """One connection left the handshake-or-auth stage."""
        self.pending -= 1
        self._slot_freed.set()
