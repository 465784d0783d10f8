"""The etcd journal against a real single-member etcd: every journaled transition
becomes the job key it should, a follower rebuilds the same engine from those
keys (snapshot and watch alike), and a write of an old epoch never lands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the cluster extra (aiohttp) is not installed")

from geanstalk.cluster import etcd, keys
from geanstalk.cluster.follower import Follower
from geanstalk.cluster.journal import EtcdJournal
from geanstalk.cluster.leader import Lease, campaign
from geanstalk.core import BURIED, DELAYED, READY
from geanstalk.server import Server


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def _server(client: etcd.EtcdClient, k: keys.Keys, **kw: Any) -> Server:
    loop = asyncio.get_running_loop()
    return Server(loop, EtcdJournal(client, k, loop, **kw))


async def _leader(client: etcd.EtcdClient, k: keys.Keys, name: str = "n1") -> tuple[Lease, int]:
    lease = Lease(client, ttl=5, margin=1.0)
    await lease.grant()
    won, info = await campaign(client, k, lease, name, "127.0.0.1:1")
    assert won and info is not None
    return lease, info.epoch


async def _armed_leader(
    client: etcd.EtcdClient, k: keys.Keys, **kw: Any
) -> tuple[Server, EtcdJournal, Lease]:
    """The leader's server, its journal armed with the won epoch and lease."""
    lease, epoch = await _leader(client, k)
    server = _server(client, k, **kw)
    journal = server.journal
    assert isinstance(journal, EtcdJournal)
    journal.arm(epoch, lease, 1)
    return server, journal, lease


async def _durable(server: Server) -> None:
    """Until every journaled change is committed (the protocol's reply gate, awaited)."""
    journal = server.journal
    seq = journal.pending()
    done = asyncio.get_running_loop().create_future()
    journal.wait_durable(seq, lambda: done.done() or done.set_result(None))
    await asyncio.wait_for(done, 10)


def _state(server: Server) -> dict[int, tuple[Any, ...]]:
    """What a restart must bring back of each job (reserved shows as ready)."""
    out = {}
    for t in server.storage.tube_list:
        for job in list(t.ready) + list(t.delay) + list(t.buried.values()):
            out[job.id] = (t.name, job.state, job.priority, job.ttr, job.delay, job.body)
    for job in server.storage.ttr:
        out[job.id] = (job.tube.name, READY, job.priority, job.ttr, job.delay, job.body)
    return out


def _buried_order(server: Server, tube: bytes) -> list[int]:
    return list(server.storage.tubes[tube].buried)


def test_every_transition_maps_to_its_key_and_back(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def main() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as client:
            server, journal, lease = await _armed_leader(client, k)
            # A standby following from before the first write.
            follower = Follower(client, k, lambda: _server(client, k))
            await follower.snapshot()
            following = asyncio.ensure_future(follower.run())

            s = server.storage
            conn = server.new_client(lambda job, word: None)
            tube = s.tube(b"work")
            s.use(conn, b"work")
            s.watch(conn, b"work")
            s.ignore(conn, b"default")

            def put(pri: int, delay: int, body: bytes) -> int:
                job = server.new_job(pri, delay, 60, tube)
                job.body = body
                server.put(job)
                return job.id

            a = put(5, 0, b"a")
            b = put(1, 0, b"b\r\nwith crlf")
            c = put(9, 3600, b"c delayed")
            d = put(3, 0, b"d")
            await _durable(server)
            rec = keys.decode_record(a, (await client.get(k.job(a))).value)  # type: ignore[union-attr]
            assert (rec.state, rec.priority, rec.tube, rec.body) == (READY, 5, b"work", b"a")
            rec = keys.decode_record(c, (await client.get(k.job(c))).value)  # type: ignore[union-attr]
            assert rec.state == DELAYED and rec.delay == 3600 and rec.runnable_at is not None

            # reserve (not journaled) then bury; reserve then release with a delay.
            assert server.reserve_next(conn).id == b  # type: ignore[union-attr]
            mod_before = (await client.get(k.job(b))).mod_revision  # type: ignore[union-attr]
            await _durable(server)
            assert (await client.get(k.job(b))).mod_revision == mod_before  # type: ignore[union-attr]
            server.bury(conn, b, 7)
            assert server.reserve_next(conn).id == d  # type: ignore[union-attr]
            server.bury(conn, d, 8)
            assert server.reserve_next(conn).id == a  # type: ignore[union-attr]
            server.release(conn, a, 4, 1800)
            await _durable(server)
            rec = keys.decode_record(b, (await client.get(k.job(b))).value)  # type: ignore[union-attr]
            assert (rec.state, rec.priority, rec.counters[0], rec.counters[3]) == (BURIED, 7, 1, 1)
            rec = keys.decode_record(a, (await client.get(k.job(a))).value)  # type: ignore[union-attr]
            assert (rec.state, rec.priority, rec.delay) == (DELAYED, 4, 1800)

            # A fresh snapshot and the follower's watch both rebuild the same engine.
            snap = await Follower(client, k, lambda: _server(client, k)).snapshot()
            await follower.wait_applied(journal.last_revision)
            assert _state(snap) == _state(server) == _state(follower.server)  # type: ignore[arg-type]
            assert _buried_order(snap, b"work") == [b, d]

            # kick-job (delayed -> ready), kick (buried -> ready), delete.
            server.kick_job(c)
            assert server.kick(conn, 1) == 1
            job = server.reserve_next(conn)
            assert job is not None
            server.delete(conn, job.id)
            server.delete(conn, d)
            await _durable(server)
            assert await client.get(k.job(job.id)) is None
            assert await client.get(k.job(d)) is None
            rec = keys.decode_record(c, (await client.get(k.job(c))).value)  # type: ignore[union-attr]
            assert rec.state == READY and rec.counters[4] == 1

            snap = await Follower(client, k, lambda: _server(client, k)).snapshot()
            await follower.wait_applied(journal.last_revision)
            assert _state(snap) == _state(server) == _state(follower.server)  # type: ignore[arg-type]
            # next-id was raised past every id handed out, in the same transactions.
            assert await keys.read_next_id(client, k) > max(a, b, c, d)
            following.cancel()
            await lease.revoke()
            await client.delete(k.prefix, prefix=True)

    run(main)


def test_group_commit_splits_by_operation_limit(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def main() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as client:
            server, journal, lease = await _armed_leader(client, k, max_ops=8, max_inflight=2)
            tube = server.storage.tube(b"default")
            ids = []
            for i in range(100):
                job = server.new_job(0, 0, 60, tube)
                job.body = b"x%d" % i
                server.put(job)
                ids.append(job.id)
            await _durable(server)
            assert journal.records_written == 100
            assert journal.txns_committed >= 100 // 7
            kvs, _ = await client.get_prefix(k.job_prefix)
            assert [k.job_id(kv.key) for kv in kvs] == ids
            await lease.revoke()
            await client.delete(k.prefix, prefix=True)

    run(main)


def test_write_of_an_old_epoch_fails_and_is_never_acknowledged(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def main() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as client:
            old_lease, old_epoch = await _leader(client, k, "old")
            server = _server(client, k)
            journal = server.journal
            assert isinstance(journal, EtcdJournal)
            journal.arm(old_epoch, old_lease, 1)
            fenced: list[str] = []
            journal.on_fenced = fenced.append
            tube = server.storage.tube(b"default")
            job = server.new_job(0, 0, 60, tube)
            server.put(job)
            await _durable(server)

            # The old leader's key goes (as when its lease expires) and another node wins.
            await client.delete(k.leader)
            new_lease, new_epoch = await _leader(client, k, "new")
            assert new_epoch > old_epoch

            late = server.new_job(0, 0, 60, tube)
            server.put(late)
            seq = journal.pending()
            released: list[int] = []
            journal.wait_durable(seq, lambda: released.append(seq))
            for _ in range(200):
                if fenced:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert fenced and "epoch" in fenced[0]
            assert released == []
            assert journal.durable() < seq
            assert journal.pending() > journal.durable()  # nothing more goes out
            assert await client.get(k.job(late.id)) is None
            assert await client.get(k.job(job.id)) is not None
            # Even the raw transaction, replayed by hand, fails on the compare.
            result = await client.txn(
                [etcd.compare_create(k.leader, old_epoch)],
                [etcd.op_put(k.job(late.id), b"zombie")],
            )
            assert not result.succeeded
            await old_lease.revoke()
            await new_lease.revoke()
            await client.delete(k.prefix, prefix=True)

    run(main)


def test_nothing_is_acknowledged_past_the_lease_deadline(etcd1, cluster_name: str) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def main() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as client:
            _, journal, lease = await _armed_leader(client, k)
            fenced: list[str] = []
            journal.on_fenced = fenced.append
            assert journal.pending() == journal.durable() == 0
            lease.deadline = 0.0  # as if the process had been paused past its lease
            assert journal.pending() > journal.durable()
            await asyncio.sleep(0)
            assert fenced and "lease" in fenced[0]
            await lease.revoke()
            await client.delete(k.prefix, prefix=True)

    run(main)


def test_a_follower_behind_a_compaction_starts_from_a_fresh_snapshot(
    etcd1, cluster_name: str
) -> None:  # type: ignore[no-untyped-def]
    k = keys.Keys(cluster_name)

    async def main() -> None:
        async with etcd.EtcdClient(etcd1.endpoints) as client:
            server, journal, lease = await _armed_leader(client, k)
            follower = Follower(client, k, lambda: _server(client, k))
            first = await follower.snapshot()
            reset: list[Server] = []
            follower.on_reset = reset.append
            tube = server.storage.tube(b"default")
            for i in range(5):
                job = server.new_job(i, 0, 60, tube)
                job.body = b"%d" % i
                server.put(job)
                await _durable(server)  # one revision each
            # History up to now is gone: the follower's next revision was compacted.
            await client.compact(journal.last_revision)
            following = asyncio.ensure_future(follower.run())
            await asyncio.wait_for(follower.wait_applied(journal.last_revision), 10)
            following.cancel()
            assert len(reset) == 1 and reset[0] is follower.server and reset[0] is not first
            assert _state(reset[0]) == _state(server)
            await lease.revoke()
            await client.delete(k.prefix, prefix=True)

    run(main)
