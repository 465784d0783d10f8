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
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from geanstalk.accept import Listener
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

log = logging.getLogger("geanstalk")

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_PENDING_HANDSHAKES = 1024


class TLSConfigError(Exception):
    """A certificate, key, CA or token file cannot be used (the message says why)."""


def make_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2 and 1.3 only; client certificates required with a CA."""
    for path in (cert, key, client_ca):
        if path is not None:
            _check_readable(path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Renegotiation is a way to make a server redo expensive work at will.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"certificate {cert} and key {key} are not a usable pair: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from exc
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"client CA file {client_ca} is not usable: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _check_readable(path: str) -> None:
    """A missing or unreadable file, named (ssl's own errors do not say which)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TLSConfigError(f"cannot read {path}: {exc.strerror}") from exc


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

    __slots__ = ()

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
        conn = listener.make_connection()
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        if rest:
            conn.data_received(rest)


class TLSListener(Listener):
    """accept.py's Listener (its accept loop, fd-exhaustion pause,
    --max-connections) with the TLS steps in place of a plain hand-over.

    ``pending`` counts connections between accept and being the server's:
    in their handshake, then (with tokens) waiting for their auth line; the
    base refuses a new connection with a reset while ``max_pending`` are.
    Each handshake runs in a task, so a failure comes back as an exception
    to log with the peer and the reason; the context is read at each
    accept, so a reload applies to the next handshake.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], Connection],
        *,
        credentials: Credentials,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
        **kw: Any,
    ) -> None:
        kw.setdefault("ssl", credentials.context)
        if kw.get("ssl_handshake_timeout") is None:
            kw["ssl_handshake_timeout"] = DEFAULT_HANDSHAKE_TIMEOUT
        if kw.get("max_pending") is None:
            kw["max_pending"] = DEFAULT_MAX_PENDING_HANDSHAKES
        super().__init__(loop, sock, protocol_factory, **kw)
        # protocol_factory builds the server's connection, once the gate opens.
        self.make_connection = protocol_factory
        self.credentials = credentials
        self.auth_timeout = auth_timeout
        self.gates: set[TLSGate] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        # Counters, for logs, tests and metrics.
        self.handshakes_done = 0
        self.handshakes_failed = 0
        self.auth_refused = 0
        self.auth_timeouts = 0

    @property
    def address(self) -> Any:
        return self.sock.getsockname()

    def _attach(self, conn: socket.socket) -> None:
        self.pending += 1
        try:
            peer: Any = conn.getpeername()
        except OSError:
            peer = "?"
        task = self.loop.create_task(self._handshake(conn, peer))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    def close(self) -> None:
        """Stop accepting; drop handshakes and auth in progress (they are
        not the server's connections yet, so the graceful stop owes them nothing)."""
        super().close()
        for task in list(self.handshakes):
            task.cancel()
        for gate in list(self.gates):
            gate._finish()
            if gate.transport is not None:
                gate.transport.close()

    async def wait_closed(self) -> None:
        if self.handshakes:
            await asyncio.gather(*self.handshakes, return_exceptions=True)

    async def _handshake(self, sock: socket.socket, peer: Any) -> None:
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
                ssl_handshake_timeout=self.ssl_handshake_timeout,
            )
        except asyncio.CancelledError:
            self._failed(gate)
            raise
        except Exception as exc:
            self.handshakes_failed += 1
            log.info("tls %s: handshake failed: %s", peer, describe_handshake_error(exc))
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


def check_files(config: Any) -> None:
    """Load the files a config names once; TLSConfigError says what is wrong."""
    Credentials(config.tls_cert, config.tls_key, config.tls_client_ca, config.auth_tokens)


class TLSService:
    """The TLS listeners of one Runner, their credentials and SIGHUP."""

    def __init__(self, credentials: Credentials, listeners: list[TLSListener]) -> None:
        self.credentials = credentials
        self.listeners = listeners

    @classmethod
    async def start(cls, runner: Any) -> TLSService:
        """Open the TLS listeners of runner.config (the Runner calls this)."""
        cfg = runner.config
        server = runner.server
        loop = runner.loop
        if cfg.max_pending_handshakes < 1:
            raise TLSConfigError("--max-pending-handshakes must be at least 1")
        credentials = Credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, cfg.auth_tokens)
        socks = runner.tls_sockets or [_bind(address) for address in cfg.tls_listen]
        listeners = []
        for sock in socks:
            listener = await runner.add_listener(
                sock,
                lambda: TLSConnection(server),
                ssl=credentials.context,
                ssl_handshake_timeout=float(cfg.tls_handshake_timeout),
                max_pending=cfg.max_pending_handshakes,
                listener_class=TLSListener,
                credentials=credentials,
                auth_timeout=float(cfg.auth_timeout),
            )
            listeners.append(listener)
            log.info("tls: listening on %s", _show(listener.address))
        service = cls(credentials, listeners)
        registry = getattr(server, "metrics", None)
        if registry is not None:  # --http: the counters below on /metrics
            registry.register(service.collect)
        if runner.install_signals:
            loop.add_signal_handler(signal.SIGHUP, credentials.reload)
            runner.on_stopping.append(lambda _runner: loop.remove_signal_handler(signal.SIGHUP))
        return service

    def reload(self) -> bool:
        return self.credentials.reload()

    def collect(self, server: Any) -> Iterator[Any]:
        """The TLS listeners' counters, for the metrics endpoint (metrics.py)."""
        from geanstalk.metrics import counter, gauge

        inst = server.metrics.instance_labels()
        listeners = self.listeners
        figures = (
            ("handshakes", "TLS handshakes completed.", "handshakes_done"),
            (
                "handshake_failures",
                "TLS handshakes that failed or timed out (the reason is logged at -V).",
                "handshakes_failed",
            ),
            ("auth_refused", "Connections answered UNAUTHORIZED (--auth-tokens).", "auth_refused"),
            ("auth_timeouts", "Connections closed with no auth in time.", "auth_timeouts"),
        )
        for name, text, attr in figures:
            total = sum(getattr(listener, attr) for listener in listeners)
            yield counter(f"geanstalk_tls_{name}", text, total, inst)
        yield gauge(
            "geanstalk_tls_pending",
            "TLS connections in handshake or waiting for auth (--max-pending-handshakes).",
            sum(listener.pending for listener in listeners),
            inst,
        )
        yield counter(
            "geanstalk_tls_reloads",
            "SIGHUP reloads of the certificate, key, CA and tokens that succeeded.",
            self.credentials.reloads,
            inst,
        )
        yield counter(
            "geanstalk_tls_reload_failures",
            "SIGHUP reloads that failed (the previous files stay in use).",
            self.credentials.failed_reloads,
            inst,
        )


def _bind(address: str) -> socket.socket:
    """A listening socket for ADDR:PORT (embedders and tests; cli.py binds its own)."""
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host or "0.0.0.0"
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _show(address: Any) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
