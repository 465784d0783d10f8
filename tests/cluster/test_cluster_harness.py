"""The etcd harness itself: members start healthy, answer the v3 gateway, survive chaos."""

from __future__ import annotations

from tests.cluster.etcd_harness import EtcdCluster, ephemeral_range


def test_single_member_reads_its_writes(etcd1: EtcdCluster, cluster_name: str) -> None:
    key = f"/geanstalk/{cluster_name}/probe"
    first = etcd1.put(key, b"\x00one\r\n")
    second = etcd1.put(key, "two")
    assert second > first
    assert etcd1.get(key) == b"two"
    assert etcd1.get(key + "-absent") is None
    low, _ = ephemeral_range()
    assert all(m.client_port < low and m.peer_port < low for m in etcd1.members)


def test_three_members_survive_killing_the_leader(etcd3: EtcdCluster) -> None:
    assert len(etcd3.running_members()) == 3
    etcd3.put("/harness/before", "kept")
    leader = etcd3.leader()
    old_pid = leader.pid
    leader.kill()
    assert not leader.running
    # The two left elect a new leader and take writes.
    new_leader = etcd3.leader()
    assert new_leader is not leader
    etcd3.put("/harness/during", "two of three")
    # The killed member comes back from its data directory, on its own ports.
    etcd3.restart(leader)
    assert leader.running and leader.pid != old_pid
    etcd3.wait_healthy()
    assert etcd3.get("/harness/before") == b"kept"
    assert etcd3.get("/harness/during") == b"two of three"
    statuses = [m.status() for m in etcd3.members]
    assert len({s["header"]["member_id"] for s in statuses}) == 3
    assert len({s["leader"] for s in statuses}) == 1
