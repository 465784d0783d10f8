"""Where a cluster keeps its state in etcd, and how each value is encoded.

Layout under ``/geanstalk/<cluster>/``:

``leader``
    JSON ``{"node": name, "advertise": "host:port"}``, attached to the
    leader's lease. Its ``create_revision`` is the leader's epoch: every
    journal transaction compares it, so a deposed leader's write fails.
``members/<node>``
    JSON ``{"node", "advertise", "role": "leader"|"standby",
    "applied_revision", "applied_at"}`` (``applied_at``: unix time of the
    write), attached to that node's own lease, rewritten about once a second.
``job/<id as 20 digits>``
    The job's current record (see encode_job): written at put, release with
    a delay, bury, kick and kick-job, deleted at delete. Twenty digits keep
    the keys in id order and any uint64 fits.
``next-id``
    Decimal text: no job id at or above it was ever handed out. The leader
    raises it in blocks inside its fenced transactions, so a new leader
    never reuses an id.

A job record is binary (bodies are bytes, and this is the hot path): a
version byte, then the fields below little-endian, then the tube name and
the body. Times are wall-clock (unix) seconds, as in the binlog, because
another machine's monotonic clock means nothing here.

The readers at the end (read_leader, read_members, read_cluster) are what
tools outside the serving node use (``geanstalk cluster status``, the relay).
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from geanstalk.cluster.etcd import EtcdClient, KeyValue
    from geanstalk.core import Job

ROOT = b"/geanstalk/"
RECORD_VERSION = 1
ID_DIGITS = 20

# Job states as stored (the same numbers as geanstalk.core's).
READY = 0
DELAYED = 1
RESERVED = 2
BURIED = 3

# version, state, priority, ttr, delay, created_at, runnable_at (NaN: none),
# reserves, timeouts, releases, buries, kicks, tube length, body length
_RECORD = struct.Struct("<BBIIIdd5IBI")
RECORD_FIXED = _RECORD.size
_pack = _RECORD.pack
_unpack_from = _RECORD.unpack_from
_NAN = math.nan

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_NODE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")


class RecordError(ValueError):
    """A job value that this version cannot read."""


def check_cluster_name(name: str) -> str:
    if not _CLUSTER_NAME.match(name):
        raise ValueError(f"cluster name must be 1-64 of [A-Za-z0-9._-], got {name!r}")
    return name


def check_node_name(name: str) -> str:
    if not _NODE_NAME.match(name):
        raise ValueError(f"node name must be 1-128 of [A-Za-z0-9._:-], got {name!r}")
    return name


class Keys:
    """The keys of one cluster."""

    __slots__ = ("cluster", "job_prefix", "leader", "members", "next_id", "prefix")

    def __init__(self, cluster: str) -> None:
        self.cluster = check_cluster_name(cluster)
        self.prefix = ROOT + cluster.encode("ascii") + b"/"
        self.leader = self.prefix + b"leader"
        self.members = self.prefix + b"members/"
        self.job_prefix = self.prefix + b"job/"
        self.next_id = self.prefix + b"next-id"

    def member(self, node: str) -> bytes:
        return self.members + node.encode("ascii")

    def job(self, job_id: int) -> bytes:
        return self.job_prefix + b"%020d" % job_id

    def job_id(self, key: bytes) -> int | None:
        """The id in a job key; None for any other key."""
        if key.startswith(self.job_prefix):
            return int(key[len(self.job_prefix) :])
        return None

    def member_name(self, key: bytes) -> str | None:
        if key.startswith(self.members):
            return key[len(self.members) :].decode("ascii", "replace")
        return None


# --- job records -------------------------------------------------------------------


def encode_job(job: Job, wall_offset: float) -> bytes:
    """The record of job; wall_offset = time.time() - the server clock, taken once per batch."""
    tube = job.tube
    name = tube if tube.__class__ is bytes else tube.name
    body = job.body
    state = job.state
    runnable_at = job.runnable_at
    return (
        _pack(
            RECORD_VERSION,
            state,
            job.priority,
            job.ttr,
            job.delay,
            job.created_at + wall_offset,
            runnable_at + wall_offset if state == DELAYED and runnable_at is not None else _NAN,
            job.reserves,
            job.timeouts,
            job.releases,
            job.buries,
            job.kicks,
            len(name),
            len(body),
        )
        + name
        + body
    )


class JobRecord(NamedTuple):
    """A decoded job value; times are unix seconds, runnable_at None unless delayed."""

    id: int
    state: int
    priority: int
    ttr: int
    delay: int
    created_at: float
    runnable_at: float | None
    counters: tuple[int, int, int, int, int]
    tube: bytes
    body: bytes


def decode_record(job_id: int, value: bytes) -> JobRecord:
    if len(value) < RECORD_FIXED:
        raise RecordError(f"job {job_id}: record of {len(value)} bytes is too short")
    (
        version,
        state,
        priority,
        ttr,
        delay,
        created_at,
        runnable_at,
        reserves,
        timeouts,
        releases,
        buries,
        kicks,
        tube_len,
        body_len,
    ) = _unpack_from(value)
    if version != RECORD_VERSION:
        raise RecordError(f"job {job_id}: record version {version}, this geanstalk reads 1")
    if len(value) != RECORD_FIXED + tube_len + body_len:
        raise RecordError(f"job {job_id}: record length does not match its fields")
    if state not in (READY, DELAYED, RESERVED, BURIED):
        raise RecordError(f"job {job_id}: unknown state {state}")
    tube = bytes(value[RECORD_FIXED : RECORD_FIXED + tube_len])
    body = bytes(value[RECORD_FIXED + tube_len :])
    return JobRecord(
        job_id,
        state,
        priority,
        ttr,
        delay,
        created_at,
        None if math.isnan(runnable_at) else runnable_at,
        (reserves, timeouts, releases, buries, kicks),
        tube,
        body,
    )


def decode_job(job_id: int, value: bytes) -> Job:
    """A Job as Server.restore takes it: tube = its name, times wall-clock, never reserved."""
    from geanstalk.core import Job

    r = decode_record(job_id, value)
    # As after a binlog restart: a reserved job comes back ready.
    state = READY if r.state == RESERVED else r.state
    job = Job(
        job_id,
        priority=r.priority,
        runnable_at=r.runnable_at if state == DELAYED else None,
        ttr=r.ttr,
        body=r.body,
        delay=r.delay,
        created_at=r.created_at,
    )
    job.state = state
    job.tube = r.tube
    job.reserves, job.timeouts, job.releases, job.buries, job.kicks = r.counters
    return job


# --- leader and members ------------------------------------------------------------


def leader_value(node: str, advertise: str) -> bytes:
    return json.dumps({"node": node, "advertise": advertise}, sort_keys=True).encode()


def member_value(
    node: str,
    advertise: str,
    role: str,
    applied_revision: int,
    applied_at: float | None = None,
) -> bytes:
    return json.dumps(
        {
            "node": node,
            "advertise": advertise,
            "role": role,
            "applied_revision": applied_revision,
            "applied_at": round(time.time() if applied_at is None else applied_at, 3),
        },
        sort_keys=True,
    ).encode()


def decode_next_id(value: bytes) -> int:
    return int(value.decode("ascii")) if value else 1


def encode_next_id(next_id: int) -> bytes:
    return str(next_id).encode("ascii")


@dataclass(frozen=True)
class LeaderInfo:
    node: str
    advertise: str
    epoch: int  # the leader key's create_revision: the fencing token
    lease: int
    mod_revision: int


@dataclass(frozen=True)
class MemberInfo:
    node: str
    advertise: str
    role: str
    applied_revision: int
    applied_at: float
    lease: int


@dataclass(frozen=True)
class ClusterView:
    """One consistent read of the cluster's state (all at ``revision``)."""

    revision: int
    leader: LeaderInfo | None
    members: list[MemberInfo]
    next_id: int
    jobs: int


def _json(value: bytes) -> dict[str, Any]:
    try:
        d = json.loads(value)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def parse_leader(kv: KeyValue) -> LeaderInfo:
    d = _json(kv.value)
    return LeaderInfo(
        str(d.get("node", "")),
        str(d.get("advertise", "")),
        kv.create_revision,
        kv.lease,
        kv.mod_revision,
    )


def parse_member(kv: KeyValue, keys: Keys) -> MemberInfo:
    d = _json(kv.value)
    return MemberInfo(
        str(d.get("node") or keys.member_name(kv.key) or ""),
        str(d.get("advertise", "")),
        str(d.get("role", "standby")),
        int(d.get("applied_revision", 0)),
        float(d.get("applied_at", 0.0)),
        kv.lease,
    )


async def read_leader(client: EtcdClient, keys: Keys) -> LeaderInfo | None:
    kv = await client.get(keys.leader)
    return parse_leader(kv) if kv is not None else None


async def read_members(client: EtcdClient, keys: Keys) -> list[MemberInfo]:
    found = await client.range(keys.members, prefix=True)
    return sorted((parse_member(kv, keys) for kv in found.kvs), key=lambda m: m.node)


async def read_next_id(client: EtcdClient, keys: Keys) -> int:
    kv = await client.get(keys.next_id)
    return decode_next_id(kv.value) if kv is not None else 1


async def read_cluster(client: EtcdClient, keys: Keys) -> ClusterView:
    """Leader, members, next id and job count in one transaction (one revision)."""
    from geanstalk.cluster.etcd import op_get

    result = await client.txn(
        [],
        [op_get(keys.leader), op_get(keys.members, prefix=True), op_get(keys.next_id)],
    )
    leader_kvs, member_kvs, next_kvs = result.responses
    count = await client.range(
        keys.job_prefix, prefix=True, count_only=True, revision=result.revision
    )
    return ClusterView(
        result.revision,
        parse_leader(leader_kvs[0]) if leader_kvs else None,
        sorted((parse_member(kv, keys) for kv in member_kvs), key=lambda m: m.node),
        decode_next_id(next_kvs[0].value) if next_kvs else 1,
        count.count,
    )
