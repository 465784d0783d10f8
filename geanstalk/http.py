"""The operator's HTTP endpoint (``--http ADDR:PORT``): /metrics, /healthz,
/readyz and /stats.json.

It shares the event loop with the beanstalk port, so it is built to cost
that port nothing: a request is one small read (at most MAX_HEAD bytes of
request line and headers, within a deadline), one response and a close; at
most max_connections clients at once, the rest turned away at accept; a
client that does not send its request, or does not read the response, in
time is cut off. Every figure is read from the server's own state while the
response is built, never through the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geanstalk.exposition import (
    OPENMETRICS_TYPE,
    TEXT_TYPE,
    render_openmetrics,
    render_text,
    wants_openmetrics,
)

if TYPE_CHECKING:
    import socket

    from geanstalk.metrics import Instruments
    from geanstalk.server import Server

log = logging.getLogger("geanstalk")

MAX_HEAD = 8192  # request line and headers
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_DEADLINE = 10.0  # seconds for a client to send its request and read the reply
LAG_INTERVAL = 0.5  # seconds between event-loop lag probes

# A readiness check returns None when it is satisfied, or why not.
ReadinessCheck = Callable[[], "str | None"]


def parse_address(text: str) -> tuple[str, int]:
    """ADDR:PORT, [IPv6]:PORT or :PORT (loopback) into (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--http wants ADDR:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _response(
    status: str, body: bytes, content_type: str, head_only: bool, extra: str = ""
) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


class HttpEndpoint:
    """The endpoint of one server: its listener, its checks, its clients."""

    def __init__(
        self,
        server: Server,
        ready: Callable[[], bool],
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        deadline: float = DEFAULT_DEADLINE,
        adopt: Callable[[Server], None] | None = None,
    ) -> None:
        # Called with every server this endpoint is given (a cluster node
        # replaces the server when its leadership changes): wires metrics in.
        self._adopt = adopt
        self._server = server
        if adopt is not None:
            adopt(server)
        self._ready = ready
        # Further conditions for /readyz (cluster leadership, ...): append a
        # callable returning None when satisfied, or the reason it is not.
        self.readiness: list[ReadinessCheck] = []
        self.max_connections = max_connections
        self.deadline = deadline
        self.clients: set[_HttpClient] = set()
        self.turned_away = 0
        self._listener: Any = None
        self._lag_task: asyncio.Task[None] | None = None

    @property
    def server(self) -> Server:
        return self._server

    @server.setter
    def server(self, server: Server) -> None:
        if server is not self._server and self._adopt is not None:
            self._adopt(server)
        self._server = server

    # --- life cycle ---------------------------------------------------------

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: _HttpClient(self), sock=sock, backlog=128)
        ins = self.server.metrics.instruments if self.server.metrics is not None else None
        if ins is not None:
            self._lag_task = loop.create_task(_watch_lag(ins))

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for c in list(self.clients):
            c.abort()

    # --- the routes ---------------------------------------------------------

    def not_ready(self) -> str | None:
        if not self._ready():
            if getattr(self.server, "loading", False):
                return "loading the binlog"
            return "starting: binlog replay or listeners not done"
        if self.server.draining:
            return "draining"
        for check in self.readiness:
            reason = check()
            if reason:
                return reason
        return None

    def handle(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        head_only = method == "HEAD"
        path = target.split("?", 1)[0]
        plain = "text/plain; charset=utf-8"
        if path not in ("/metrics", "/healthz", "/readyz", "/stats.json"):
            return _response("404 Not Found", b"not found\n", plain, head_only)
        if method not in ("GET", "HEAD"):
            return _response(
                "405 Method Not Allowed", b"GET or HEAD\n", plain, head_only, "Allow: GET, HEAD\r\n"
            )
        if path == "/healthz":
            return _response("200 OK", b"ok\n", plain, head_only)
        if path == "/readyz":
            reason = self.not_ready()
            if reason is None:
                return _response("200 OK", b"ready\n", plain, head_only)
            return _response(
                "503 Service Unavailable", f"not ready: {reason}\n".encode(), plain, head_only
            )
        if path == "/stats.json":
            doc = {"server": self.server.stats_values(), "tubes": self.server.tube_values()}
            body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
            return _response("200 OK", body, "application/json", head_only)
        registry = self.server.metrics
        if registry is None:
            return _response("404 Not Found", b"metrics are off\n", plain, head_only)
        families = registry.collect(self.server)
        if wants_openmetrics(headers.get("accept", "")):
            return _response("200 OK", render_openmetrics(families), OPENMETRICS_TYPE, head_only)
        return _response("200 OK", render_text(families), TEXT_TYPE, head_only)


async def _watch_lag(ins: Instruments) -> None:
    """How late a timer fires is how long the loop was busy elsewhere."""
    interval_ns = int(LAG_INTERVAL * 1e9)
    observe = ins.loop_lag.observe
    while True:
        started = time.perf_counter_ns()
        await asyncio.sleep(LAG_INTERVAL)
        observe(max(time.perf_counter_ns() - started - interval_ns, 0))


class _HttpClient(asyncio.Protocol):
    """One HTTP request and its response; then the connection closes."""

    def __init__(self, endpoint: HttpEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: Any = None
        self.buf = bytearray()
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        ep = self.endpoint
        if len(ep.clients) >= ep.max_connections:
            ep.turned_away += 1
            transport.abort()
            return
        ep.clients.add(self)
        self.timer = asyncio.get_running_loop().call_later(ep.deadline, self.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.clients.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            end = self.buf.find(b"\n\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._answer(
                    _response(
                        "431 Request Header Fields Too Large",
                        b"request head too large\n",
                        "text/plain; charset=utf-8",
                        False,
                    )
                )
            return
        if end > MAX_HEAD:
            self._answer(_response("431 Request Header Fields Too Large", b"", "text/plain", False))
            return
        lines = bytes(self.buf[:end]).decode("latin-1").splitlines()
        parts = lines[0].split() if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._answer(_response("400 Bad Request", b"bad request\n", "text/plain", False))
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        method, target = parts[0], parts[1]
        try:
            reply = self.endpoint.handle(method, target, headers)
        except Exception:
            log.exception("http: %s %s failed", method, target[:80])
            reply = _response("500 Internal Server Error", b"error\n", "text/plain", False)
        self._answer(reply)

    def eof_received(self) -> bool:
        # A reply already written is flushed by close(); a client that went
        # away before asking anything frees its slot now.
        return False

    def _answer(self, reply: bytes) -> None:
        self.answered = True
        self.buf = bytearray()
        self.transport.write(reply)
        # close() sends what is buffered first; the deadline still applies
        # to a client that does not read it.
        self.transport.close()


async def start_endpoint(runner: Any) -> HttpEndpoint:
    """Turn on metrics and the endpoint for a Runner whose facade is built
    (before the journal's replay, so /healthz answers during it)."""
    from geanstalk.instrumented import OP_NAMES, connection_class, instrument_storage
    from geanstalk.metrics import Instruments, build_registry
    from geanstalk.systemd import describe

    cfg = runner.config
    server = runner.server
    sock = runner.http_socket
    if sock is None:
        from geanstalk.cli import make_socket

        host, port = parse_address(cfg.http)
        sock = make_socket(host, port)
        runner.http_socket = sock
    instance = describe(runner.sockets[0]) if runner.sockets else cfg.listen_address
    ins = Instruments(OP_NAMES, cfg.metrics_tube_limit)
    registry = build_registry(
        server,
        names=cfg.metrics_names,
        instance=instance if cfg.metrics_instance else None,
        tube_cap=cfg.metrics_tube_limit,
        instruments=ins,
        listeners={"beanstalk": instance, **({"tls": "tls"} if cfg.tls_listen else {})},
    )
    factory = connection_class(ins)
    # Listeners make connections with the server's factory; a cluster node
    # with the runner's.
    runner.connection_factory = factory

    def adopt(new: Server) -> None:
        new.metrics = registry
        new.connection_factory = factory
        if "_reserve" not in vars(new.storage):
            instrument_storage(new, ins)
        if hasattr(new.journal, "observer"):
            new.journal.observer = ins

    endpoint = HttpEndpoint(
        server, ready=lambda: bool(runner.ready) and not runner.stopping, adopt=adopt
    )
    await endpoint.start(sock)
    log.info("http: serving /metrics /healthz /readyz /stats.json on %s", describe(sock))
    return endpoint
