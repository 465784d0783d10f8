"""``geanstalk cluster status``: who leads, at which epoch, and how far behind each standby is.

Read from etcd only (the nodes publish everything needed there), so it works
from any machine that reaches etcd, and while a node is down or wedged.

How lag is measured, without trusting clocks where possible: each node
rewrites its members key about once a second with the revision it had
applied at that moment. The members key's own mod_revision W is the
revision of that write, so the revisions in (applied, W) were committed
before the report and not yet applied by the standby. The records lag is
the number of job-key changes among them, counted from etcd's history with
a watch from applied + 1, which always ends: the report itself is an event
at W. The lag in milliseconds is the report's wall time minus the time the
first unapplied record was written (a put's record carries its creation
time); it is left out when that record is not a fresh put, or when the
history was compacted away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from geanstalk.cluster.keys import (
    RecordError,
    decode_next_id,
    decode_record,
    parse_leader,
    parse_member,
)

# How long counting one standby's unapplied records may take.
LAG_SCAN_SECONDS = 3.0
# As the admin commands': 0 fine, 2 usage, 3 unreachable; 1: no node leads.
EXIT_OK, EXIT_NO_LEADER, EXIT_USAGE, EXIT_ETCD = 0, 1, 2, 3


@dataclass
class MemberStatus:
    node: str
    advertise: str
    role: str
    applied_revision: int
    applied_at: float
    reported_revision: int  # the revision of its last members-key write
    lag_revisions: int
    lag_records: int | None  # None: history compacted, or not counted in time
    lag_ms: float | None


@dataclass
class EndpointStatus:
    endpoint: str
    healthy: bool
    version: str = ""
    is_leader: bool = False
    db_size: int = 0
    raft_term: int = 0
    error: str = ""


@dataclass
class ClusterStatus:
    cluster: str
    revision: int  # etcd's revision when read
    leader: str | None
    leader_advertise: str | None
    epoch: int | None  # the leader key's create_revision
    journal_revision: int | None  # the leader's last committed journal revision
    next_id: int
    jobs: int
    members: list[MemberStatus] = field(default_factory=list)
    etcd: list[EndpointStatus] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def read_status(client: Any, cluster: str, count_lag: bool = True) -> ClusterStatus:
    """One consistent read of the cluster's keys, then the lag of each standby."""
    from geanstalk.cluster.etcd import op_get
    from geanstalk.cluster.keys import Keys

    keys = Keys(cluster)
    result = await client.txn(
        [], [op_get(keys.leader), op_get(keys.members, prefix=True), op_get(keys.next_id)]
    )
    leader_kvs, member_kvs, next_kvs = result.responses
    jobs = await client.range(
        keys.job_prefix, prefix=True, count_only=True, revision=result.revision
    )
    leader = parse_leader(leader_kvs[0]) if leader_kvs else None
    members: list[MemberStatus] = []
    journal_revision = None
    for kv in member_kvs:
        m = parse_member(kv, keys)
        members.append(
            MemberStatus(
                m.node,
                m.advertise,
                m.role,
                m.applied_revision,
                m.applied_at,
                kv.mod_revision,
                max(0, kv.mod_revision - 1 - m.applied_revision),
                0,
                0.0,
            )
        )
        if leader is not None and m.node == leader.node and m.role == "leader":
            journal_revision = m.applied_revision
    members.sort(key=lambda m: (m.role != "leader", m.node))
    for m in members:
        if m.role == "leader":
            # The leader applies what it commits: it is the journal's head.
            m.lag_revisions, m.lag_records, m.lag_ms = 0, 0, 0.0
        elif m.lag_revisions == 0:
            m.lag_records, m.lag_ms = 0, 0.0
        elif count_lag:
            m.lag_records, m.lag_ms = await _unapplied(client, keys, m)
        else:
            m.lag_records, m.lag_ms = None, None
    return ClusterStatus(
        cluster,
        result.revision,
        leader.node if leader else None,
        leader.advertise if leader else None,
        leader.epoch if leader else None,
        journal_revision,
        decode_next_id(next_kvs[0].value) if next_kvs else 1,
        jobs.count,
        members,
    )


async def _unapplied(client: Any, keys: Any, m: MemberStatus) -> tuple[int | None, float | None]:
    """Job changes in (applied, reported) and how old the first of them was at the report."""
    from geanstalk.cluster.etcd import EtcdError

    records = 0
    first_put_at: float | None = None
    first_seen = False

    async def scan() -> None:
        nonlocal records, first_put_at, first_seen
        async for batch in client.watch(
            keys.prefix, prefix=True, start_revision=m.applied_revision + 1
        ):
            for event in batch.events:
                kv = event.kv
                if kv.mod_revision >= m.reported_revision:
                    return
                job_id = keys.job_id(kv.key)
                if job_id is None:
                    continue
                records += 1
                if not first_seen:
                    first_seen = True
                    if not event.deleted and kv.version == 1:
                        with contextlib.suppress(RecordError):
                            first_put_at = decode_record(job_id, kv.value).created_at

    try:
        await asyncio.wait_for(scan(), LAG_SCAN_SECONDS)
    except (EtcdError, asyncio.TimeoutError):
        return None, None
    if records == 0:
        return 0, 0.0  # only other members' reports were unapplied
    if first_put_at is None:
        return records, None
    return records, max(0.0, (m.applied_at - first_put_at) * 1000.0)


async def read_endpoints(endpoints: list[str], timeout: float) -> list[EndpointStatus]:
    """Each etcd endpoint's own view: reachable, version, leader or not, size."""
    from geanstalk.cluster.etcd import EtcdClient, EtcdError

    async def one(endpoint: str) -> EndpointStatus:
        try:
            async with EtcdClient([endpoint], timeout=timeout, connections=1) as single:
                s = await single.request("maintenance/status", {})
        except (EtcdError, OSError) as exc:
            return EndpointStatus(endpoint, False, error=str(exc))
        member = s.get("header", {}).get("member_id")
        return EndpointStatus(
            endpoint,
            True,
            str(s.get("version", "")),
            member is not None and s.get("leader") == member,
            int(s.get("dbSize", 0) or 0),
            int(s.get("raftTerm", 0) or 0),
        )

    return list(await asyncio.gather(*(one(e) for e in endpoints)))


async def gather(endpoints: str, cluster: str, timeout: float = 5.0) -> ClusterStatus:
    from geanstalk.cluster.etcd import EtcdClient

    async with EtcdClient(endpoints, timeout=timeout) as client:
        status = await read_status(client, cluster)
        status.etcd = await read_endpoints(client.endpoints, timeout)
    return status


# --- printing -------------------------------------------------------------------------


def _lag(m: MemberStatus) -> tuple[str, str]:
    records = "?" if m.lag_records is None else str(m.lag_records)
    ms = "-" if m.lag_ms is None else f"{m.lag_ms:.0f}"
    return records, ms


def render(status: ClusterStatus) -> str:
    out = [f"cluster {status.cluster}  (etcd revision {status.revision})"]
    if status.leader is None:
        out.append("leader: none")
    else:
        position = "?" if status.journal_revision is None else str(status.journal_revision)
        out.append(
            f"leader: {status.leader} at {status.leader_advertise}, epoch {status.epoch}, "
            f"journal at revision {position}"
        )
    out.append(f"jobs: {status.jobs}, next id {status.next_id}")
    out.append("")
    rows = [("NODE", "ROLE", "ADVERTISE", "APPLIED", "LAG REVS", "LAG RECORDS", "LAG MS")]
    for m in status.members:
        records, ms = _lag(m)
        rows.append(
            (
                m.node,
                m.role,
                m.advertise,
                str(m.applied_revision),
                str(m.lag_revisions),
                records,
                ms,
            )
        )
    if len(rows) == 1:
        out.append("no members")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            out.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if status.etcd:
        out.append("")
        for e in status.etcd:
            if e.healthy:
                role = "leader" if e.is_leader else "follower"
                out.append(
                    f"etcd {e.endpoint}: {e.version} {role}, term {e.raft_term}, "
                    f"db {e.db_size / 1048576:.1f} MiB"
                )
            else:
                out.append(f"etcd {e.endpoint}: unreachable ({e.error})")
    return "\n".join(out) + "\n"


# --- the command ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geanstalk cluster",
        description="Inspect a geanstalk cluster through its etcd.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser(
        "status",
        help="members, leader, epoch, journal position and lag per standby",
        description=(
            "Members, who leads at which epoch, the journal's position (an etcd "
            "revision) and each standby's lag in revisions, records and ms. "
            f"Exit status {EXIT_NO_LEADER} when no node leads, {EXIT_ETCD} when "
            "etcd cannot be read."
        ),
    )
    st.add_argument("--etcd", required=True, help="etcd endpoints: http://H1:2379,http://H2:2379")
    st.add_argument("--cluster", required=True, help="the cluster's name (serve --cluster)")
    st.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    st.add_argument("--timeout", type=float, default=5.0, help="seconds per etcd request")
    return p


def main(argv: list[str]) -> int:
    """``geanstalk cluster status --etcd URLS --cluster NAME [--json]``."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        from geanstalk.cluster.etcd import EtcdError
        from geanstalk.cluster.keys import check_cluster_name
    except ImportError as exc:
        print(
            f"geanstalk cluster: {exc.name} is missing: pip install 'geanstalk[cluster]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        check_cluster_name(args.cluster)
        status = asyncio.run(gather(args.etcd, args.cluster, args.timeout))
    except ValueError as exc:
        print(f"geanstalk cluster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EtcdError as exc:
        print(f"geanstalk cluster: cannot read etcd: {exc}", file=sys.stderr)
        return EXIT_ETCD
    if args.json:
        print(json.dumps(status.as_json(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render(status))
    return EXIT_OK if status.leader is not None else EXIT_NO_LEADER
