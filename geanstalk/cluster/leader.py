"""Leadership: a node's lease, the campaign for the leader key, and when to stop.

The leader key is put only if absent (``create_revision == 0``) and is
attached to the node's lease, so it disappears when the lease expires: a
dead leader's key is gone about TTL seconds after its last keep-alive, and
the standbys, which watch it, campaign at once.

Stopping in time: etcd expires a lease no earlier than TTL seconds after it
handled the last keep-alive, which it handled after the node sent it. So
the node's own bound is ``send time + TTL - margin`` on its monotonic clock:
it stops acknowledging (the journal checks ``deadline`` before every reply)
before etcd can hand the leadership to anyone else. Keep-alives go out
every TTL/4, so a few slow or lost ones cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from geanstalk.cluster import etcd
from geanstalk.cluster.keys import Keys, LeaderInfo, leader_value, parse_leader

log = logging.getLogger("geanstalk.cluster")

DEFAULT_TTL = 2  # seconds; etcd's own floor with its default election timeout
DEFAULT_MARGIN = 0.5


class Lease:
    """One etcd lease, renewed in the background; ``deadline`` is the local bound."""

    def __init__(
        self,
        client: etcd.EtcdClient,
        ttl: int = DEFAULT_TTL,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if margin <= 0 or margin >= ttl:
            raise ValueError("the lease margin must be between 0 and the TTL")
        self._client = client
        self.ttl = ttl
        self.margin = margin
        self._clock = clock
        self.id = 0
        self.granted_ttl = 0
        self.deadline = float("-inf")
        self.lost = True
        self.on_lost: Callable[[str], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def interval(self) -> float:
        return self.granted_ttl / 4

    def alive(self) -> bool:
        return not self.lost and self._clock() < self.deadline

    async def grant(self, timeout: float | None = None) -> None:
        """A fresh lease (the old one, if any, is left to expire), kept alive from now on."""
        self.stop()
        sent = self._clock()
        lease_id, ttl = await self._client.lease_grant(self.ttl, timeout)
        self.id = lease_id
        self.granted_ttl = ttl
        self.deadline = sent + ttl - self.margin
        self.lost = False
        self._arm_timer()
        self._task = asyncio.ensure_future(self._keepalive())

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self.deadline - self._clock()), self._check)

    def _check(self) -> None:
        self._timer = None
        if self.lost:
            return
        if self._clock() >= self.deadline:
            self._expire("no keep-alive was answered before the local lease deadline")
        else:
            self._arm_timer()

    def _expire(self, reason: str) -> None:
        if self.lost:
            return
        self.lost = True
        self.deadline = min(self.deadline, self._clock())
        log.warning("lease %x lost: %s", self.id, reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.on_lost is not None:
            self.on_lost(reason)

    async def _keepalive(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.interval)
            if self.lost:
                return
            sent = self._clock()
            left = self.deadline - sent
            if left <= 0:
                self._expire("the local lease deadline passed")
                return
            try:
                ttl = await self._client.lease_keepalive(
                    self.id, timeout=min(left, self.interval * 2)
                )
            except etcd.EtcdError as exc:
                log.info("lease %x: keep-alive failed: %s", self.id, exc)
                continue
            if ttl <= 0:
                self._expire("etcd no longer knows the lease")
                return
            if not self.lost:
                self.deadline = max(self.deadline, sent + ttl - self.margin)

    def stop(self) -> None:
        """Stop renewing (the lease then expires in etcd on its own)."""
        self.lost = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def revoke(self, timeout: float = 1.0) -> None:
        """Give the lease back now (the leader key and member key go with it)."""
        lease_id = self.id
        self.stop()
        self.deadline = float("-inf")
        if lease_id:
            with contextlib.suppress(etcd.EtcdError):
                await self._client.lease_revoke(lease_id, timeout)


async def campaign(
    client: etcd.EtcdClient, keys: Keys, lease: Lease, node: str, advertise: str
) -> tuple[bool, LeaderInfo | None]:
    """Try to become the leader: (won, the leader now), in one transaction."""
    value = leader_value(node, advertise)
    result = await client.txn(
        [etcd.compare_create(keys.leader, 0)],
        [etcd.op_put(keys.leader, value, lease.id)],
        [etcd.op_get(keys.leader)],
        timeout=max(0.1, lease.deadline - time.monotonic()),
    )
    if result.succeeded:
        return True, LeaderInfo(node, advertise, result.revision, lease.id, result.revision)
    kvs = result.responses[0] if result.responses else []
    return False, parse_leader(kvs[0]) if kvs else None


async def resign(client: etcd.EtcdClient, keys: Keys, epoch: int, timeout: float = 1.0) -> None:
    """Delete the leader key if it is still ours (a graceful stop hands over at once)."""
    with contextlib.suppress(etcd.EtcdError):
        await client.txn(
            [etcd.compare_create(keys.leader, epoch)],
            [etcd.op_delete(keys.leader)],
            timeout=timeout,
        )
