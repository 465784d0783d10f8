"""One cluster node's life: standby, catch up, lead and serve; deposed, standby again.

- Standby: a lease of its own (its members key hangs on it), a snapshot of
  the journal into a fresh engine, the watch from there on (follower.py).
  Clients that connect are relayed to the leader (relay.py).
- Campaign: whenever no leader key exists (at start, or when the watch sees
  it deleted), put it if absent, on this node's lease.
- Takeover: wait until the engine has applied the revision of its own
  leader key (so it holds every change of every older epoch), arm the
  journal with that epoch and the next-id mark, then serve: new
  connections get the real protocol from now on.
- Deposed (lease deadline passed, a fenced write failed, or a write failed
  without knowing whether it applied): the journal acknowledges nothing
  more, every held reply becomes INTERNAL_ERROR and client connections
  close, the engine is thrown away (it may hold changes etcd never got),
  and the node starts again as a standby from a fresh snapshot.
- Graceful stop of a leader: commit what is queued, delete the leader key
  and revoke the lease, so a standby takes over at once rather than after
  the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from geanstalk.cluster import config_problem, etcd
from geanstalk.cluster.follower import Follower
from geanstalk.cluster.journal import EtcdJournal
from geanstalk.cluster.keys import (
    Keys,
    LeaderInfo,
    check_node_name,
    member_value,
    read_members,
)
from geanstalk.cluster.leader import Lease, campaign, resign
from geanstalk.server import Server

if TYPE_CHECKING:
    from geanstalk.runner import Runner

log = logging.getLogger("geanstalk.cluster")

HEARTBEAT_SECONDS = 1.0
COMPACT_SECONDS = 30.0
# Revisions kept behind the slowest standby when compacting.
COMPACT_KEEP = 1000
RETRY_DELAY = 0.5
STEP_DOWN_REPLY = b"INTERNAL_ERROR\r\n"


class ClusterError(ValueError):
    """The cluster options cannot work (reported as a usage error)."""


def default_advertise(listen: str, port: int) -> str:
    host = listen
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class _Closing(asyncio.Protocol):
    """A standby without a relay: the client is closed, to reconnect elsewhere."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _NoRelay:
    @staticmethod
    def protocol() -> asyncio.BaseProtocol:
        return _Closing()


class ClusterNode:
    """Owns the runner's Server in cluster mode; see the module docstring."""

    def __init__(self, runner: Runner) -> None:
        cfg = runner.config
        problem = config_problem(cfg)
        if problem is not None:
            raise ClusterError(problem)
        self.runner = runner
        self.keys = Keys(cfg.cluster)
        port = cfg.port
        for sock in runner.sockets:
            with contextlib.suppress(OSError, IndexError, TypeError):
                port = sock.getsockname()[1]
                break
        self.advertise = cfg.advertise or default_advertise(cfg.listen, port)
        self.name = check_node_name(cfg.node_name or self.advertise)
        self.client = etcd.EtcdClient(cfg.etcd, timeout=5.0)
        self.lease = Lease(self.client, cfg.lease_ttl)
        self.lease.on_lost = self._lease_lost
        self.role = "standby"
        self.serving = False
        self.epoch = 0
        self.leader: LeaderInfo | None = None
        self.follower: Follower | None = None
        self.takeovers = 0
        self.last_takeover_seconds = 0.0
        self._relay: Any = None
        self._changed = asyncio.Event()
        self._deposed: str | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []

    # --- the engine -------------------------------------------------------------

    def make_server(self) -> Server:
        runner = self.runner
        cfg = runner.config
        loop = asyncio.get_running_loop()
        journal = EtcdJournal(
            self.client, self.keys, loop, max_size=cfg.binlog_size, clock=runner.clock
        )
        server = Server(
            loop,
            journal,
            cfg.max_job_size,
            cfg.output_cap,
            clock=runner.clock,
            connection_factory=runner.connection_factory,
        )
        if cfg.max_memory:
            server.limit_memory(cfg.max_memory)
        server.max_connections = cfg.max_connections
        return server

    def _set_server(self, server: Server) -> None:
        runner = self.runner
        old = runner.server
        runner.server = server
        runner.journal = server.journal
        # Helpers that hold the server (the idle sweeper, the HTTP endpoint).
        for name in ("_idle", "http"):
            helper = getattr(runner, name, None)
            if helper is not None and hasattr(helper, "server"):
                helper.server = server
        if old is not None and old is not server:
            if old.draining:
                server.drain()  # SIGUSR1 holds for the node, not one engine
            old.timers.close()
            if old.connections:
                self._drop_clients(old)

    # --- connections ---------------------------------------------------------------

    def protocol(self) -> asyncio.BaseProtocol:
        """A new client: served here while leading, relayed to the leader otherwise."""
        server = self.runner.server
        if self.serving and server is not None:
            return self.runner.connection_factory(server)  # type: ignore[no-any-return]
        return self._relay_for().protocol()  # type: ignore[no-any-return]

    def _relay_for(self) -> Any:
        if self._relay is None:
            try:
                from geanstalk.cluster.relay import Relay
            except ImportError:
                return _NoRelay
            self._relay = Relay(self.leader_address)
        return self._relay

    def leader_address(self) -> tuple[str, int] | None:
        """Where relayed clients go: the leader's advertised address, if any."""
        from geanstalk.cluster.relay import parse_advertise

        info = self.leader
        if info is None or not info.advertise:
            return None
        if info.node == self.name and not self.serving:
            return None  # this node won but is still catching up
        try:
            return parse_advertise(info.advertise)
        except ValueError:
            return None

    def _drop_clients(self, server: Server) -> None:
        for conn in list(server.connections):
            fail = getattr(conn, "fail_held", None)
            if fail is not None:
                fail(STEP_DOWN_REPLY)
            else:
                t = getattr(conn, "transport", None)
                if t is not None:
                    t.close()

    # --- life ----------------------------------------------------------------------

    async def start(self) -> None:
        """An empty standby engine now; etcd is reached in the background."""
        if self.runner.config.binlog_dir is not None:
            log.warning(
                "with --etcd the journal is etcd: -b %s is not used", self.runner.config.binlog_dir
            )
        self._set_server(self.make_server())
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._main()))
        self._tasks.append(loop.create_task(self._heartbeat()))
        log.info(
            "cluster %s: node %s (advertising %s) on etcd %s",
            self.keys.cluster,
            self.name,
            self.advertise,
            ",".join(self.client.endpoints),
        )

    async def _main(self) -> None:
        while not self._stopping:
            try:
                info = await self._follow_until_elected()
                await self._lead(info)
            except asyncio.CancelledError:
                raise
            except etcd.EtcdError as exc:
                log.warning("cluster: %s; retrying", exc)
                await asyncio.sleep(RETRY_DELAY)
            except Exception:
                log.exception("cluster: unexpected error; starting over as a standby")
                await asyncio.sleep(RETRY_DELAY)

    async def _follow_until_elected(self) -> LeaderInfo:
        self.role = "standby"
        self.serving = False
        if not self.lease.alive():
            await self.lease.grant()
        follower = Follower(self.client, self.keys, self.make_server)
        follower.on_leader = self._leader_seen
        follower.on_reset = self._set_server
        server = await follower.snapshot()
        self._set_server(server)
        self.follower = follower
        self._leader_seen(follower.leader)
        task = asyncio.ensure_future(follower.run())
        try:
            while True:
                self._changed.clear()
                if not self.lease.alive():
                    await self.lease.grant()
                if follower.leader is None:
                    won, info = await campaign(
                        self.client, self.keys, self.lease, self.name, self.advertise
                    )
                    if won:
                        assert info is not None
                        break
                    self._leader_seen(info)
                    continue
                await self._changed.wait()
            started = time.monotonic()
            self.leader = info
            left = self.lease.deadline - time.monotonic()
            try:
                await asyncio.wait_for(follower.wait_applied(info.epoch), max(left, 0.01))
            except asyncio.TimeoutError:
                await resign(self.client, self.keys, info.epoch)
                raise etcd.EtcdUnavailable("could not catch up before the lease deadline") from None
            self.last_takeover_seconds = time.monotonic() - started
            return info
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _lead(self, info: LeaderInfo) -> None:
        server = self.runner.server
        follower = self.follower
        assert server is not None and follower is not None
        journal = server.journal
        assert isinstance(journal, EtcdJournal)
        next_id = max(follower.next_id, server.storage.next_id)
        server.restore([], next_id)
        journal.arm(info.epoch, self.lease, next_id)
        journal.on_fenced = self._depose
        self._deposed = None
        self.epoch = info.epoch
        self.role = "leader"
        self.serving = True
        self.takeovers += 1
        log.info(
            "cluster %s: %s leads at epoch %d (%d jobs, next id %d, caught up in %.3fs)",
            self.keys.cluster,
            self.name,
            info.epoch,
            len(server.storage.jobs),
            next_id,
            self.last_takeover_seconds,
        )
        if self._relay is not None:
            self._relay.refresh()
        compactor = asyncio.ensure_future(self._compactor())
        try:
            while self._deposed is None:
                self._changed.clear()
                await self._changed.wait()
        finally:
            compactor.cancel()
        reason = self._deposed
        self.serving = False
        self.role = "standby"
        journal.fence(reason)
        self._drop_clients(server)
        server.timers.close()
        log.warning("cluster %s: %s stepped down: %s", self.keys.cluster, self.name, reason)
        if self.lease.alive():
            # A write failed with the lease still ours: hand over now.
            await resign(self.client, self.keys, info.epoch)
            await self.lease.revoke()
        else:
            self.lease.stop()
        self.leader = None
        if self._relay is not None:
            self._relay.refresh()

    def _depose(self, reason: str) -> None:
        if self.serving and self._deposed is None:
            self._deposed = reason
            self._changed.set()

    def _lease_lost(self, reason: str) -> None:
        if self.serving:
            self._depose(f"lease lost: {reason}")
        self._changed.set()

    def _leader_seen(self, info: LeaderInfo | None) -> None:
        self.leader = info
        self._changed.set()
        if self._relay is not None:
            self._relay.refresh()

    # --- background chores -------------------------------------------------------

    def applied_revision(self) -> int:
        if self.serving:
            journal = self.runner.journal
            return getattr(journal, "last_revision", 0) or self.epoch
        return self.follower.applied if self.follower is not None else 0

    async def _heartbeat(self) -> None:
        """The members key: who this node is and how far it has applied, once a second."""
        while not self._stopping:
            if self.lease.alive():
                value = member_value(
                    self.name,
                    self.advertise,
                    "leader" if self.serving else "standby",
                    self.applied_revision(),
                )
                with contextlib.suppress(etcd.EtcdError):
                    await self.client.put(self.keys.member(self.name), value, self.lease.id)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _compactor(self) -> None:
        """Keep etcd's history bounded: compact behind the slowest standby."""
        done = 0
        while True:
            await asyncio.sleep(COMPACT_SECONDS)
            try:
                status = await self.client.status()
                revision = int(status["revision"])
                target = revision - COMPACT_KEEP
                for m in await read_members(self.client, self.keys):
                    if m.role != "leader" and m.node != self.name and m.applied_revision:
                        target = min(target, m.applied_revision)
                if target > done:
                    await self.client.compact(target)
                    done = target
                    log.info("cluster: compacted etcd history up to revision %d", target)
            except etcd.EtcdError as exc:
                log.info("cluster: compaction skipped: %s", exc)

    async def stop(self, runner: Runner | None = None) -> None:
        """Graceful: commit what is queued, hand the leadership over, leave etcd."""
        if self._stopping:
            return
        self._stopping = True
        server = self.runner.server
        if self.serving and server is not None:
            for conn in list(server.connections):
                conn.stop_reading()
            await server.journal.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.serving:
            await resign(self.client, self.keys, self.epoch)
        self.serving = False
        await self.lease.revoke()
        if self._relay is not None:
            self._relay.close()
        await self.client.close()
