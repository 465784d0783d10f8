"""A real `geanstalk serve` child process on a loopback port, for tests that kill or signal it.

It is started with this interpreter (``python -m geanstalk serve``), on
127.0.0.1 and a port that was free (or a unix socket), and is stopped by its
own pid, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `geanstalk serve` subprocess.

    ``host``/``port``/``address`` (or ``unix_path``) say where it listens;
    ``pid`` is the child's. ``kill()`` (SIGKILL) and ``terminate()`` (SIGTERM,
    the graceful stop) wait for it to exit and return its status;
    ``restart()`` starts it again on the same address with the same options
    (with ``binlog_dir`` its jobs come back). ``stderr`` is what it logged.
    """

    def __init__(self, argv_options: list[str], listen: str = "127.0.0.1", port: int = 0) -> None:
        self.options = list(argv_options)
        self.unix_path: str | None = None
        self.host: str | None = None
        self.port: int | None = None
        if listen.startswith("unix:"):
            self.unix_path = listen[len("unix:") :]
        else:
            self.host = listen
            self.port = port or free_port(listen)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    @property
    def address(self) -> Any:
        return self.unix_path if self.unix_path is not None else (self.host, self.port)

    @property
    def argv(self) -> list[str]:
        if self.unix_path is not None:
            where = ["--listen", f"unix:{self.unix_path}"]
        else:
            where = ["--listen", str(self.host), "--port", str(self.port)]
        return [sys.executable, "-m", "geanstalk", "serve", *where, *self.options]

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server process is not started")
        return self.proc.pid

    @property
    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.proc.pid if self.proc else None} {self.address!r}>"

    def start(self) -> ServerProcess:
        """Start the child and return once it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self!r} is running already")
        if self._stderr is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )
        self._wait_accepting()
        return self

    def _connect(self) -> socket.socket:
        if self.unix_path is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1.0)
            s.connect(self.unix_path)
            return s
        return socket.create_connection((str(self.host), int(self.port or 0)), timeout=1.0)

    def _wait_accepting(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"geanstalk serve exited with {self.proc.returncode} at start-up:\n{self.stderr}"
                )
            try:
                # a reply, not just a connect: `serve` listens before it has
                # opened its log, and may still fail after accepting
                with self._connect() as s:
                    s.sendall(b"list-tubes-watched\r\n")
                    if s.recv(64).startswith(b"OK "):
                        return
                raise ConnectionError("no reply")
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"geanstalk serve did not accept within {START_TIMEOUT} s:\n{self.stderr}"
                    ) from None
                time.sleep(0.005)

    def send_signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (graceful stop) and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL and wait."""
        if self.proc is None:
            return None
        self.send_signal(signal.SIGKILL)
        return self.proc.wait(STOP_TIMEOUT)

    def restart(self) -> ServerProcess:
        """Stop it (gracefully, if it still runs) and start it again on the same address."""
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        return self.start()

    def stop(self) -> None:
        """Teardown: terminate if running, release the log file."""
        try:
            self.terminate()
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self.unix_path is not None and os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
