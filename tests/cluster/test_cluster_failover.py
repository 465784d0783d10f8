"""Failover with real processes: 3 etcd members, 3 geanstalk nodes, the leader
killed (or paused) under put/delete load from clients that retry across nodes.

What must hold whatever the timing: every acknowledged put is there exactly
once unless its delete was acknowledged, no acknowledged delete comes back,
and no id is handed out twice. Failover times are printed (run with -s), not
asserted: the machine is shared.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the cluster extra (aiohttp) is not installed")

from tests.cluster.cluster_nodes import Beanstalk, Nodes, Unknown, start_nodes
from tests.cluster.etcd_harness import EtcdCluster

TUBE = b"ha"
WAIT = 60.0  # bound on every wait: a hang fails the test instead of blocking CI


class Load:
    """Producers and consumers that retry on the next node after any failure."""

    def __init__(self, nodes: Nodes, producers: int = 3, consumers: int = 1) -> None:
        self.nodes = nodes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked_puts: dict[int, bytes] = {}
        self.reused_ids: list[int] = []
        self.acked_deletes: set[int] = set()
        self.unknown_deletes: set[int] = set()
        self.ack_times: list[tuple[float, float]] = []  # (sent, acknowledged)
        self.threads = [
            threading.Thread(target=self._produce, args=(i,), daemon=True) for i in range(producers)
        ] + [
            threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(consumers)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _connect(self, index: int) -> Beanstalk | None:
        node = self.nodes.nodes[index % len(self.nodes.nodes)]
        if not node.running or node.paused:
            return None
        try:
            conn = Beanstalk(node.address, timeout=5.0)
            conn.use(TUBE)
            conn.watch(TUBE)
            return conn
        except (OSError, Unknown):
            return None

    def _produce(self, pid: int) -> None:
        seq = 0
        index = pid
        conn: Beanstalk | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = self._connect(index)
                if conn is None:
                    index += 1
                    time.sleep(0.02)
                    continue
            body = b"p%d-%d" % (pid, seq)
            seq += 1
            sent = time.monotonic()
            try:
                jid = conn.put(body)
            except (OSError, Unknown):
                conn.close()
                conn = None
                index += 1
                continue
            with self.lock:
                if jid in self.acked_puts:
                    self.reused_ids.append(jid)
                self.acked_puts[jid] = body
                self.ack_times.append((sent, time.monotonic()))
        if conn is not None:
            conn.close()

    def _consume(self, cid: int) -> None:
        index = cid + 1
        conn: Beanstalk | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = self._connect(index)
                if conn is None:
                    index += 1
                    time.sleep(0.02)
                    continue
            got = None
            try:
                got = conn.reserve(timeout=1)
                if got is not None and conn.delete(got[0]):
                    with self.lock:
                        self.acked_deletes.add(got[0])
            except (OSError, Unknown):
                if got is not None:
                    # Sent, but the answer was lost: it may have been applied.
                    with self.lock:
                        self.unknown_deletes.add(got[0])
                conn.close()
                conn = None
                index += 1
        if conn is not None:
            conn.close()

    def acks(self) -> int:
        with self.lock:
            return len(self.ack_times)

    def first_ack_after(self, when: float) -> float:
        """When the first put sent after when was acknowledged (a reply already on
        its way at that moment does not count)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                later = [acked for sent, acked in self.ack_times[-200:] if sent > when]
            if later:
                return min(later)
            time.sleep(0.01)
        raise TimeoutError("no put was acknowledged after the failure:\n" + self.nodes.logs())

    def wait_acks(self, more: int) -> None:
        target = self.acks() + more
        deadline = time.monotonic() + WAIT
        while self.acks() < target:
            if time.monotonic() > deadline:
                raise TimeoutError("load made no progress:\n" + self.nodes.logs())
            time.sleep(0.01)


def drain(nodes: Nodes) -> dict[int, bytes]:
    """Every job left in the tube, read from the leader (each reserve then deleted)."""
    leader = nodes.wait_leader(WAIT)
    conn = Beanstalk(leader.address)
    conn.watch(TUBE)
    found: dict[int, bytes] = {}
    while True:
        got = conn.reserve(timeout=0)
        if got is None:
            break
        jid, body = got
        assert jid not in found, f"job {jid} reserved twice in the drain"
        found[jid] = body
        assert conn.delete(jid)
    conn.close()
    return found


def check(load: Load, found: dict[int, bytes]) -> None:
    assert load.reused_ids == [], f"ids acknowledged twice: {load.reused_ids[:10]}"
    came_back = sorted(load.acked_deletes & set(found))
    assert came_back == [], f"acknowledged deletes came back: {came_back[:10]}"
    live = {jid: body for jid, body in load.acked_puts.items() if jid not in load.acked_deletes}
    # A delete whose answer was lost may have been applied: such a job may be gone.
    missing = sorted(jid for jid in live if jid not in found and jid not in load.unknown_deletes)
    assert missing == [], f"{len(missing)} acknowledged puts lost: {missing[:10]}"
    wrong = sorted(jid for jid, body in live.items() if jid in found and found[jid] != body)
    assert wrong == [], f"jobs with another body: {wrong[:10]}"
    counts = Counter(found.values())
    twice = sorted(body for body in live.values() if counts[body] > 1)
    assert twice == [], f"acknowledged puts present more than once: {twice[:10]}"


def failover_rounds(
    etcd: EtcdCluster,
    cluster: str,
    tmp: Path,
    rounds: int,
    *,
    etcd_kill_every: int = 0,
    pause_every: int = 0,
) -> list[float]:
    nodes = start_nodes(etcd, cluster, tmp)
    times: list[float] = []
    try:
        nodes.wait_leader(WAIT)
        load = Load(nodes)
        load.start()
        try:
            for r in range(1, rounds + 1):
                load.wait_acks(30)
                if etcd_kill_every and r % etcd_kill_every == 0:
                    member = etcd.members[r % len(etcd.members)]
                    member.kill()
                    load.wait_acks(10)
                    etcd.restart(member)
                    # Losing its etcd endpoint mid-write may have made the leader step down.
                    load.wait_acks(10)
                leader = nodes.wait_leader(WAIT)
                if pause_every and r % pause_every == 0:
                    leader.pause()
                    failed = time.monotonic()
                    times.append(load.first_ack_after(failed) - failed)
                    nodes.wait_leader(WAIT, not_name=leader.name)
                    leader.resume()
                    continue
                leader.kill()
                failed = time.monotonic()
                times.append(load.first_ack_after(failed) - failed)
                leader.start()
            load.wait_acks(30)
        finally:
            load.finish()
        found = drain(nodes)
        check(load, found)
        print(
            f"\n{rounds} rounds: {len(load.acked_puts)} acked puts, "
            f"{len(load.acked_deletes)} acked deletes "
            f"({len(load.unknown_deletes)} unknown), {len(found)} left; failover "
            f"median {statistics.median(times):.3f}s max {max(times):.3f}s "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )
        return times
    finally:
        nodes.stop()


def test_leader_killed_under_load_loses_no_acknowledged_change(
    etcd3: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    failover_rounds(etcd3, cluster_name, tmp_path, rounds=4)


@pytest.mark.stress
def test_fifty_failovers_with_etcd_kills_and_pauses(
    etcd3: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    failover_rounds(etcd3, cluster_name, tmp_path, rounds=50, etcd_kill_every=5, pause_every=7)


@pytest.mark.stress
def test_ten_failovers_timed(etcd3: EtcdCluster, cluster_name: str, tmp_path: Path) -> None:
    failover_rounds(etcd3, cluster_name, tmp_path, rounds=10)


def test_paused_leader_acknowledges_nothing_and_ends_a_standby(
    etcd3: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    nodes = start_nodes(etcd3, cluster_name, tmp_path)
    try:
        old = nodes.wait_leader(WAIT)
        early = Beanstalk(old.address)
        early.use(TUBE)
        before = early.put(b"before the pause")
        old.pause()
        # Sent while the leader is stopped: it sits in the socket until SIGCONT.
        early.sock.sendall(b"put 0 0 60 6\r\nzombie\r\n")
        new = nodes.wait_leader(WAIT, not_name=old.name)
        conn = Beanstalk(new.address)
        conn.use(TUBE)
        first = conn.put(b"the new leader's first write")
        assert first > before
        old.resume()
        # The old leader answers its held put with INTERNAL_ERROR or closes: never INSERTED.
        try:
            line = early._line()
        except Unknown:
            line = b"(closed)"
        assert line in (b"INTERNAL_ERROR", b"(closed)"), line
        early.close()
        # It rejoins as a standby: a member again, role standby, and the new leader stays.
        deadline = time.monotonic() + WAIT
        while True:
            info = nodes.member_info(old.name)
            if info is not None and info.get("role") == "standby":
                break
            assert time.monotonic() < deadline, nodes.logs()
            time.sleep(0.05)
        assert nodes.wait_leader(WAIT).name == new.name
        conn.close()
        # Nothing the zombie held landed; what was acknowledged is there.
        found = drain(nodes)
        assert sorted(found.values()) == [b"before the pause", b"the new leader's first write"]
    finally:
        nodes.stop()


def test_without_quorum_a_put_is_not_acknowledged_and_service_comes_back(
    etcd3: EtcdCluster, cluster_name: str, tmp_path: Path
) -> None:
    nodes = start_nodes(etcd3, cluster_name, tmp_path)
    try:
        leader = nodes.wait_leader(WAIT)
        conn = Beanstalk(leader.address, timeout=WAIT)
        conn.use(TUBE)
        kept = conn.put(b"before the outage")
        lost = etcd3.members[:2]
        for member in lost:
            member.kill()
        # Waits (bounded by the lease), then INTERNAL_ERROR or a close: never INSERTED.
        with pytest.raises(Unknown):
            conn.put(b"during the outage")
        conn.close()
        for member in lost:
            etcd3.restart(member)
        # Quorum is back: some node leads again, without any restart, with the job.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                conn = Beanstalk(nodes.wait_leader(WAIT).address)
                conn.use(TUBE)
                after = conn.put(b"after the outage")
                conn.close()
                break
            except (OSError, Unknown):
                assert time.monotonic() < deadline, nodes.logs()
                time.sleep(0.1)
        assert after > kept
        found = drain(nodes)
        assert found[kept] == b"before the outage" and found[after] == b"after the outage"
        assert all(n.running for n in nodes.nodes)
    finally:
        nodes.stop()
