"""Start and stop real servers (geanstalk or the reference beanstalkd) for tests.

Every server binds to loopback on a free port and is stopped by the pid this
module started, never by name, so tests can run beside anything else on the
machine. Benchmarks import this module too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

BEANSTALKD = shutil.which("beanstalkd")
SKIP_NO_REFERENCE = "beanstalkd (the reference server) is not on PATH; apt-get install beanstalkd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_socket(backlog: int = 64) -> socket.socket:
    """A non-blocking socket listening on a free loopback port, for a Runner."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def geanstalk_command(*args: str) -> list[str]:
    """The argv that runs `geanstalk serve` from this interpreter."""
    return [sys.executable, "-m", "geanstalk", "serve", *args]


def beanstalkd_command(*args: str) -> list[str]:
    if BEANSTALKD is None:
        raise RuntimeError(SKIP_NO_REFERENCE)
    return [BEANSTALKD, *args]


@dataclass
class ServerProcess:
    """A server child process listening on 127.0.0.1:port."""

    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> ServerProcess:
        env = dict(os.environ)
        err = open(self.stderr_path, "wb") if self.stderr_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env
            )
        finally:
            if self.stderr_path:
                err.close()  # type: ignore[union-attr]
        wait_for_port(self.port, timeout, self.proc)
        return self

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(self.address, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the server can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not go; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listening on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.005)


def geanstalk_server(*args: str, port: int | None = None, **kw: object) -> ServerProcess:
    port = port or free_port()
    argv = geanstalk_command("-l", "127.0.0.1", "-p", str(port), *args)
    return ServerProcess("geanstalk", argv, port, **kw)  # type: ignore[arg-type]


def beanstalkd_server(*args: str, port: int | None = None, **kw: object) -> ServerProcess:
    port = port or free_port()
    argv = beanstalkd_command("-l", "127.0.0.1", "-p", str(port), *args)
    return ServerProcess("beanstalkd", argv, port, **kw)  # type: ignore[arg-type]


def make_server(kind: str, *args: str, **kw: object) -> ServerProcess:
    if kind == "geanstalk":
        return geanstalk_server(*args, **kw)
    if kind == "beanstalkd":
        return beanstalkd_server(*args, **kw)
    raise ValueError(kind)


@contextlib.contextmanager
def running(kind: str, *args: str, **kw: object) -> Iterator[ServerProcess]:
    server = make_server(kind, *args, **kw).start()
    try:
        yield server
    finally:
        server.stop()


def recv_until(sock: socket.socket, n_lines: int = 1, timeout: float = 5.0) -> bytes:
    """Read until n_lines CR LF-terminated lines (and any announced bodies) arrived.

    Replies that announce a body (`OK <n>`, `RESERVED <id> <n>`, `FOUND <id> <n>`)
    count as one line together with their body.
    """
    sock.settimeout(timeout)
    buf = b""
    while True:
        if _complete_replies(buf) >= n_lines:
            return buf
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def _complete_replies(buf: bytes) -> int:
    count = 0
    pos = 0
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return count
        words = buf[pos:end].split(b" ")
        size = _body_size(words)
        if size is not None:
            if len(buf) < end + 2 + size + 2:
                return count
            end = end + 2 + size
        count += 1
        pos = end + 2


def _body_size(words: Sequence[bytes]) -> int | None:
    if words and words[0] in (b"OK",) and len(words) == 2:
        return int(words[1])
    if words and words[0] in (b"RESERVED", b"FOUND") and len(words) == 3:
        return int(words[2])
    return None
