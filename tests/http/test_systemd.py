"""The server under the real systemd protocols: a parent process binds the
sockets and passes them (LISTEN_FDS from fd 3, LISTEN_PID, LISTEN_FDNAMES)
through a small exec wrapper, and reads the readiness datagrams on a real
AF_UNIX NOTIFY_SOCKET, as the service manager does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ophelp import get, say, stats

from tests.servers import free_port

# Runs in the child: moves the passed fds to 3, 4, ..., names itself in
# LISTEN_PID (the pid survives exec) and becomes `geanstalk serve`.
WRAPPER = r"""
import fcntl, os, sys
fds = [int(x) for x in os.environ.pop("TEST_PASS_FDS").split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
pid = os.environ.pop("TEST_LISTEN_PID", None)
os.environ["LISTEN_PID"] = pid or str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "geanstalk", "serve", *sys.argv[1:]])
"""


def listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


class Manager:
    """The service manager's side: sockets, the notify socket, the child."""

    def __init__(self, tmp: Path, socks: list[socket.socket], env: dict[str, str], *args: str):
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = str(tmp / "notify")
        self.notify.bind(self.notify_path)
        self.notify.settimeout(30)
        self.stderr_path = tmp / "stderr"
        child_env = dict(os.environ)
        child_env.update(env)
        child_env["NOTIFY_SOCKET"] = self.notify_path
        child_env["TEST_PASS_FDS"] = ",".join(str(s.fileno()) for s in socks)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, *args],
                pass_fds=[s.fileno() for s in socks],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        for s in socks:
            s.close()  # only the child accepts from now on

    def wait_for(self, state: str) -> list[str]:
        """Datagrams until one carries state (each is KEY=VALUE lines)."""
        got = []
        while True:
            data = self.notify.recv(4096).decode()
            got.append(data)
            if state in data.split("\n"):
                return got

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.notify.close()


def test_named_sockets_ready_watchdog_stopping(tmp_path: Path) -> None:
    bs, hs = listening(), listening()
    bport, hport = bs.getsockname()[1], hs.getsockname()[1]
    ignored = free_port()
    m = Manager(
        tmp_path,
        [bs, hs],
        {"LISTEN_FDNAMES": "beanstalk:http", "WATCHDOG_USEC": "300000"},
        "-l",
        "127.0.0.1",
        "-p",
        str(ignored),
    )
    try:
        ready = m.wait_for("READY=1")
        assert any(f"MAINPID={m.proc.pid}" in d for d in ready)
        with socket.create_connection(("127.0.0.1", bport), timeout=10) as c:
            assert say(c, b"put 0 0 60 2\r\nhi\r\n") == b"INSERTED 1\r\n"
            assert stats(c)["pid"] == str(m.proc.pid)
        status, _, body = get(hport, "/metrics")
        assert status == 200
        assert f'current_jobs_ready{{instance="127.0.0.1:{bport}"}} 1.0' in body.decode()
        assert get(hport, "/readyz")[0] == 200
        # -l/-p lost to the inherited socket, and the server said so.
        try:
            socket.create_connection(("127.0.0.1", ignored), timeout=2).close()
            raise AssertionError(f"something listens on the -p port {ignored}")
        except ConnectionRefusedError:
            pass
        assert "inherited listen socket from systemd; ignoring -l 127.0.0.1" in m.stderr()
        m.wait_for("WATCHDOG=1")
        m.proc.send_signal(signal.SIGTERM)
        m.wait_for("STOPPING=1")
        assert m.proc.wait(20) == 0
    finally:
        m.stop()


def test_unnamed_sockets_first_one_only_as_beanstalkd(tmp_path: Path) -> None:
    first, second = listening(), listening()
    port = first.getsockname()[1]
    m = Manager(tmp_path, [first, second], {})
    try:
        m.wait_for("READY=1")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert say(c, b"list-tube-used\r\n") == b"USING default\r\n"
        assert "inherited more than one listen socket; ignoring all but the first" in m.stderr()
    finally:
        assert m.stop() == 0


def test_fds_meant_for_another_pid_are_not_taken(tmp_path: Path) -> None:
    inherited = listening()
    port = free_port()
    m = Manager(
        tmp_path,
        [inherited],
        {"TEST_LISTEN_PID": str(os.getpid())},
        "-l",
        "127.0.0.1",
        "-p",
        str(port),
    )
    try:
        m.wait_for("READY=1")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert say(c, b"list-tube-used\r\n") == b"USING default\r\n"
        assert "inherited" not in m.stderr()
    finally:
        assert m.stop() == 0


def test_not_a_listening_socket_is_refused(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    m = Manager(tmp_path, [a], {})
    try:
        assert m.proc.wait(20) == 111
        assert "is not a TCP or UNIX listening socket" in m.stderr()
    finally:
        b.close()
        m.stop()


def test_the_start_timeout_is_pushed_ahead_while_the_binlog_loads(tmp_path: Path) -> None:
    bs = listening()
    bport = bs.getsockname()[1]
    logdir = tmp_path / "log"
    logdir.mkdir()
    m = Manager(tmp_path, [bs], {}, "-b", str(logdir))
    try:
        got = m.wait_for("READY=1")
        loading = [i for i, d in enumerate(got) if "STATUS=loading the binlog" in d]
        extend = [i for i, d in enumerate(got) if "EXTEND_TIMEOUT_USEC=30000000" in d.split("\n")]
        assert loading and extend, got
        assert loading[0] <= extend[0] < len(got) - 1  # both before READY=1
        with socket.create_connection(("127.0.0.1", bport), timeout=10) as c:
            assert say(c, b"put 0 0 60 2\r\nhi\r\n") == b"INSERTED 1\r\n"
        m.proc.send_signal(signal.SIGTERM)
        m.wait_for("STOPPING=1")
        assert m.proc.wait(20) == 0
    finally:
        m.stop()
