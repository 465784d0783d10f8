"""The key layout, the job record encoding, and the etcd client against a real etcd."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

pytest.importorskip("aiohttp", reason="the cluster extra (aiohttp) is not installed")

from geanstalk.cluster import etcd, keys
from geanstalk.core import BURIED, DELAYED, READY, RESERVED, Job


def _job(state: int, *, delay: int = 0, body: bytes = b"hello", tube: bytes = b"default") -> Job:
    now = time.monotonic()
    job = Job(
        42,
        priority=7,
        runnable_at=now + 30 if state == DELAYED else None,
        ttr=9,
        body=body,
        delay=delay,
        created_at=now - 5,
    )
    job.state = state
    job.tube = tube
    job.reserves, job.timeouts, job.releases, job.buries, job.kicks = 1, 2, 3, 4, 5
    return job


def test_layout() -> None:
    k = keys.Keys("prod")
    assert k.leader == b"/geanstalk/prod/leader"
    assert k.member("n1") == b"/geanstalk/prod/members/n1"
    assert k.job(12) == b"/geanstalk/prod/job/00000000000000000012"
    assert k.job(2**64 - 1) == b"/geanstalk/prod/job/18446744073709551615"
    assert k.next_id == b"/geanstalk/prod/next-id"
    assert k.job_id(k.job(12)) == 12
    assert k.job_id(k.leader) is None
    assert k.member_name(k.member("n1")) == "n1"
    # Keys sort by id, so a range over the prefix reads jobs in id order.
    assert sorted([k.job(10), k.job(9), k.job(100)]) == [k.job(9), k.job(10), k.job(100)]
    for bad in ("", "a/b", "x" * 65, "sp ace"):
        with pytest.raises(ValueError):
            keys.Keys(bad)


@pytest.mark.parametrize("state", [READY, DELAYED, BURIED])
def test_record_round_trip(state: int) -> None:
    job = _job(state, delay=30 if state == DELAYED else 0, body=b"\x00\r\nbytes\xff", tube=b"t-1")
    off = time.time() - time.monotonic()
    value = keys.encode_job(job, off)
    rec = keys.decode_record(42, value)
    assert (rec.id, rec.state, rec.priority, rec.ttr, rec.delay) == (42, state, 7, 9, job.delay)
    assert rec.tube == b"t-1" and rec.body == b"\x00\r\nbytes\xff"
    assert rec.counters == (1, 2, 3, 4, 5)
    assert math.isclose(rec.created_at, job.created_at + off)
    if state == DELAYED:
        assert rec.runnable_at is not None
        assert math.isclose(rec.runnable_at, job.runnable_at + off)
    else:
        assert rec.runnable_at is None
    back = keys.decode_job(42, value)
    assert back.state == state and back.tube == b"t-1" and back.body == job.body
    assert (back.reserves, back.timeouts, back.releases, back.buries, back.kicks) == (1, 2, 3, 4, 5)


def test_reserved_record_comes_back_ready() -> None:
    value = keys.encode_job(_job(RESERVED), 0.0)
    assert keys.decode_job(42, value).state == READY


def test_bad_records_are_refused() -> None:
    value = keys.encode_job(_job(READY), 0.0)
    with pytest.raises(keys.RecordError):
        keys.decode_record(1, value[:10])
    with pytest.raises(keys.RecordError):
        keys.decode_record(1, value + b"x")
    with pytest.raises(keys.RecordError):
        keys.decode_record(1, b"\x02" + value[1:])


def test_prefix_end() -> None:
    assert etcd.prefix_end(b"/a/") == b"/a0"
    assert etcd.prefix_end(b"a\xff") == b"b"
    assert etcd.prefix_end(b"") == b"\0"


def test_client_against_etcd(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def run() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as c:
            first = await c.put(k.job(1), b"one")
            await c.put(k.job(2), b"two")
            await c.put(k.next_id, keys.encode_next_id(100))
            got = await c.get(k.job(1))
            assert got is not None and got.value == b"one" and got.create_revision == first
            assert await c.get(k.job(3)) is None
            # Paged reads see one revision.
            kvs, rev = await c.get_prefix(k.job_prefix, page=1)
            assert [kv.value for kv in kvs] == [b"one", b"two"] and rev >= first
            # A compare on the leader key's create_revision: put-if-absent, then fenced writes.
            won = await c.txn(
                [etcd.compare_create(k.leader, 0)],
                [etcd.op_put(k.leader, keys.leader_value("n1", "127.0.0.1:1"))],
                [etcd.op_get(k.leader)],
            )
            assert won.succeeded
            lost = await c.txn(
                [etcd.compare_create(k.leader, 0)],
                [etcd.op_put(k.leader, b"{}")],
                [etcd.op_get(k.leader)],
            )
            assert not lost.succeeded and lost.responses[0][0].create_revision == won.revision
            view = await keys.read_cluster(c, k)
            assert view.leader is not None and view.leader.node == "n1"
            assert view.leader.epoch == won.revision and view.next_id == 100 and view.jobs == 2
            # Leases: granted, renewed, revoked (then gone).
            lease, ttl = await c.lease_grant(5)
            assert ttl == 5 and await c.lease_keepalive(lease) == 5
            await c.put(k.member("n1"), keys.member_value("n1", "h:1", "standby", 7), lease)
            members = await keys.read_members(c, k)
            assert [m.node for m in members] == ["n1"] and members[0].applied_revision == 7
            await c.lease_revoke(lease)
            assert await c.lease_keepalive(lease) == 0
            assert await keys.read_members(c, k) == []
            # A watch from a past revision replays history in order, then follows.
            seen: list[tuple[bool, bytes]] = []

            async def follow() -> None:
                async for batch in c.watch(k.job_prefix, prefix=True, start_revision=first):
                    seen.extend((e.deleted, e.kv.key) for e in batch.events)
                    if len(seen) >= 3:
                        return

            task = asyncio.ensure_future(follow())
            await asyncio.sleep(0.05)
            deleted, _ = await c.delete(k.job(1))
            assert deleted == 1
            await asyncio.wait_for(task, 10)
            assert seen == [(False, k.job(1)), (False, k.job(2)), (True, k.job(1))]
            status = await c.status()
            assert status["revision"] >= first and "version" in status
            await c.delete(k.prefix, prefix=True)

    asyncio.run(run())


def test_watch_from_compacted_revision_raises(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def run() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as c:
            old = await c.put(k.job(1), b"a")
            now = await c.put(k.job(1), b"b")
            await c.compact(now)
            with pytest.raises(etcd.Compacted) as info:
                async for _ in c.watch(k.job_prefix, prefix=True, start_revision=old):
                    pass
            assert info.value.compact_revision >= now
            await c.delete(k.prefix, prefix=True)

    asyncio.run(run())


def test_unreachable_endpoint_is_unavailable() -> None:
    async def run() -> None:
        # Port 9 (discard) is not listening on loopback here: connection refused.
        async with etcd.EtcdClient("http://127.0.0.1:9", timeout=2.0) as c:
            with pytest.raises(etcd.EtcdUnavailable):
                await c.get(b"x")

    asyncio.run(run())
