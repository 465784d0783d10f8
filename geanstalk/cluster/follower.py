"""A standby's copy of the cluster: a snapshot, then every change from etcd's watch.

The copy is a real engine (a Server with its storage, tubes and timers, and
no clients): job keys are restored into it as a binlog replay would restore
them (times are wall-clock in the records, reserved comes back ready,
buried jobs keep their journal order, which is mod_revision order), and a
later record of the same job replaces the earlier one. The leader key and
next-id are followed too, so at takeover the node knows the id mark and
needs only to wait until its copy has applied the revision of its own
leader key: every job write of an older epoch has a lower revision.

A watch broken by a network error resumes from the revision after the last
one applied; a watch whose revision was compacted away starts over from a
fresh snapshot into a fresh engine (``on_reset`` hands it to the node).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geanstalk.cluster import etcd
from geanstalk.cluster.keys import (
    Keys,
    LeaderInfo,
    decode_job,
    decode_next_id,
    parse_leader,
)

if TYPE_CHECKING:
    from geanstalk.server import Server

log = logging.getLogger("geanstalk.cluster")

SNAPSHOT_PAGE = 2000
# Every live node rewrites its members key each second, so a watch of the
# cluster's prefix that hears nothing this long is stuck (a paused etcd
# member keeps its sockets open): it is started again on another member.
WATCH_IDLE_SECONDS = 5.0
RETRY_DELAY = 0.2


class Follower:
    """Keeps ``server`` equal to the journal in etcd, up to ``applied`` (a revision)."""

    def __init__(
        self,
        client: etcd.EtcdClient,
        keys: Keys,
        make_server: Callable[[], Server],
    ) -> None:
        self._client = client
        self._keys = keys
        self._make_server = make_server
        self.server: Server | None = None
        self.applied = 0
        self.next_id = 1
        self.leader: LeaderInfo | None = None
        # Told when the leader key changes (None: no leader) and when a
        # compaction forced a fresh engine.
        self.on_leader: Callable[[LeaderInfo | None], None] | None = None
        self.on_reset: Callable[[Server], None] | None = None
        self._progress = asyncio.Event()
        self.events_applied = 0

    async def snapshot(self) -> Server:
        """A fresh engine holding every job as of one revision."""
        keys = self._keys
        found: list[tuple[int, Any]] = []
        leader: LeaderInfo | None = None
        next_id = 1
        revision = 0
        async for kvs, rev in self._client.pages(keys.prefix, SNAPSHOT_PAGE):
            revision = rev
            for kv in kvs:
                job_id = keys.job_id(kv.key)
                if job_id is not None:
                    found.append((kv.mod_revision, decode_job(job_id, kv.value)))
                elif kv.key == keys.leader:
                    leader = parse_leader(kv)
                elif kv.key == keys.next_id:
                    next_id = decode_next_id(kv.value)
        found.sort(key=lambda e: e[0])
        server = self._make_server()
        server.restore([job for _, job in found], 1)
        self.server = server
        self.applied = revision
        self.next_id = next_id
        self.leader = leader
        self._progress.set()
        log.info("cluster snapshot: %d jobs at revision %d", len(found), revision)
        return server

    async def run(self) -> None:
        """Follow the watch until cancelled."""
        while True:
            try:
                async for batch in self._client.watch(
                    self._keys.prefix,
                    prefix=True,
                    start_revision=self.applied + 1,
                    idle_timeout=WATCH_IDLE_SECONDS,
                ):
                    if batch.events:
                        self.apply(batch.events)
            except etcd.Compacted as exc:
                log.warning("cluster watch: %s; taking a fresh snapshot", exc)
                await self._resnapshot()
            except etcd.EtcdError as exc:
                log.info("cluster watch interrupted: %s", exc)
                await asyncio.sleep(RETRY_DELAY)

    async def _resnapshot(self) -> None:
        while True:
            try:
                server = await self.snapshot()
            except etcd.EtcdError as exc:
                log.info("cluster snapshot failed: %s", exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            if self.on_reset is not None:
                self.on_reset(server)
            if self.on_leader is not None:
                self.on_leader(self.leader)
            return

    def apply(self, events: list[etcd.Event]) -> None:
        """Changes in revision order, into the engine."""
        server = self.server
        assert server is not None
        keys = self._keys
        job_prefix = keys.job_prefix
        leader_changed = False
        for event in events:
            kv = event.kv
            key = kv.key
            if key.startswith(job_prefix):
                job_id = int(key[len(job_prefix) :])
                server.forget(job_id)
                if not event.deleted:
                    server.restore([decode_job(job_id, kv.value)], 1)
            elif key == keys.leader:
                self.leader = None if event.deleted else parse_leader(kv)
                leader_changed = True
            elif key == keys.next_id and not event.deleted:
                self.next_id = max(self.next_id, decode_next_id(kv.value))
            if kv.mod_revision > self.applied:
                self.applied = kv.mod_revision
        self.events_applied += len(events)
        self._progress.set()
        if leader_changed and self.on_leader is not None:
            self.on_leader(self.leader)

    async def wait_applied(self, revision: int) -> None:
        """Until every change up to revision is in the engine."""
        while self.applied < revision:
            self._progress.clear()
            await self._progress.wait()
