"""Start, stop, kill and restart real etcd members on loopback for tests and benchmarks.

The cluster code is tested against the real thing (Debian's etcd-server), never
a fake: a fake would agree with our misunderstandings of etcd. Each member
listens on 127.0.0.1 on ports below the kernel's ephemeral range, so a member
restarted after a kill finds its ports still free (no client socket can have
taken them meanwhile), and each port is held under a lock file for as long as
this process uses it, so two test runs on one machine never pick the same one.
Members are stopped by the pid this module started, never by name.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ETCD = shutil.which("etcd")
SKIP_NO_ETCD = "etcd is not on PATH; apt-get install etcd-server (it gives /usr/bin/etcd)"

# Operations per transaction: the cluster journal batches up to this many
# records in one fenced transaction (etcd's default is 128).
MAX_TXN_OPS = 1024
# Backend quota: bounded so a runaway test fills a small file, not the disk.
QUOTA_BACKEND_BYTES = 1 << 30

_LOCK_DIR = Path(tempfile.gettempdir()) / "geanstalk-etcd-ports"
_held_ports: dict[int, int] = {}  # port -> fd of its lock file, held while in use


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for automatically assigned local ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port() -> int:
    """A port below the ephemeral range, free now and locked for this process.

    The lock (an flock on a file named for the port) goes away with the process,
    so a crashed test run leaves nothing reserved behind it.
    """
    low, _ = ephemeral_range()
    lowest = max(1025, low - 12000)
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for _ in range(500):
        port = random.randrange(lowest, low)
        if port in _held_ports:
            continue
        fd = os.open(_LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _port_is_free(port):
            os.close(fd)
            continue
        _held_ports[port] = fd
        return port
    raise RuntimeError(f"no free port found in {lowest}..{low - 1}")


def release_port(port: int) -> None:
    fd = _held_ports.pop(port, None)
    if fd is not None:
        os.close(fd)


def http_request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """One request to a member's client port; returns (status, decoded JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def b64(data: str | bytes) -> str:
    """Keys and values travel base64-encoded through etcd's v3 JSON gateway."""
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


@dataclass
class EtcdMember:
    """One etcd process: its name, ports and data directory survive kill/restart."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    initial_cluster: str = ""
    token: str = ""
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        if ETCD is None:
            raise RuntimeError(SKIP_NO_ETCD)
        return [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--max-txn-ops", str(MAX_TXN_OPS),
            "--quota-backend-bytes", str(QUOTA_BACKEND_BYTES),
            "--logger", "zap",
            "--log-outputs", "stderr",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> EtcdMember:
        """Start (or restart, from the same data directory) without waiting for health."""
        if self.running:
            raise RuntimeError(f"etcd member {self.name} is already running")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.starts += 1
        return self

    def healthy(self) -> bool:
        """True once this member answers /health with a leader and no alarm."""
        try:
            status, body = http_request(self.client_port, "GET", "/health", timeout=1.0)
        except OSError:
            return False
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"etcd member {self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd member {self.name} not healthy after {timeout}s")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        """The member's /v3/maintenance/status (its id, the leader's id, raft term...)."""
        code, body = http_request(self.client_port, "POST", "/v3/maintenance/status", {})
        if code != 200 or not isinstance(body, dict):
            raise RuntimeError(f"status of {self.name}: HTTP {code} {body!r}")
        return body

    def is_leader(self) -> bool:
        try:
            body = self.status()
        except (OSError, RuntimeError):
            return False
        return body.get("leader") == body.get("header", {}).get("member_id")

    def kill(self) -> None:
        """SIGKILL: the member crashes; its data directory stays for a restart."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the member stops answering but keeps its sockets (a hung machine)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (and SIGCONT in case it was paused), then SIGKILL if it lingers."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.send_signal(signal.SIGCONT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def log_tail(self, size: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-size:].decode(errors="replace")


@dataclass
class EtcdCluster:
    """Some etcd members forming one cluster on loopback."""

    members: list[EtcdMember] = field(default_factory=list)

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoints(self) -> str:
        """The comma-separated URLs `geanstalk serve --etcd` takes."""
        return ",".join(self.client_urls)

    def running_members(self) -> list[EtcdMember]:
        return [m for m in self.members if m.running]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running member reports a leader."""
        for member in self.running_members():
            member.wait_healthy(timeout)

    def leader(self, timeout: float = 30.0) -> EtcdMember:
        """The member that is raft leader now (waits through an election)."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.running_members():
                if member.is_leader():
                    return member
            if time.monotonic() > deadline:
                raise TimeoutError(f"no etcd leader after {timeout}s")
            time.sleep(0.05)

    def followers(self) -> list[EtcdMember]:
        lead = self.leader()
        return [m for m in self.running_members() if m is not lead]

    def restart(self, member: EtcdMember, timeout: float = 30.0) -> None:
        """Start a killed or stopped member again from its data directory."""
        member.start()
        member.wait_healthy(timeout)

    def put(self, key: str | bytes, value: str | bytes) -> int:
        """Write one key through any healthy member; returns the new revision."""
        body = self._first_answer("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return int(body["header"]["revision"])

    def get(self, key: str | bytes) -> bytes | None:
        """Read one key (linearizable) through any healthy member."""
        body = self._first_answer("/v3/kv/range", {"key": b64(key)})
        kvs = body.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def _first_answer(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for member in self.running_members():
            try:
                code, body = http_request(member.client_port, "POST", path, request)
            except OSError as exc:
                errors.append(f"{member.name}: {exc}")
                continue
            if code == 200 and isinstance(body, dict):
                return body
            errors.append(f"{member.name}: HTTP {code} {body!r}")
        raise RuntimeError(f"{path} failed on every member: {errors}")

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        for member in self.members:
            release_port(member.client_port)
            release_port(member.peer_port)


def _plan(base_dir: Path, size: int, extra_args: tuple[str, ...]) -> EtcdCluster:
    token = f"geanstalk-test-{uuid.uuid4().hex[:12]}"
    members = [
        EtcdMember(
            name=f"m{i + 1}",
            client_port=reserve_port(),
            peer_port=reserve_port(),
            data_dir=base_dir / f"m{i + 1}.etcd",
            token=token,
            extra_args=extra_args,
        )
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.initial_cluster = initial
    return EtcdCluster(members)


def start_cluster(
    base_dir: str | os.PathLike[str],
    size: int = 1,
    extra_args: tuple[str, ...] = (),
    timeout: float = 60.0,
    attempts: int = 3,
) -> EtcdCluster:
    """Start `size` fresh members under base_dir and wait until all are healthy.

    A member that loses a race for its port (another program bound it between
    our check and etcd's bind) exits at once; the whole cluster is then planned
    again on new ports in a new directory.
    """
    if ETCD is None:
        raise RuntimeError(SKIP_NO_ETCD)
    base = Path(base_dir)
    last: Exception | None = None
    for attempt in range(attempts):
        cluster = _plan(base / f"etcd-{size}-{attempt}-{uuid.uuid4().hex[:6]}", size, extra_args)
        try:
            for member in cluster.members:
                member.start()
            cluster.wait_healthy(timeout)
            return cluster
        except (RuntimeError, TimeoutError) as exc:
            last = exc
            cluster.stop()
    raise RuntimeError(f"etcd cluster of {size} did not start: {last}")


@contextlib.contextmanager
def running_cluster(
    base_dir: str | os.PathLike[str] | None = None, size: int = 1, **kw: Any
) -> Iterator[EtcdCluster]:
    """A started cluster, stopped (by pid) on exit; a temporary directory if none given."""
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="geanstalk-etcd-"))
        cluster = start_cluster(base_dir, size, **kw)
        stack.callback(cluster.stop)
        yield cluster
