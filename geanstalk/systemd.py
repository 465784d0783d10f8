"""systemd's two protocols, spoken directly (no libsystemd): socket
activation (LISTEN_FDS) and readiness notification (NOTIFY_SOCKET).

Socket activation: the service manager binds the sockets of
contrib/systemd/geanstalk.socket and starts the server with them open from
fd 3 on, LISTEN_FDS saying how many and LISTEN_PID for whom; with
FileDescriptorName= set, LISTEN_FDNAMES names them, which is how the
beanstalk port and the HTTP endpoint are told apart ("http" is the HTTP
endpoint, any other name a beanstalk listener). An inherited socket wins
over -l/-p, as in beanstalkd.

Notification: one datagram per state change, "READY=1" once the binlog is
replayed and the listeners accept, "STOPPING=1" when a stop begins, and
"WATCHDOG=1" every half WATCHDOG_USEC from the event loop itself (so a
stuck loop stops the pings and the manager restarts the server).

Imported by cli.py before asyncio, so only os and socket here.
"""

from __future__ import annotations

import os
import socket
from typing import Any

LISTEN_FDS_START = 3
HTTP_NAME = "http"


class ActivationError(Exception):
    pass


def listen_sockets(unset: bool = True) -> list[tuple[str, socket.socket]]:
    """The sockets this process inherited, as (name, socket); [] when none.

    An unnamed socket has the name "". The variables are removed from
    the environment (as sd_listen_fds(1) does) so that no child sees them.
    """
    env = os.environ
    pid, count, names = env.get("LISTEN_PID"), env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if not pid or not count:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS is not a number: {count!r}")
    n = int(count)
    labels = names.split(":") if names else []
    found = []
    for i in range(n):
        fd = LISTEN_FDS_START + i
        name = labels[i] if i < len(labels) else ""
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ActivationError(f"inherited fd {fd}: {exc.strerror}") from None
        if sock.type != socket.SOCK_STREAM or sock.family not in (
            socket.AF_INET,
            socket.AF_INET6,
            socket.AF_UNIX,
        ):
            raise ActivationError(f"inherited fd {fd} is not a TCP or UNIX listening socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"inherited fd {fd} is not a TCP or UNIX listening socket")
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        found.append((name, sock))
    return found


def split_sockets(
    found: list[tuple[str, socket.socket]],
) -> tuple[list[socket.socket], socket.socket | None, list[str]]:
    """(beanstalk sockets, the HTTP socket or None, warnings).

    Without names, only the first socket is used, as beanstalkd does.
    """
    warnings: list[str] = []
    if not any(name for name, _ in found):
        if len(found) > 1:
            warnings.append("inherited more than one listen socket; ignoring all but the first")
            for _, extra in found[1:]:
                extra.close()
        return [s for _, s in found[:1]], None, warnings
    beanstalk = [s for name, s in found if name != HTTP_NAME]
    http = [s for name, s in found if name == HTTP_NAME]
    if len(http) > 1:
        warnings.append("inherited more than one http socket; using the first")
        for extra in http[1:]:
            extra.close()
    return beanstalk, (http[0] if http else None), warnings


def describe(sock: socket.socket) -> str:
    """host:port or unix:PATH of a listening socket (for the instance label)."""
    addr: Any = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{addr if isinstance(addr, str) else addr.decode(errors='replace')}"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- sd_notify -----------------------------------------------------------------


class Notifier:
    """Datagrams to the service manager's NOTIFY_SOCKET; a no-op without one."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            path = os.environ.get("NOTIFY_SOCKET")
        self.address: str | bytes | None = None
        if path:
            # An abstract-namespace socket is written with a leading "@".
            self.address = "\0" + path[1:] if path.startswith("@") else path
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto(state.encode(), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the manager's timeout), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    wpid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if wpid and wpid.isdigit() and int(wpid) != os.getpid():
        return None
    return int(usec) / 2_000_000


# While the binlog loads, systemd's start timeout (TimeoutStartSec, 90 s by
# default) is pushed this far ahead, every LOADING_EXTEND_EVERY seconds: a
# log of ten million jobs takes minutes to load, and a unit killed for it
# would never come up.
LOADING_EXTEND_USEC = 30_000_000
LOADING_EXTEND_EVERY = 10.0


def attach(runner: Any, notifier: Notifier | None = None) -> Notifier:
    """READY=1, STOPPING=1, the watchdog, and the start timeout pushed
    ahead while the binlog loads, on a Runner's hooks."""
    notifier = notifier or Notifier()
    interval = watchdog_interval()
    handle: list[Any] = []

    def ping() -> None:
        notifier.notify("WATCHDOG=1")
        handle[:] = [runner.loop.call_later(interval, ping)]

    def extend() -> None:
        notifier.notify(f"EXTEND_TIMEOUT_USEC={LOADING_EXTEND_USEC}")
        handle[:] = [runner.loop.call_later(LOADING_EXTEND_EVERY, extend)]

    def on_loading(r: Any) -> None:
        notifier.notify("STATUS=loading the binlog (stats is answered; other commands wait)")
        extend()

    def on_ready(r: Any) -> None:
        for h in handle:
            h.cancel()
        handle.clear()
        notifier.notify(f"READY=1\nSTATUS=accepting connections\nMAINPID={os.getpid()}")
        if interval is not None:
            ping()

    def on_stopping(r: Any) -> None:
        for h in handle:
            h.cancel()
        handle.clear()
        notifier.notify("STOPPING=1\nSTATUS=stopping")

    runner.on_loading.append(on_loading)
    runner.on_ready.append(on_ready)
    runner.on_stopping.append(on_stopping)
    return notifier
