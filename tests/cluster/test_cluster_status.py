"""`geanstalk cluster status` against a real etcd holding keys as the nodes write them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from geanstalk.cluster.keys import Keys, encode_job, leader_value, member_value
from geanstalk.cluster.status import main
from geanstalk.core import Job
from tests.cluster.etcd_harness import EtcdCluster, b64, http_request


def status(etcd: EtcdCluster | str, cluster: str, *extra: str) -> subprocess.CompletedProcess[str]:
    endpoints = etcd if isinstance(etcd, str) else etcd.endpoints
    return subprocess.run(
        [sys.executable, "-m", "geanstalk", "cluster", "status", "--etcd", endpoints,
         "--cluster", cluster, *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def record(job_id: int, created_wall: float, body: bytes = b"x") -> bytes:
    job = Job(job_id, priority=5, runnable_at=None, ttr=60, body=body, delay=0, created_at=0.0)
    job.tube = b"default"
    return encode_job(job, created_wall)


def put(etcd: EtcdCluster, key: bytes, value: bytes) -> tuple[int, int]:
    """Write key; (the revision of the write, the key's create_revision)."""
    revision = etcd.put(key, value)
    code, body = http_request(
        etcd.members[0].client_port, "POST", "/v3/kv/range", {"key": b64(key)}
    )
    assert code == 200
    return revision, int(body["kvs"][0]["create_revision"])


def delete(etcd: EtcdCluster, key: bytes) -> int:
    code, body = http_request(
        etcd.members[0].client_port, "POST", "/v3/kv/deleterange", {"key": b64(key)}
    )
    assert code == 200 and body.get("deleted") == "1"
    return int(body["header"]["revision"])


def test_status_shows_leader_epoch_and_standby_lag(etcd1: EtcdCluster, cluster_name: str) -> None:
    keys = Keys(cluster_name)
    _, epoch = put(etcd1, keys.leader, leader_value("n1", "127.0.0.1:21001"))
    n3_applied = etcd1.put(keys.next_id, b"1001")
    put(etcd1, keys.job(1), record(1, 1_700_000_000.0))
    n3_reported = etcd1.put(
        keys.member("n3"), member_value("n3", "127.0.0.1:21003", "standby", n3_applied)
    )
    # n2 applied up to here; then the leader commits 3 puts and a delete.
    applied = etcd1.put(keys.job(2), record(2, 1_700_000_001.0))
    first_unapplied_at = 1_700_000_100.0
    put(etcd1, keys.job(3), record(3, first_unapplied_at))
    put(etcd1, keys.job(4), record(4, first_unapplied_at + 0.1))
    put(etcd1, keys.job(5), record(5, first_unapplied_at + 0.2))
    head = delete(etcd1, keys.job(2))
    etcd1.put(keys.member("n1"), member_value("n1", "127.0.0.1:21001", "leader", head))
    # n2 reports 250 ms after the first record it has not applied was written.
    etcd1.put(
        keys.member("n2"),
        member_value("n2", "127.0.0.1:21002", "standby", applied, first_unapplied_at + 0.25),
    )
    done = status(etcd1, cluster_name, "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert (view["leader"], view["leader_advertise"], view["epoch"]) == (
        "n1",
        "127.0.0.1:21001",
        epoch,
    )
    assert (view["journal_revision"], view["next_id"], view["jobs"]) == (head, 1001, 4)
    members = {m["node"]: m for m in view["members"]}
    assert [m["node"] for m in view["members"]] == ["n1", "n2", "n3"]  # the leader first
    assert (members["n1"]["role"], members["n1"]["lag_records"]) == ("leader", 0)
    n2 = members["n2"]
    assert n2["role"] == "standby" and n2["applied_revision"] == applied
    assert n2["lag_records"] == 4  # three puts and a delete
    assert n2["lag_revisions"] == head + 1 - applied  # the leader's heartbeat too
    assert n2["lag_ms"] == pytest.approx(250.0, abs=1.0)
    n3 = members["n3"]
    assert (n3["applied_revision"], n3["reported_revision"]) == (n3_applied, n3_reported)
    assert n3["lag_records"] == 1  # job 1, committed before its report
    assert n3["lag_ms"] is None or n3["lag_ms"] >= 0
    assert len(view["etcd"]) == 1 and view["etcd"][0]["healthy"] and view["etcd"][0]["is_leader"]

    text = status(etcd1, cluster_name)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"cluster {cluster_name}  (etcd revision {view['revision']})" or lines[
        0
    ].startswith(f"cluster {cluster_name}  (etcd revision ")
    assert lines[1] == f"leader: n1 at 127.0.0.1:21001, epoch {epoch}, journal at revision {head}"
    assert lines[2] == "jobs: 4, next id 1001"
    table = {ln.split()[0]: ln.split() for ln in lines[4:8]}
    assert table["NODE"] == ["NODE", "ROLE", "ADVERTISE", "APPLIED", "LAG", "REVS", "LAG",
                             "RECORDS", "LAG", "MS"]  # fmt: skip
    assert table["n2"] == ["n2", "standby", "127.0.0.1:21002", str(applied),
                           str(head + 1 - applied), "4", "250"]  # fmt: skip
    assert any(ln.startswith(f"etcd {etcd1.endpoints}: 3.4") for ln in lines)


def test_status_without_a_leader_exits_1(etcd1: EtcdCluster, cluster_name: str) -> None:
    keys = Keys(cluster_name)
    etcd1.put(keys.member("n1"), member_value("n1", "127.0.0.1:21001", "standby", 7))
    done = status(etcd1, cluster_name)
    assert done.returncode == 1
    assert "leader: none" in done.stdout.splitlines()
    assert any(ln.split()[:2] == ["n1", "standby"] for ln in done.stdout.splitlines() if ln)


def test_status_of_an_unknown_cluster(etcd1: EtcdCluster, cluster_name: str) -> None:
    done = status(etcd1, cluster_name, "--json")
    assert done.returncode == 1
    view = json.loads(done.stdout)
    assert (view["leader"], view["members"], view["jobs"], view["next_id"]) == (None, [], 0, 1)


def test_status_when_etcd_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["status", "--etcd", url, "--cluster", "c1", "--timeout", "2"]) == 3
    assert "cannot read etcd" in capsys.readouterr().err


def test_status_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:1"
    assert main(["status", "--etcd", url, "--cluster", "bad/name"]) == 2
    assert main(["status", "--etcd", "127.0.0.1:2379", "--cluster", "c1"]) == 2  # not a URL
    assert main(["status", "--cluster", "c1"]) == 2
    assert "--etcd" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_lag_of_compacted_history_is_unknown(etcd1: EtcdCluster, cluster_name: str) -> None:
    keys = Keys(cluster_name)
    applied = etcd1.put(keys.job(1), record(1, time.time()))
    head = etcd1.put(keys.job(2), record(2, time.time()))
    etcd1.put(keys.leader, leader_value("n1", "127.0.0.1:21001"))
    assert head == applied + 1
    reported = etcd1.put(
        keys.member("n2"), member_value("n2", "127.0.0.1:21002", "standby", applied)
    )
    # The history after what n2 applied is gone.
    code, _ = http_request(etcd1.members[0].client_port, "POST", "/v3/kv/compaction",
                           {"revision": reported})  # fmt: skip
    assert code == 200
    view = json.loads(status(etcd1, cluster_name, "--json").stdout)
    (n2,) = view["members"]
    assert (n2["lag_records"], n2["lag_ms"]) == (None, None)
    assert n2["lag_revisions"] == reported - 1 - applied
