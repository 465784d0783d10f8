"""A cluster node as a user runs it: the flags, the standby relaying to the
leader, a graceful stop handing over, and no cluster code without --etcd."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the cluster extra (aiohttp) is not installed")

from tests.cluster.cluster_nodes import Beanstalk, start_nodes
from tests.cluster.etcd_harness import EtcdCluster

WAIT = 60.0


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geanstalk", "serve", "-l", "127.0.0.1", "-p", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--etcd", "http://127.0.0.1:9"], "--etcd needs --cluster NAME"),
        (["--etcd", "http://127.0.0.1:9", "--cluster", "a/b"], "cluster name"),
        (["--etcd", "http://127.0.0.1:9", "--cluster", "c", "-z", "2000000"], "maximum job size"),
        (["--etcd", "http://127.0.0.1:9", "--cluster", "c", "--lease-ttl", "1"], "--lease-ttl"),
        (
            ["--etcd", "http://127.0.0.1:9", "--cluster", "c", "--advertise", "nohost"],
            "--advertise",
        ),
    ],
)
def test_bad_cluster_options_are_usage_errors(args: list[str], message: str) -> None:
    done = _serve(*args)
    assert done.returncode == 5, done.stderr
    assert message in done.stderr


def test_a_single_node_loads_no_cluster_code() -> None:
    code = (
        "import asyncio, sys\n"
        "from geanstalk.config import ServerConfig\n"
        "from geanstalk.runner import Runner\n"
        "async def main():\n"
        "    r = Runner(ServerConfig(), [], install_signals=False)\n"
        "    await r.start()\n"
        "    await r.stop()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('geanstalk.cluster', 'aiohttp'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_standbys_relay_and_a_graceful_stop_hands_over(
    etcd3: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    nodes = start_nodes(etcd3, cluster_name, tmp_path)
    try:
        leader = nodes.wait_leader(WAIT)
        standbys = [n for n in nodes.nodes if n is not leader]
        # Every node takes clients: a standby relays them to the leader.
        ids = []
        for node in nodes.nodes:
            conn = Beanstalk(node.address)
            conn.use(b"relay")
            ids.append(conn.put(b"via %s" % node.name.encode()))
            conn.close()
        assert len(set(ids)) == 3
        # The standbys follow: their members keys say so.
        deadline = time.monotonic() + WAIT
        while not all((nodes.member_info(n.name) or {}).get("role") == "standby" for n in standbys):
            assert time.monotonic() < deadline, nodes.logs()
            time.sleep(0.05)
        # SIGTERM: the leader commits what it has, gives the leadership back and exits.
        leader.stop()
        assert leader.proc is not None and leader.proc.returncode == 0, leader.log_tail()
        new = nodes.wait_leader(WAIT, not_name=leader.name)
        conn = Beanstalk(new.address)
        conn.watch(b"relay")
        got = {}
        while (job := conn.reserve(timeout=0)) is not None:
            got[job[0]] = job[1]
            conn.delete(job[0])
        conn.close()
        assert got == {ids[i]: b"via %s" % n.name.encode() for i, n in enumerate(nodes.nodes)}
    finally:
        nodes.stop()


def test_sigusr1_drains_a_cluster_leader(
    etcd1: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    nodes = start_nodes(etcd1, cluster_name, tmp_path, 1)
    try:
        leader = nodes.wait_leader(WAIT)
        conn = Beanstalk(leader.address)
        assert conn.put(b"before") >= 1
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + WAIT
        while True:
            conn.sock.sendall(b"put 0 0 60 5\r\nafter\r\n")
            line = conn._line()
            if line == b"DRAINING":
                break
            assert line.startswith(b"INSERTED") and time.monotonic() < deadline, line
            time.sleep(0.05)
        conn.close()
    finally:
        nodes.stop()
