"""One running server: its journal, the Server facade, listeners, signals, stop.

cli.py binds the listening sockets (so a client can connect within
milliseconds of exec) and hands them here; the pytest plugin and embedders
use the same Runner on an event loop of their own. Optional capabilities
(an HTTP endpoint, TLS listeners, a cluster) start from ``start()`` and stop
from ``stop()`` with a few lines each, importing their module only when
their option is set, so a plain server loads none of them.

Start-up order: journal opened, facade built, listeners accepting, then
the journal is loaded (``on_loading`` hooks first, e.g. systemd's STATUS):
replay on a helper thread, then the jobs handed to the facade a batch per
loop step. Meanwhile connections are accepted and `stats` is answered,
while their other commands wait (protocol.Connection._answer_while_loading),
so a big log keeps health checks answered and clients queued rather than
refused. Then ``ready`` is true and the ``on_ready`` hooks run (systemd's
READY=1). A stop asked for during the load ends it at the next batch.
Stop order: ``on_stopping`` hooks, no new connections or commands, every
earned reply out after the journal is synced, connections closed.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from geanstalk.accept import Listener
from geanstalk.config import DEFAULT_BINLOG_SIZE, ServerConfig
from geanstalk.journal import Journal, NullJournal
from geanstalk.protocol import Connection
from geanstalk.server import Server

log = logging.getLogger("geanstalk")

Hook = Callable[["Runner"], "Awaitable[None] | None"]

LISTEN_BACKLOG = 1024
# How long the graceful stop waits for closing transports to flush.
STOP_FLUSH_SECONDS = 2.0
# While the journal's jobs are handed to the facade, the loop answers
# connections at least this often (seconds).
RESTORE_SLICE = 0.002


class Runner:
    """Owns one server from start to stop; see the module docstring."""

    def __init__(
        self,
        config: ServerConfig,
        sockets: list[socket.socket] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        install_signals: bool = True,
        early_signals: list[int] | None = None,
        connection_factory: Callable[[Server], Any] = Connection,
        tls_sockets: list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.sockets = list(sockets or [])
        # Bound by cli.py for --tls-listen (privileged ports before -u);
        # when empty, tls.py binds config.tls_listen itself.
        self.tls_sockets = list(tls_sockets or [])
        self.tls: Any = None  # tls.TLSService once TLS listeners run
        self.clock = clock
        self.install_signals = install_signals
        self.early_signals = list(early_signals or [])
        self.connection_factory = connection_factory
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Server | None = None
        self.journal: Journal | None = None
        self.listeners: list[Listener] = []
        self.ready = False
        self.stopping = False
        self.on_loading: list[Hook] = []
        self.on_ready: list[Hook] = []
        self.on_stopping: list[Hook] = []
        # The HTTP endpoint's socket (inherited from systemd, or bound by
        # cli.py); bound from config.http at start() when None.
        self.http_socket: socket.socket | None = None
        self.http: Any = None  # geanstalk.http.HttpEndpoint while on
        self.cluster: Any = None  # the cluster node (geanstalk/cluster/node.py) with --etcd
        self._stop: asyncio.Future[str] | None = None
        self._stopped = False
        self._idle: Any = None  # the --idle-timeout sweeper

    # --- start ---------------------------------------------------------------

    def open_journal(self, loop: asyncio.AbstractEventLoop) -> Journal:
        """The journal the config asks for: the binlog with -b, else none."""
        cfg = self.config
        if cfg.binlog_dir is None:
            # Without -b the stats still show the -s value, as the reference's do.
            return NullJournal(cfg.binlog_size)
        from geanstalk.binlog import Binlog

        size = cfg.binlog_size
        if size <= 0:
            # 1.12 keeps -s in an int and goes on with a nonsensical file
            # size; a log needs a real one (docs/COMPAT.md).
            log.warning("binlog file size %d is not positive; using %d", size, DEFAULT_BINLOG_SIZE)
            size = DEFAULT_BINLOG_SIZE
        return Binlog.open(cfg.binlog_dir, cfg.fsync_ms, size, loop, cfg.body_cache)

    async def start(self) -> None:
        """Build the facade, accept connections, load the journal (see the
        module docstring); returns once the server is ready, or stopping."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stop = loop.create_future()
        cfg = self.config
        factory = None
        if cfg.etcd:
            # The cluster node owns the Server (a standby's copy, or the
            # leader's) and replaces it when it loses the leadership.
            from geanstalk.cluster.node import ClusterNode

            node = ClusterNode(self)
            self.cluster = node
            await node.start()
            self.on_stopping.insert(0, node.stop)
            server = self.server
            assert server is not None
            factory = node.protocol
            journal = None
        else:
            journal = self.open_journal(loop)
            self.journal = journal
            server = Server(
                loop,
                journal,
                cfg.max_job_size,
                cfg.output_cap,
                clock=self.clock,
                connection_factory=self.connection_factory,
            )
            self.server = server
            if cfg.max_memory:
                server.limit_memory(cfg.max_memory)
        server.max_connections = cfg.max_connections
        if cfg.http or self.http_socket is not None:
            from geanstalk.http import start_endpoint

            self.http = await start_endpoint(self)
        loading = journal is not None and hasattr(journal, "recover")
        server.loading = loading
        if self.install_signals:
            self._install_signals()
        for sock in self.sockets:
            await self.add_listener(sock, factory)
        if cfg.tls_listen:
            from geanstalk.tls import TLSService

            self.tls = await TLSService.start(self)
        if loading:
            assert journal is not None
            await self._run_hooks(self.on_loading)
            if not await self._load(server, journal):
                return  # a stop came first
        if cfg.idle_timeout:
            from geanstalk.idle import IdleSweeper

            self._idle = IdleSweeper(server, cfg.idle_timeout)
            self._idle.start()
        self.ready = True
        await self._run_hooks(self.on_ready)

    async def _load(self, server: Server, journal: Any) -> bool:
        """Replay the journal into the server; False when a stop cut it short."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        log.info("loading the binlog")
        recover_async = getattr(journal, "recover_async", None)
        if recover_async is not None:
            jobs, next_id = await recover_async()
        else:
            jobs, next_id = journal.recover()
        read = loop.time()
        until = read + RESTORE_SLICE
        for _ in server.restoring(jobs, next_id):
            if loop.time() >= until:
                await asyncio.sleep(0)
                if self._stop.done():
                    log.info("stopped while loading the binlog")
                    return False
                until = loop.time() + RESTORE_SLICE
        if self._stop.done():
            return False
        log.info(
            "recovered %d jobs from the binlog in %.1f s (%.1f s reading the log)",
            len(jobs),
            loop.time() - began,
            read - began,
        )
        cap = self.config.max_memory
        used = server.bound_figures()["job-memory"]
        if cap and used > cap:
            log.warning(
                "recovered jobs take %d bytes, over --max-memory %d: "
                "puts answer OUT_OF_MEMORY until jobs are deleted",
                used,
                cap,
            )
        server.loaded()
        return True

    async def add_listener(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol] | None = None,
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        max_pending: int | None = None,
        listener_class: type[Listener] = Listener,
        **extra: Any,
    ) -> Listener:
        """Accept beanstalk connections on a bound, listening socket.

        ``factory`` defaults to the server's connection factory. With ``ssl``
        (an SSLContext) it is a TLS listener: the handshake must finish within
        ``ssl_handshake_timeout`` seconds, and at most ``max_pending``
        handshakes run at once. Every listener shares --max-connections.
        ``listener_class`` and ``extra`` (its own keywords) let a capability
        bring its own Listener subclass (tls.py does).
        """
        assert self.loop is not None and self.server is not None
        server = self.server
        if factory is None:
            make = server.connection_factory
            assert make is not None

            def factory() -> asyncio.BaseProtocol:
                return make(server)

        listener = listener_class(
            self.loop,
            sock,
            factory,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout,
            admit=self._admit(),
            max_pending=max_pending,
            counters=server.bounds,
            **extra,
        )
        listener.start()
        self.listeners.append(listener)
        return listener

    def _admit(self) -> Callable[[], bool] | None:
        """--max-connections: whether one more connection may be served now.

        Counts the server's connections and those accepted but not yet set
        up (a TLS handshake under way, or connection_made still to run).
        """
        cap = self.config.max_connections
        if not cap:
            return None
        listeners = self.listeners

        def admit() -> bool:
            # self.server, not a copy: a cluster node replaces it on failover.
            server = self.server
            served = len(server.connections) if server is not None else 0
            return served + sum(lst.pending for lst in listeners) < cap

        return admit

    def _drain(self) -> None:
        # The server of the moment: a cluster node replaces its engine.
        if self.server is not None:
            self.server.drain()

    def _install_signals(self) -> None:
        loop = self.loop
        server = self.server
        assert loop is not None and server is not None
        loop.add_signal_handler(signal.SIGUSR1, self._drain)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Signals that came before the loop was running (see cli.py).
        for signum in self.early_signals:
            if signum == signal.SIGUSR1:
                server.drain()
            else:
                self.request_stop(signal.Signals(signum).name)
        self.early_signals.clear()

    # --- stop ------------------------------------------------------------------

    def request_stop(self, reason: str = "stop") -> None:
        """Ask for a graceful stop (a signal handler, a test, a lost leadership)."""
        if self._stop is not None and not self._stop.done():
            log.info("%s: stopping", reason)
            self._stop.set_result(reason)

    async def wait(self) -> str:
        """Until a stop is requested; returns its reason."""
        assert self._stop is not None, "start() first"
        return await asyncio.shield(self._stop)

    async def stop(self) -> None:
        """Graceful stop; safe to call twice, or after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True
        self.ready = False
        if self._stop is not None and not self._stop.done():
            self._stop.set_result("stop")
        await self._run_hooks(self.on_stopping)
        if self._idle is not None:
            self._idle.stop()
        if self.server is not None:
            await shutdown(self.server, self.listeners)
        elif self.journal is not None:
            await self.journal.close()
        if self.http is not None:
            await self.http.stop()
        if self.install_signals and self.loop is not None:
            for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(sig)

    async def _run_hooks(self, hooks: list[Hook]) -> None:
        for hook in list(hooks):
            try:
                result = hook(self)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("hook %r failed", hook)


async def shutdown(server: Server, listeners: list[Any]) -> None:
    """No new connections or commands, every reply already earned goes out
    (after the journal is synced), then the connections close."""
    for listener in listeners:
        listener.close()
    for conn in list(server.connections):
        conn.stop_reading()
    server.timers.close()
    await server.journal.close()
    for conn in list(server.connections):
        t = getattr(conn, "transport", None)
        if t is not None and not t.is_closing():
            t.close()
    # Closing transports flush what they hold; give them a bounded moment.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_FLUSH_SECONDS
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)


# glibc's mallopt() parameter, and the size from which blocks are mapped.
_M_MMAP_THRESHOLD = -3
BIG_BLOCK = 2 * 1024 * 1024


def map_big_blocks(threshold: int = BIG_BLOCK) -> bool:
    """Have glibc's malloc serve blocks of ``threshold`` bytes or more with mmap.

    glibc raises its mmap threshold by itself, up to 32 MiB, as big blocks
    are freed (replay frees a 10 MiB buffer per log file). Below it, a list
    that grows is moved by copying: a tube's heap of a million jobs then
    held the loop for 10-35 ms at each growth. A mapped block grows by
    mremap, which copies nothing. Setting the threshold turns glibc's
    adjustment off. Nothing is done elsewhere than glibc; whether it was
    done is returned.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, threshold))
    except (AttributeError, ImportError, OSError, ValueError):
        return False


def serve(
    config: ServerConfig,
    sockets: list[socket.socket],
    early_signals: list[int] | None = None,
    http_socket: socket.socket | None = None,
    tls_sockets: list[socket.socket] | None = None,
) -> int:
    """Run a server in this process until SIGTERM/SIGINT; the exit status."""

    async def main() -> int:
        # Every job is a GC-tracked object that lives long: collect the young
        # generation less often and leave the start-up objects out of full passes.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        map_big_blocks()
        runner = Runner(config, sockets, early_signals=early_signals, tls_sockets=tls_sockets)
        runner.http_socket = http_socket
        if os.environ.get("NOTIFY_SOCKET"):
            from geanstalk.systemd import attach

            attach(runner)
        # Loading a big binlog makes millions of long-lived objects: the
        # collector would scan them over and over, in pauses that hold the
        # GIL (and so the answers to `stats` during the load). It is off for
        # the load; what the load made is then frozen out of later passes.
        gc.disable()
        try:
            await runner.start()
            gc.freeze()
            gc.enable()
            await runner.wait()
        finally:
            gc.enable()
            await runner.stop()
        return 0

    if config.uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("event loop: asyncio (uvloop is not installed)")
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            return uvloop.run(main())
    else:
        log.info("event loop: asyncio (--no-uvloop)")
    return asyncio.run(main())
