"""The relay and `geanstalk cluster status` with real nodes: two `geanstalk serve --etcd`
processes on one real etcd member, a client on the standby, and a kill -9 of the leader."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster.cluster_nodes import Nodes, start_nodes
from tests.cluster.etcd_harness import EtcdCluster
from tests.servers import recv_until


def status(etcd: EtcdCluster, cluster: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "geanstalk", "cluster", "status", "--etcd", etcd.endpoints,
         "--cluster", cluster, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def ask(sock: socket.socket, command: bytes) -> bytes:
    sock.sendall(command)
    return recv_until(sock, 1, timeout=15)


def stats_pid(sock: socket.socket) -> int:
    reply = ask(sock, b"stats\r\n")
    return int(reply.split(b"\npid: ")[1].split(b"\n")[0])


def wait_status(
    etcd: EtcdCluster,
    cluster: str,
    ok: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = status(etcd, cluster)
        if ok(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s: {view}")
        time.sleep(0.2)


def test_relay_and_status_through_a_failover(
    etcd1: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    nodes: Nodes = start_nodes(etcd1, cluster_name, tmp_path, 2)
    try:
        leader = nodes.wait_leader()
        standby = next(n for n in nodes.nodes if n is not leader)
        assert leader.proc is not None and standby.proc is not None

        # A client of the standby is served by the leader, through the relay.
        relayed = socket.create_connection(standby.address, timeout=15)
        assert stats_pid(relayed) == leader.proc.pid
        assert ask(relayed, b"use ops\r\n") == b"USING ops\r\n"
        ids = [int(ask(relayed, b"put 5 0 60 3\r\nj%02d\r\n" % i).split()[1]) for i in range(3)]
        assert ask(relayed, b"delete %d\r\n" % ids[0]) == b"DELETED\r\n"

        # Status: who leads, at which epoch, and the standby caught up.
        before = wait_status(
            etcd1,
            cluster_name,
            lambda v: (
                len(v["members"]) == 2
                and v["journal_revision"] is not None
                and all(m["applied_revision"] >= v["journal_revision"] for m in v["members"])
            ),
            "the standby catching up",
        )
        assert before["leader"] == leader.name
        assert before["leader_advertise"] == f"127.0.0.1:{leader.port}"
        assert before["jobs"] == 2
        assert [(m["node"], m["role"]) for m in before["members"]] == [
            (leader.name, "leader"),
            (standby.name, "standby"),
        ]
        assert before["members"][1]["lag_records"] == 0

        # The leader dies: the relayed connection is closed, the standby takes over.
        leader.kill()
        relayed.settimeout(30)
        assert relayed.recv(100) == b""
        relayed.close()
        after = wait_status(
            etcd1, cluster_name, lambda v: v["leader"] == standby.name, "the takeover"
        )
        assert after["epoch"] > before["epoch"]
        assert after["jobs"] == 2
        with socket.create_connection(standby.address, timeout=15) as direct:
            assert stats_pid(direct) == standby.proc.pid
            assert ask(direct, b"peek %d\r\n" % ids[1]) == b"FOUND %d 3\r\nj01\r\n" % ids[1]
            assert ask(direct, b"peek %d\r\n" % ids[0]) == b"NOT_FOUND\r\n"
    finally:
        nodes.stop()
