"""geanstalk cluster nodes as real processes, and a plain beanstalk client that
tells an acknowledged change from one that was not (for the failover tests).

Each node is ``python -m geanstalk serve --etcd ... --cluster ...`` on a
loopback port below the ephemeral range (reserved through the etcd harness,
so a node restarted after kill -9 gets its port back). Processes are
signalled by the pid this module started.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.etcd_harness import EtcdCluster, release_port, reserve_port


@dataclass
class Node:
    name: str
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP, and return only once the process is stopped (state T)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                state = stat.read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                return
            if state in ("T", "t"):
                return
            time.sleep(0.001)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""


@dataclass
class Nodes:
    etcd: EtcdCluster
    cluster: str
    nodes: list[Node] = field(default_factory=list)

    def leader_info(self) -> dict[str, str] | None:
        raw = self.etcd.get(f"/geanstalk/{self.cluster}/leader")
        return json.loads(raw) if raw else None

    def member_info(self, name: str) -> dict[str, object] | None:
        raw = self.etcd.get(f"/geanstalk/{self.cluster}/members/{name}")
        return json.loads(raw) if raw else None

    def by_name(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def wait_leader(self, timeout: float = 30.0, not_name: str | None = None) -> Node:
        """The node the leader key names, once one serves (and is not not_name)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = self.leader_info()
            except RuntimeError:
                info = None
            if info is not None and info.get("node") != not_name:
                node = self.by_name(info["node"])
                member = self.member_info(node.name)
                if member is not None and member.get("role") == "leader":
                    return node
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout}s:\n" + self.logs())

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        for n in self.nodes:
            release_port(n.port)


def start_nodes(etcd: EtcdCluster, cluster: str, tmp: Path, count: int = 3, *extra: str) -> Nodes:
    nodes = Nodes(etcd, cluster)
    for i in range(count):
        port = reserve_port()
        name = f"n{i + 1}"
        argv = [
            sys.executable, "-m", "geanstalk", "serve",
            "-l", "127.0.0.1", "-p", str(port),
            "--etcd", etcd.endpoints,
            "--cluster", cluster,
            "--node-name", name,
            "--advertise", f"127.0.0.1:{port}",
            "-V", *extra,
        ]  # fmt: skip
        node = Node(name, port, argv, tmp / f"{name}.log")
        node.start()
        nodes.nodes.append(node)
    return nodes


class Unknown(Exception):
    """The connection broke or the server said INTERNAL_ERROR: the outcome is unknown."""


class Beanstalk:
    """A blocking beanstalk client on one connection; every I/O bounded."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise Unknown(str(exc)) from exc
            if not chunk:
                raise Unknown("connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _body(self, size: int) -> bytes:
        while len(self.buf) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Unknown("connection closed")
            self.buf += chunk
        body, self.buf = self.buf[:size], self.buf[size + 2 :]
        return body

    def command(self, data: bytes) -> bytes:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Unknown(str(exc)) from exc
        line = self._line()
        if line in (b"INTERNAL_ERROR", b"DRAINING"):
            raise Unknown(line.decode())
        return line

    def use(self, tube: bytes) -> None:
        self.command(b"use " + tube + b"\r\n")

    def watch(self, tube: bytes) -> None:
        self.command(b"watch " + tube + b"\r\n")
        self.command(b"ignore default\r\n")

    def put(self, body: bytes, pri: int = 0, delay: int = 0, ttr: int = 60) -> int:
        line = self.command(b"put %d %d %d %d\r\n%s\r\n" % (pri, delay, ttr, len(body), body))
        word, _, rest = line.partition(b" ")
        if word != b"INSERTED":
            raise AssertionError(f"put answered {line!r}")
        return int(rest)

    def reserve(self, timeout: int = 0) -> tuple[int, bytes] | None:
        line = self.command(b"reserve-with-timeout %d\r\n" % timeout)
        if line == b"TIMED_OUT":
            return None
        word, jid, size = line.split(b" ")
        if word != b"RESERVED":
            raise AssertionError(f"reserve answered {line!r}")
        return int(jid), self._body(int(size))

    def delete(self, jid: int) -> bool:
        line = self.command(b"delete %d\r\n" % jid)
        if line == b"NOT_FOUND":
            return False
        if line != b"DELETED":
            raise AssertionError(f"delete answered {line!r}")
        return True
